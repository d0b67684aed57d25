r"""The claims as the paper states them: "falls monotonically with λ", tested over the whole λ grid.

Per claim, family and β (rate) or rate target and estimate (anisotropy), the values at each λ of the
sweep in increasing order (λ = 0: the shared pixel-only runs) go to the Jonckheere–Terpstra test
(`rd_train.analysis.trend_test`), one-sided "decreasing" (the claim) and "increasing" (its reversal).
Holm adjusts each direction over every test of one claim (all families and β, or all families, targets
and estimates) and one filter. **falls with λ** if the adjusted decreasing p < α, **rises with λ** if the
adjusted increasing p < α, otherwise **not resolved at this scale**. Effect: mean at the largest λ over
mean at λ = 0, minus 1, with Fieller's interval (`ratio_interval`: never below −100 %). Adjacent steps:
the exact one-sided Mann–Whitney p of each step λ_k → λ_{k+1} (the strict-monotonicity check; with three
seeds per step its smallest possible value is 0.05, so it cannot resolve a step at α = 0.05).

Every table is computed twice: over the runs that pass the convergence rules (interpolated curves from
their converged points, as before) and over every run with no filter, so a filter that removes one side
of a comparison shows. Pass rates per (sweep, family, λ) are tested against λ (χ² of the λ × pass table,
per family) and between the families at each λ > 0 (Fisher's exact test).
"""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from scipy import stats

from rd_train.analysis import (
    corrected_to_rate,
    holm,
    ratio_interval,
    slope_at_rate,
    trend_test,
    value_at_rate,
)
from rd_train.analysis.trends import RatioInterval
from rd_train.report.study import Study

FALLS, RISES, UNRESOLVED = "falls with λ", "rises with λ", "not resolved at this scale"


@dataclass
class TrendRow:
    claim: str  # "rate" or "anisotropy"
    family: str
    key: float  # β (rate) or the rate target (anisotropy)
    estimate: str  # "fixed β", "GECO" or "interpolated"
    lams: list[float]
    groups: list[list[float]]
    p_decreasing: float
    p_increasing: float
    method: str
    effect: RatioInterval
    adjacent: list[float] = field(default_factory=list)  # one-sided p of each step λ_k -> λ_k+1
    p_holm: float = math.nan
    p_holm_increasing: float = math.nan
    verdict: str = UNRESOLVED


def _row(
    claim: str,
    family: str,
    key: float,
    estimate: str,
    lams: list[float],
    groups: list[list[float]],
    confidence: float,
) -> TrendRow:
    filled = [g for g in groups if g]
    effect = (
        ratio_interval(groups[-1], groups[0], confidence)
        if groups[0] and groups[-1]
        else RatioInterval(math.nan, math.nan, math.nan, confidence)
    )
    adjacent = [trend_test([a, b]).p_value if a and b else math.nan for a, b in pairwise(groups)]
    if len(filled) < 2:
        return TrendRow(claim, family, key, estimate, lams, groups, math.nan, math.nan, "–", effect, adjacent)
    dec, inc = trend_test(groups, "decreasing"), trend_test(groups, "increasing")
    return TrendRow(
        claim, family, key, estimate, lams, groups, dec.p_value, inc.p_value, dec.method, effect, adjacent
    )


def _interpolated(study: Study, family: str, target: float, converged: bool) -> list[list[float]]:
    curves = study.curves(family, converged)
    groups = []
    for lam in study.lams(family):
        values = []
        for (l_, _), points in curves.items():
            if l_ != lam:
                continue
            with suppress(ValueError):  # the curve does not reach the target (claims.md lists these seeds)
                values.append(value_at_rate([r.kl for r in points], [r.anisotropy for r in points], target))
        groups.append(values)
    return groups


def geco_corrected_by_seed(
    study: Study, family: str, target: float, converged: bool
) -> dict[int, dict[float, float]]:
    """seed -> λ -> that GECO run's anisotropy moved from its validation KL to the target along the local
    slope of its seed's fixed-β curve at that λ (`slope_at_rate`). A run whose seed's curve does not
    reach the target has no correction and is left out of this estimate."""
    curves = study.curves(family, converged)
    blocks: dict[int, dict[float, float]] = {}
    for (lam, t), runs in study.grouped("geco", family, converged).items():
        if t != target:
            continue
        for r in runs:
            points = curves.get((lam, r.seed), [])
            with suppress(ValueError):
                slope = slope_at_rate([p.kl for p in points], [p.anisotropy for p in points], target)
                blocks.setdefault(r.seed, {})[lam] = corrected_to_rate(r.anisotropy, r.kl, target, slope)
    return blocks


def _geco_corrected(
    study: Study, family: str, target: float, converged: bool
) -> tuple[list[list[float]], list[float]]:
    """Per λ, the corrected GECO anisotropies (`geco_corrected_by_seed`, seeds in order); and every run's
    tracking error |K_val − R*| / R*."""
    blocks = geco_corrected_by_seed(study, family, target, converged)
    geco = study.grouped("geco", family, converged)
    groups = [[blocks[s][lam] for s in sorted(blocks) if lam in blocks[s]] for lam in study.lams(family)]
    errors = [abs(r.kl - target) / target for lam in study.lams(family) for r in geco.get((lam, target), [])]
    return groups, errors


def corrected_rows(study: Study, converged: bool) -> tuple[list[TrendRow], list[float]]:
    """The GECO estimate read on validation KL and corrected to the target: its own family of tests
    (Holm over its rows), so the tables above keep their adjustment; and every run's tracking error."""
    rows, errors = [], []
    for family in study.families:
        for target in study.targets:
            groups, e = _geco_corrected(study, family, target, converged)
            errors += e
            rows.append(
                _row(
                    "anisotropy",
                    family,
                    target,
                    "GECO, corrected to the target",
                    study.lams(family),
                    groups,
                    study.rules.confidence,
                )
            )
    _adjust(rows, study.rules.alpha)
    return rows, errors


def _adjust(rows: list[TrendRow], alpha: float) -> None:
    for r, p_dec, p_inc in zip(
        rows, holm([r.p_decreasing for r in rows]), holm([r.p_increasing for r in rows]), strict=True
    ):
        r.p_holm, r.p_holm_increasing = p_dec, p_inc
        r.verdict = FALLS if p_dec < alpha else RISES if p_inc < alpha else UNRESOLVED
        if not math.isfinite(p_dec):
            r.verdict = f"{UNRESOLVED} (fewer than two λ with values)"


def trend_rows(study: Study, converged: bool) -> list[TrendRow]:
    """Every trend test of both claims for one filter, Holm-adjusted per claim and direction."""
    conf, rows = study.rules.confidence, []
    for family in study.families:
        lams = study.lams(family)
        fixed = study.grouped("fixed", family, converged)
        betas = sorted({beta for _, beta in study.grouped("fixed", family, converged=False)})
        for beta in betas:
            groups = [[r.kl for r in fixed.get((lam, beta), [])] for lam in lams]
            rows.append(_row("rate", family, beta, "fixed β", lams, groups, conf))
    for family in study.families:
        lams = study.lams(family)
        geco = study.grouped("geco", family, converged)
        for target in study.targets:
            rows.append(
                _row(
                    "anisotropy",
                    family,
                    target,
                    "interpolated",
                    lams,
                    _interpolated(study, family, target, converged),
                    conf,
                )
            )
            groups = [[r.anisotropy for r in geco.get((lam, target), [])] for lam in lams]
            rows.append(_row("anisotropy", family, target, "GECO", lams, groups, conf))
    for claim in ("rate", "anisotropy"):
        _adjust([r for r in rows if r.claim == claim], study.rules.alpha)
    return rows


@dataclass
class PassRates:
    counts: dict[tuple[str, str, float], tuple[int, int]]  # (sweep, family, λ) -> (passed, runs)
    lam_tests: dict[tuple[str, str], float]  # (sweep, family) -> χ² p over λ (including λ = 0)
    family_tests: dict[tuple[str, float], float]  # (sweep, λ > 0) -> Fisher p between the two families


def pass_rates(study: Study) -> PassRates:
    counts: dict[tuple[str, str, float], list[int]] = defaultdict(lambda: [0, 0])
    for r in study.runs:
        counts[(r.sweep, r.family, r.lam)][0] += r.convergence.passed
        counts[(r.sweep, r.family, r.lam)][1] += 1
    lam_tests, family_tests = {}, {}
    for sweep in ("fixed", "geco"):
        for family in study.families:
            table = [
                [p, n - p]
                for (s, f, _), (p, n) in sorted(counts.items())
                if s == sweep and f in (family, "pixel")
            ]
            lam_tests[(sweep, family)] = pass_rate_chi2(table)
        if len(study.families) == 2:
            for lam in sorted({lam for (s, f, lam) in counts if s == sweep and lam > 0}):
                table = [counts.get((sweep, f, lam), [0, 0]) for f in study.families]
                if all(n for _, n in table):
                    family_tests[(sweep, lam)] = float(
                        stats.fisher_exact([[p, n - p] for p, n in table]).pvalue
                    )
    return PassRates({k: (v[0], v[1]) for k, v in counts.items()}, lam_tests, family_tests)


def pass_rate_chi2(table: list[list[int]]) -> float:
    """χ² p of a (cells × [passed, failed]) table (no continuity correction); NaN with fewer than two
    cells or when every run passed (or every run failed)."""
    t = np.asarray(table, dtype=float)
    if t.shape[0] < 2 or (t.sum(0) == 0).any():
        return math.nan  # every run passed (or every run failed): no association to test
    return float(stats.chi2_contingency(t, correction=False).pvalue)
