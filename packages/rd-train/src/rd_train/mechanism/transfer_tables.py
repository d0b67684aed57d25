"""The non-circular mechanism test's tables (`rd_train.mechanism.transfer`): how much of each λ's measured
matched-rate anisotropy change the λ = 0 model predicts under the λ-weighted distortion."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rd_train.analysis import Interval, positive_ci
from rd_train.analysis.trends import format_relative_effect
from rd_train.mechanism.study import Study
from rd_train.mechanism.transfer import explained_fraction


def transfer_lines(study: Study, records: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in records if r["sweep"] == "transfer"]
    if not rows:
        return []
    conf = study.rules.confidence
    lines = [
        "### Predicted from the λ = 0 model (not circular)",
        "",
        "For each GECO run at λ > 0: the λ = 0 run of its seed and target (its means and decoder) under "
        "the λ-weighted distortion, balancer weights from that model's gradient norms, β matched so the "
        "predicted variance part of the rate stays the λ = 0 one (`rd_train/mechanism/transfer.py`). "
        "Explained: 1 − Σ(measured − predicted)² / Σ measured² of the relative anisotropy change, "
        "against a baseline that predicts no change (1 = all of it, 0 = no better, < 0 worse). "
        "Each cell's change is that of the geometric mean of the pairs' ratios, with its t-interval in "
        "log ratio, so it cannot fall below −100 %. "
        "PatchGAN's feature-matching term uses the λ run's own discriminator (the only one trained "
        "against such a decoder); VGG16 (HED) is frozen, so nothing of the λ run enters.",
        "",
        "| family | λ | target | pairs | measured change [CI] | predicted change [CI] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    cells: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["family"], r["lam"], r["target"]), []).append(r)
    for (family, lam, target), group in sorted(cells.items()):
        measured = _geometric_change([r["measured_change"] for r in group], conf)
        predicted = _geometric_change([r["predicted_change"] for r in group], conf)
        lines.append(f"| {study.label(family)} | {lam:g} | {target:g} | {len(group)} | "
                     f"{_pct(measured)} | {_pct(predicted)} |")
    lines += ["", "| family | filter | pairs | explained | Pearson r (measured, predicted) |",
              "|---|---|---:|---:|---:|"]
    for family in study.families:
        for name, keep in (("every run", lambda r: True),
                           ("sensitivity: pairs within the window rule", lambda r: r["converged"])):
            chosen = [r for r in rows if r["family"] == family and keep(r)]
            m = [r["measured_change"] for r in chosen]
            p = [r["predicted_change"] for r in chosen]
            r_ = float(np.corrcoef(m, p)[0, 1]) if len(chosen) > 2 and np.std(p) > 0 and np.std(m) > 0 \
                else math.nan
            fraction = explained_fraction(m, p) if chosen else math.nan
            lines.append(f"| {study.label(family)} | {name} | {len(chosen)} | {_num(fraction)} | "
                         f"{_num(r_)} |")
    return lines


def _geometric_change(changes: list[float], confidence: float) -> Interval:
    """The pairs' ratios 1 + change as `positive_ci` (geometric mean, log interval), shifted back by −1:
    a change whose interval stays above −100 %."""
    ratio = positive_ci(np.add(changes, 1.0), confidence)
    return Interval(ratio.mean - 1, ratio.low - 1, ratio.high - 1, ratio.n)


def _pct(change: Interval) -> str:
    return format_relative_effect(change.mean, change.low, change.high)


def _num(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.2f}"
