"""Every figure and table under ``paper/`` from the runs' ``metrics.json`` and logs (DVC ``aggregate``).

Nothing here trains or tunes: `study.Study` applies the convergence rules of params.yaml to every run
and computes each claim's comparison once; `tables`, `claims`, `figures` and `dvc_outputs` format it.
"""

from __future__ import annotations

from pathlib import Path

from rd_theory.atomic import atomic_write_text

from rd_train.analysis import Rules
from rd_train.report import claims, dvc_outputs, effective_weights, figures, tables
from rd_train.report.study import Study, load_runs
from rd_train.sweep import load_params


def load_study(params_path: str | Path, runs: str | Path) -> Study:
    params = load_params(params_path)
    rules = Rules.from_params(params)
    from rd_train.analysis.stationarity import WindowRule

    window = WindowRule.from_params(params) if rules.method == "window" else None
    return Study(params, rules, load_runs(runs, rules, window))


def aggregate(
    params_path: str | Path, runs: str | Path, paper: str | Path, analysis: str | Path | None = None,
    diffusability: str | Path | None = None,
) -> Study:
    """Tables, figures and metrics; with ``analysis`` (the ``analysis`` stage's data), its claims line;
    with ``diffusability`` (that stage's summary.json), the section "Beyond the paper: diffusability"."""
    study = load_study(params_path, runs)
    paper = Path(paper)
    atomic_write_text(paper / "tables" / "sweeps.md", tables.sweeps(study))
    atomic_write_text(paper / "tables" / "convergence.md", tables.convergence(study))
    atomic_write_text(paper / "tables" / "runs.csv", tables.runs_csv(study))
    records = effective_weights.load(Path(analysis)) if analysis is not None else None
    extra = [effective_weights.claims_section(study, records)] if records else []
    if diffusability is not None:
        import json

        from rd_train.diffusability.report import claims_section

        path = Path(diffusability)
        if not path.is_file():
            from rd_train.errors import MissingDataError

            raise MissingDataError(f"{path}: no diffusability summary; run `rd-train diffusability` (the "
                                   "DVC stage diffusability) first, or leave out --diffusability")
        extra.append(claims_section(json.loads(path.read_text())))
    atomic_write_text(paper / "tables" / "claims.md", claims.document(study, extra_sections=extra))
    figures.draw_all(study, paper / "figures")
    dvc_outputs.write_metrics(study, paper / "metrics")
    dvc_outputs.write_plot_data(study, paper / "plots")
    return study


def analyze(
    params_path: str | Path, runs: str | Path, paper: str | Path, output: str | Path, jobs: int = 1
) -> None:
    """The ``analysis`` stage: effective weights of every finished run (params ``analysis.images``)."""
    study = load_study(params_path, runs)
    images = int((study.params.get("analysis") or {}).get("images", 64))
    effective_weights.run_stage(study, Path(paper), Path(output), images, jobs)


__all__ = ["Study", "aggregate", "analyze", "load_study"]
