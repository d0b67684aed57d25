"""The mechanism: what the trained weights say about why the posterior has its shape (DVC stage
``analysis``). `curvature` gives a decoder's effective distortion weights (the curvature of its distortion
along each latent), `prices` measures them on a finished run with the toy model's prediction of its
posterior, `transfer` predicts each λ's anisotropy change from the λ = 0 model; `effective_weights` is the
stage (compute, ``effective_weights.md``, its figures) and `transfer_tables` formats the transfer test.
`study.Study` holds every finished fixed-β and GECO run with its window-rule verdict as a diagnostic.
Every table derived from the run records alone is `rd_train.protocol`'s.
"""

from __future__ import annotations

from pathlib import Path

from rd_train.analysis import Rules
from rd_train.mechanism import effective_weights
from rd_train.mechanism.study import Study, load_runs
from rd_train.pipeline.sweep import load_params


def load_study(params_path: str | Path, runs: str | Path) -> Study:
    params = load_params(params_path)
    rules = Rules.from_params(params)
    from rd_train.analysis.stationarity import WindowRule

    window = WindowRule.from_params(params) if rules.method == "window" else None
    return Study(params, rules, load_runs(runs, rules, window))


def analyze(
    params_path: str | Path, runs: str | Path, paper: str | Path, output: str | Path, jobs: int = 1
) -> None:
    """The ``analysis`` stage: effective weights of every finished run (params ``analysis.images``)."""
    study = load_study(params_path, runs)
    images = int((study.params.get("analysis") or {}).get("images", 64))
    effective_weights.run_stage(study, Path(paper), Path(output), images, jobs)


__all__ = ["Study", "analyze", "load_study"]
