"""The DVC stage ``spatial_report``: the spatial runs as a `rd_train.report.Study`, written up by the vector
sweep's report code (the same claims, trend, paired and convergence tables and figures) under
``paper/spatial/``, with the headline verdicts as DVC metrics under ``paper/spatial_metrics/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rd_theory.atomic import atomic_write_text

from rd_train.spatial.sweep import derived_params


def _header(study: Any) -> list[str]:
    model = study.params["model"]
    blocks = model.get("block_out_channels")
    return [
        "# The paper's claims on the spatial architecture (diffusers AutoencoderKL)",
        "",
        f"The same tests, rules and pre-registration as `paper/tables/claims.md`, on the AutoencoderKL "
        f"(block widths {blocks}, {model.get('layers_per_block')} layer(s) per block, "
        f"{model.get('latent_channels')} latent channels, mid-block attention "
        f"{'on' if model.get('mid_block_add_attention', True) else 'off'}) with the grid of params.yaml "
        "`spatial` (families, λ, β, rate targets, seeds); data, optimiser, rate control, losses and rules "
        "are the vector sweep's. Sections 1-2: λ_max against λ = 0 (one-sided Welch over seeds; Fieller "
        "intervals of the ratio of means − 1); then the trend over the λ grid, the paired tests and the "
        "pass rates, each for converged runs and with no filter.",
        "",
    ]


def write_spatial_report(params_path: str | Path, runs: str | Path, paper: str | Path) -> Any:
    """paper/spatial/{claims.md, convergence.md, sweeps.md, runs.csv, figures/}, paper/spatial_metrics/."""
    from rd_train.analysis import Rules
    from rd_train.analysis.stationarity import WindowRule
    from rd_train.report import claims, dvc_outputs, figures, paired_claims, tables
    from rd_train.report.study import Study, load_runs

    derived = derived_params(params_path)
    rules = Rules.from_params(derived)
    window = WindowRule.from_params(derived) if rules.method == "window" else None
    study = Study(derived, rules, load_runs(runs, rules, window))
    out = Path(paper) / "spatial"
    sections = [claims.rate_section(study), claims.anisotropy_section(study), claims.trend_section(study),
                paired_claims.section(study), claims.pass_rate_section(study)]
    document = _header(study) + [line for section in sections for line in [*section, ""]]
    atomic_write_text(out / "claims.md", "\n".join(document).rstrip() + "\n")
    atomic_write_text(out / "convergence.md", tables.convergence(study))
    atomic_write_text(out / "sweeps.md", tables.sweeps(study))
    atomic_write_text(out / "runs.csv", tables.runs_csv(study))
    figures.draw_all(study, out / "figures")
    dvc_outputs.write_metrics(study, Path(paper) / "spatial_metrics")
    return study
