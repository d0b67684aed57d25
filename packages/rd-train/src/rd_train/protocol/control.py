r"""The balancer control from run records: is the rate drop at fixed β a shorter combined gradient?

The balancer gives each reconstruction term unit mean per-sample gradient norm; their weighted sum G is
shorter when the terms disagree. Every run records mean_b ‖G_b‖ over the second half of training
(`rd_train.training.averages`). The control sweep (``sweep.norm_matched``, DVC stage ``control``) trains
those fixed-β cells again with G rescaled to mean per-sample norm 1 (``loss.norm_match``): if the drop of
the rate were only the shorter gradient, the norm-matched runs' KL would return to pixel SSE's.

Per (architecture, family, λ, β), over the seeds that have all three runs (pixel SSE, the plain fixed-β
run, the norm-matched run; seeds are paired): the paired log ratio of the norm-matched KL to pixel SSE's
(`paired.paired_log_ratio`: the change of the geometric mean with its t-interval), the one-sided paired
t-test "below pixel SSE" on the per-seed log ratios (Holm over the rows), and the share of the drop that
survives, (K_pixel − K_matched) / (K_pixel − K_fixed) of the means. Every run counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from rd_train.analysis.trends import format_relative_effect, holm
from rd_train.protocol.paired import RelativeEffect, paired_log_ratio
from rd_train.protocol.summary import NOT_RESOLVED


@dataclass
class ControlRow:
    architecture: str
    family: str
    lam: float
    beta: float
    seeds: list[int]
    pixel: np.ndarray  # per seed: KL of pixel SSE, of the plain run, of the norm-matched run
    plain: np.ndarray
    matched: np.ndarray
    norms: dict[str, float]  # mean second-half ‖G‖ of each arm
    p: float = math.nan
    p_holm: float = math.nan

    @property
    def effect(self) -> RelativeEffect:
        return paired_log_ratio(self.matched, self.pixel)

    @property
    def share(self) -> float:
        drop = float(np.mean(self.pixel) - np.mean(self.plain))
        return float(np.mean(self.pixel) - np.mean(self.matched)) / drop if drop else math.nan


def _norm(record: dict[str, Any]) -> float:
    averages = record["metrics"].get("training_averages", {}).get("combined_gradient_norm", {})
    value = averages.get("second_half")
    return math.nan if value is None else float(value)


def rows(records: list[dict[str, Any]]) -> list[ControlRow]:
    """Every control cell of ``records`` (module doc); none without a control sweep."""
    by_key: dict[tuple[str, str, str, float, float], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        i = r["identity"]
        if i["sweep"] in ("fixed", "control"):
            by_key[(i["sweep"], i["architecture"], i["family"], float(i["lam"]), float(i["beta"]))][
                int(i["seed"])] = r
    out = []
    for (sweep, architecture, family, lam, beta), matched in sorted(by_key.items()):
        if sweep != "control":
            continue
        plain = by_key.get(("fixed", architecture, family, lam, beta), {})
        pixel = by_key.get(("fixed", architecture, "pixel", 0.0, beta), {})
        seeds = sorted(set(matched) & set(plain) & set(pixel))
        arms = {"pixel": pixel, "plain": plain, "matched": matched}
        kl = {name: np.array([float(arm[s]["metrics"]["kl"]) for s in seeds]) for name, arm in arms.items()}
        norms = {name: float(np.nanmean([_norm(arm[s]) for s in seeds])) if seeds else math.nan
                 for name, arm in arms.items()}
        row = ControlRow(architecture, family, lam, beta, seeds, kl["pixel"], kl["plain"], kl["matched"],
                         norms)
        if len(seeds) >= 2:
            logs = np.log(row.matched / row.pixel)
            row.p = float(stats.ttest_1samp(logs, 0.0, alternative="less").pvalue)
        out.append(row)
    for row, adjusted in zip(out, holm([r.p for r in out]), strict=True):
        row.p_holm = adjusted
    return out


def section(records: list[dict[str, Any]], alpha: float, labels: dict[str, str]) -> list[str]:
    """claims.md's balancer-control section (empty without control runs)."""
    table = rows(records)
    if not table:
        return []
    lines = [
        "## Balancer control: is the rate drop a shorter combined gradient?", "",
        "The control sweep retrains fixed-β cells with the balanced gradient G rescaled to mean per-sample "
        "norm 1. Effect: the norm-matched KL against pixel SSE's at the same β and seed (change of the "
        "geometric mean, t-interval over seeds); p: one-sided paired t-test on the log ratios, Holm over "
        "the rows; share: (K_pixel − K_matched) / (K_pixel − K_fixed). ‖G‖: mean per-sample norm over the "
        "second half of training (pixel / plain / norm-matched).", "",
        "| family | architecture | λ | β | seeds | KL pixel / plain / norm-matched | ‖G‖ | norm-matched vs "
        "pixel | p (Holm) | share of the drop that survives | verdict |",
        "|---|---|---:|---:|---:|---|---|---|---:|---:|---|",
    ]
    for r in table:
        e = r.effect if r.seeds else None
        effect = format_relative_effect(e.effect, e.low, e.high) if e else "–"
        means = " / ".join(f"{np.mean(a):.2f}" if len(a) else "–" for a in (r.pixel, r.plain, r.matched))
        norms = " / ".join("–" if not math.isfinite(v) else f"{v:.3f}" for v in r.norms.values())
        p = "–" if not math.isfinite(r.p) else f"{r.p:.2g} ({r.p_holm:.2g})"
        share = "–" if not math.isfinite(r.share) else f"{r.share:.0%}"
        verdict = ("the drop survives" if math.isfinite(r.p_holm) and r.p_holm < alpha
                   else "not testable" if not math.isfinite(r.p) else NOT_RESOLVED)
        lines.append(f"| {labels.get(r.family, r.family)} | {r.architecture} | {r.lam:g} | {r.beta:g} | "
                     f"{len(r.seeds)} | {means} | {norms} | {effect} | {p} | {share} | **{verdict}** |")
    return lines
