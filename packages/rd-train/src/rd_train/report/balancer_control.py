r"""The balancer confound and its control (issue: part of a lower rate at fixed β may be a shorter
combined reconstruction gradient, not a weaker distortion).

Each term's per-sample gradient gets unit mean norm from the balancer, but their weighted sum is shorter
when the terms disagree. Every run records mean_b ||G_b|| of the balanced gradient (second half of
training, `rd_train.training_averages`): pixel SSE alone gives just under 1 (its norm falls as training
improves, so it stays below its running average: 0.90 on the default profile). The control sweep trains the
``sweep.norm_matched`` cells again with G rescaled to mean per-sample norm 1 (``loss.norm_match``): if the
rate drop at fixed β were only the shorter gradient, the norm-matched runs' KL would return to pixel SSE's.

Tests (every run, no filter, then the converged runs): one-sided Welch, norm-matched KL below pixel
SSE's at that β ("the drop survives"); and the share of the drop that survives,
(K_pixel − K_matched) / (K_pixel − K_fixed) of the means.
"""

from __future__ import annotations

import math

import numpy as np

from rd_train.analysis import Comparison, compare_lower, mean_ci
from rd_train.analysis.trends import format_relative_effect
from rd_train.report.study import Run, Study


def _norm(r: Run) -> float | None:
    averages = r.metrics.get("training_averages", {}).get("combined_gradient_norm", {})
    value = averages.get("second_half")
    return None if value is None else float(value)


def norm_table(study: Study) -> list[str]:
    lines = [
        "| sweep | family | λ | mean_b ‖G_b‖, second half: mean [CI] | range | runs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    cells: dict[tuple[str, str, float], list[float]] = {}
    for r in study.runs:
        value = _norm(r)
        if value is not None:
            cells.setdefault((r.sweep, r.family, r.lam), []).append(value)
    for (sweep, family, lam), values in sorted(cells.items()):
        ci = mean_ci(np.asarray(values), study.rules.confidence)
        label = study.label(family) if family != "pixel" else "pixel SSE only"
        lines.append(f"| {sweep} | {label} | {lam:g} | {ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}] | "
                     f"{min(values):.3f}–{max(values):.3f} | {len(values)} |")
    return lines


def control_table(study: Study, converged: bool) -> list[str]:
    lines = [
        "| family | λ | β | KL pixel SSE | KL fixed-β run (its ‖G‖) | KL norm-matched (n) | matched < pixel: "
        "effect [CI], p | share of the drop that survives | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for family in study.families:
        controls = [r for r in study.runs if r.sweep == "control" and r.family == family
                    and (r.convergence.passed or not converged)]
        fixed = study.grouped("fixed", family, converged)
        for lam, beta in sorted({(r.lam, r.beta) for r in controls}):
            matched = [r.kl for r in controls if (r.lam, r.beta) == (lam, beta)]
            pixel = [r.kl for r in fixed.get((0.0, beta), [])]
            plain_runs = fixed.get((lam, beta), [])
            plain = [r.kl for r in plain_runs]
            norms = [n for n in (_norm(r) for r in plain_runs) if n is not None]
            test = compare_lower(pixel, matched, study.rules.alpha, study.rules.confidence)
            drop = np.mean(pixel) - np.mean(plain) if pixel and plain else math.nan
            share = (np.mean(pixel) - np.mean(matched)) / drop if matched and drop and math.isfinite(drop) \
                else math.nan
            verdict = ("the drop survives" if test.verdict == "holds" else "reversed: above pixel SSE"
                       if test.verdict == "reversed" else test.verdict)
            norm = f"{np.mean(norms):.3f}" if norms else "–"
            lines.append(
                f"| {study.label(family)} | {lam:g} | {beta:g} | {_mean(pixel)} | {_mean(plain)} ({norm}) | "
                f"{_mean(matched)} ({len(matched)}) | {_effect(test)} | "
                f"{'–' if not math.isfinite(share) else f'{share:.0%}'} | **{verdict}** |")
    return lines


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.2f}" if values else "–"


def _effect(c: Comparison) -> str:
    if not math.isfinite(c.effect):
        return "–"
    p = "–" if not math.isfinite(c.p_lower) else f"{c.p_lower:.2g}"
    return f"{format_relative_effect(c.effect, c.effect_low, c.effect_high)}, p = {p}"


def section(study: Study) -> list[str]:
    if not any(r.sweep == "control" for r in study.runs):
        return []
    return [
        "## Balancer control: is the rate drop a shorter combined gradient?",
        "",
        "Each reconstruction term gets unit mean per-sample gradient norm from the balancer; their sum G "
        "is shorter when they disagree (pixel SSE alone: just under 1, its norm against its running "
        "average; the table gives it). The control (`sweep.norm_matched`, "
        "DVC stage `control`) retrains those fixed-β cells with G rescaled to mean per-sample norm 1. "
        "Effect: norm-matched KL against pixel SSE's at the same β (Fieller interval, one-sided Welch p); "
        "share: (K_pixel − K_matched) / (K_pixel − K_fixed).",
        "",
        "Combined gradient norm of every run:",
        "",
        *norm_table(study),
        "",
        "Every run, no filter:",
        "",
        *control_table(study, False),
        "",
        "Converged runs:",
        "",
        *control_table(study, True),
    ]
