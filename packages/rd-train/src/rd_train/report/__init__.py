"""The analyses that read trained weights (DVC stage ``analysis``: effective distortion weights), from the
run directories; every table and figure that derives from the runs' records is `rd_train.protocol.report`'s.

`study.Study` holds every finished run with its convergence verdict (the sensitivity split the
effective-weights tables show beside "every run"); `effective_weights` and `mechanism` compute and format.
"""

from __future__ import annotations

from pathlib import Path

from rd_train.analysis import Rules
from rd_train.report import effective_weights
from rd_train.report.study import Study, load_runs
from rd_train.sweep import load_params


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
