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
from typing import TYPE_CHECKING

from rd_train.mechanism import effective_weights
from rd_train.mechanism.study import Study, load_runs

if TYPE_CHECKING:
    from rd_train.params import Params


def load_study(params: Params, runs: str | Path) -> Study:
    window = params.window if params.rules.method == "window" else None
    return Study(params, load_runs(runs, params.rules, window))


def analyze(params: Params, runs: str | Path, paper: str | Path, output: str | Path, jobs: int = 1) -> None:
    """The ``analysis`` stage: effective weights of every finished run (params ``analysis.images``)."""
    study = load_study(params, runs)
    effective_weights.run_stage(study, Path(paper), Path(output), params.analysis_images, jobs)


__all__ = ["Study", "analyze", "load_study"]
