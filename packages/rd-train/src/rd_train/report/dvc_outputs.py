"""What DVC reads: headline metrics (one small JSON per verdict under ``paper/metrics/``, so that
``dvc metrics show`` is a table of verdict rows by a few columns and ``dvc metrics diff`` /
``dvc exp show`` compare experiments), and flat per-run CSVs for ``dvc plots``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rd_theory.atomic import atomic_write_text

from rd_train.analysis import Comparison
from rd_train.report.study import Study


def _number(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _verdict_metrics(c: Comparison) -> dict[str, Any]:
    return {
        "effect": _number(c.effect),
        "effect_low": _number(c.effect_low),
        "effect_high": _number(c.effect_high),
        "p_value": _number(c.p_value),
        "verdict": c.verdict,
        "n": f"{c.base.n}+{c.top.n}",
    }


def headline_metrics(study: Study) -> dict[str, dict[str, Any]]:
    """File stem -> metrics of one verdict."""
    out = {}
    for family in study.families:
        for beta, c in study.rate_claim(family).items():
            out[f"rate_{family}_beta{beta:g}"] = _verdict_metrics(c)
        for m in study.matched_rate(family):
            out[f"anisotropy_{family}_{m.target:g}nats_interpolated"] = _verdict_metrics(m.interpolated)
            out[f"anisotropy_{family}_{m.target:g}nats_geco"] = _verdict_metrics(m.geco)
    return out


def write_metrics(study: Study, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fresh = headline_metrics(study)
    for stale in directory.glob("*.json"):  # a verdict the current params no longer produce
        if stale.stem not in fresh:
            stale.unlink()
    for stem, values in fresh.items():
        atomic_write_text(directory / f"{stem}.json", json.dumps(values, indent=1) + "\n")


def write_plot_data(study: Study, directory: Path) -> None:
    rows = ["family,lam,beta,seed,kl,pixel_sse,anisotropy,converged"]
    rows += [
        f"{r.family},{r.lam:g},{r.beta:g},{r.seed},{r.kl:.6g},{r.pixel_sse:.6g},{r.anisotropy:.6g},"
        f"{int(r.convergence.passed)}"
        for r in study.runs
        if r.sweep == "fixed"
    ]
    atomic_write_text(directory / "fixed_beta.csv", "\n".join(rows) + "\n")
    rows = ["family,lam,target,seed,kl,anisotropy,converged"]
    rows += [
        f"{r.family},{r.lam:g},{r.target:g},{r.seed},{r.kl:.6g},{r.anisotropy:.6g},{int(r.convergence.passed)}"
        for r in study.runs
        if r.sweep == "geco"
    ]
    atomic_write_text(directory / "matched_rate.csv", "\n".join(rows) + "\n")
