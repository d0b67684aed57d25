r"""Tests that match the claims: a trend over an ordered grid, and effects on a positive quantity.

`trend_test` — Jonckheere–Terpstra. ``groups[k]`` holds the values at the k-th grid point (e.g. the k-th
λ, increasing). With U_ij = #{(x, y): x in group i, y in group j, y < x} + ½ #{y = x} for i < j,

    J = Σ_{i<j} U_ij   (alternative "decreasing": values fall along the grid; large J is evidence),

and J' = Σ_{i<j} n_i n_j − J for "increasing". The one-sided p-value P(J >= j_obs) is exact under the
permutation null (values exchangeable across groups; ties kept as observed) when the number of distinct
assignments of the values to the groups, N! / Π n_k!, is at most ``exact_limit``. Otherwise the normal
approximation with the tie-corrected variance (Hollander, Wolfe & Chicken, *Nonparametric Statistical
Methods*, 3rd ed., §6.2, eq. 6.19), E J = (N² − Σ n_k²) / 4 and

    Var J = [N(N−1)(2N+5) − Σ n_k(n_k−1)(2n_k+5) − Σ t(t−1)(2t+5)] / 72
          + [Σ n_k(n_k−1)(n_k−2)] [Σ t(t−1)(t−2)] / (36 N(N−1)(N−2))
          + [Σ n_k(n_k−1)] [Σ t(t−1)] / (8 N(N−1)),

t running over the sizes of the tie groups, with a continuity correction of ½. Two groups: J is the
Mann–Whitney U, so the exact p-value is scipy's ``mannwhitneyu(method="exact")`` (tested).

`ratio_interval` — the interval of mean(treated) / mean(control) − 1 by Fieller's theorem for two
independent samples: the ρ with (m_t − ρ m_c)² <= q² (v_t + ρ² v_c), v = s² / n, q the Student quantile
at the Welch–Satterthwaite degrees of freedom of the difference m_t − ρ̂ m_c. When the control mean is
not resolved from 0 (m_c² <= q² v_c) the set is unbounded and the upper end is +∞. Both samples of a
positive quantity: the ratio cannot be negative, so the lower end is at least −100 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

ALTERNATIVES = ("decreasing", "increasing")


@dataclass(frozen=True)
class Trend:
    statistic: float  # J for the chosen alternative
    p_value: float  # one-sided
    method: str  # "exact" or "normal"
    n: tuple[int, ...]  # values per group

    @property
    def pairs(self) -> int:
        return sum(a * b for a, b in combinations(self.n, 2))


def _pairwise(groups: list[np.ndarray]) -> float:
    """J for "decreasing": later-group values below earlier-group values, ties counting ½."""
    total = 0.0
    for i, j in combinations(range(len(groups)), 2):
        diff = groups[j][None, :] - groups[i][:, None]
        total += float((diff < 0).sum() + 0.5 * (diff == 0).sum())
    return total


def _assignments(n: int, sizes: tuple[int, ...]) -> int:
    count, left = 1, n
    for size in sizes:
        count *= math.comb(left, size)
        left -= size
    return count


def _exact_null(values: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """J ("decreasing") of every assignment of ``values`` to groups of ``sizes`` (the permutation null)."""
    out: list[float] = []

    def place(remaining: tuple[int, ...], k: int, chosen: list[np.ndarray]) -> None:
        if k == len(sizes) - 1:
            out.append(_pairwise([*chosen, values[list(remaining)]]))
            return
        for pick in combinations(remaining, sizes[k]):
            rest = tuple(i for i in remaining if i not in pick)
            place(rest, k + 1, [*chosen, values[list(pick)]])

    place(tuple(range(values.size)), 0, [])
    return np.asarray(out)


def trend_test(
    groups: Sequence[Sequence[float]], alternative: str = "decreasing", exact_limit: int = 50_000
) -> Trend:
    """Jonckheere–Terpstra test of a monotone trend over ordered groups (module docstring).

    Empty groups are dropped (a grid point with no converged value carries no information); at least two
    non-empty groups are needed."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    arrays = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    arrays = [a for a in arrays if a.size]
    if len(arrays) < 2:
        raise ValueError("trend_test needs values in at least two groups")
    if any(not np.isfinite(a).all() for a in arrays):
        raise ValueError("trend_test: values must be finite")
    sizes = tuple(int(a.size) for a in arrays)
    pairs = sum(a * b for a, b in combinations(sizes, 2))
    j_decreasing = _pairwise(arrays)
    statistic = j_decreasing if alternative == "decreasing" else pairs - j_decreasing
    values = np.concatenate(arrays)
    n = values.size
    if _assignments(n, sizes) <= exact_limit:
        null = _exact_null(values, sizes)
        if alternative == "increasing":
            null = pairs - null
        p = float(np.mean(null >= statistic - 1e-9))
        return Trend(statistic, p, "exact", sizes)
    _, ties = np.unique(values, return_counts=True)
    nk, t = np.asarray(sizes, dtype=np.float64), ties.astype(np.float64)
    mean = (n**2 - (nk**2).sum()) / 4
    var = (
        n * (n - 1) * (2 * n + 5) - (nk * (nk - 1) * (2 * nk + 5)).sum() - (t * (t - 1) * (2 * t + 5)).sum()
    ) / 72
    var += (nk * (nk - 1) * (nk - 2)).sum() * (t * (t - 1) * (t - 2)).sum() / (36 * n * (n - 1) * (n - 2))
    var += (nk * (nk - 1)).sum() * (t * (t - 1)).sum() / (8 * n * (n - 1))
    if var <= 0:  # every value tied: no evidence either way
        return Trend(statistic, 1.0, "normal", sizes)
    z = (statistic - mean - 0.5) / math.sqrt(var)
    return Trend(statistic, float(stats.norm.sf(z)), "normal", sizes)


@dataclass(frozen=True)
class RatioInterval:
    effect: float  # mean(treated) / mean(control) − 1
    low: float
    high: float  # +inf when the control mean is not resolved from zero
    confidence: float

    def format(self) -> str:
        return format_relative_effect(self.effect, self.low, self.high)


def format_relative_effect(effect: float, low: float, high: float) -> str:
    """"−26.5% [−29.5%, −23.2%]": a relative effect with its interval (none when ``low`` is NaN; an
    unbounded upper end as +∞)."""
    if not math.isfinite(effect):
        return "–"
    if math.isnan(low):
        return f"{effect:+.1%}"
    upper = "+∞" if math.isinf(high) else f"{high:+.1%}"
    return f"{effect:+.1%} [{low:+.1%}, {upper}]"


def ratio_interval(
    treated: Sequence[float] | np.ndarray, control: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> RatioInterval:
    """Fieller interval of mean(treated) / mean(control) − 1 for independent samples (module docstring);
    with fewer than two values on a side, the point estimate and no interval."""
    t, c = np.asarray(treated, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if t.size == 0 or c.size == 0:
        return RatioInterval(math.nan, math.nan, math.nan, confidence)
    mt, mc = float(t.mean()), float(c.mean())
    if mc == 0:
        raise ValueError("ratio_interval: the control mean is 0, so the ratio is undefined")
    ratio = mt / mc
    if t.size < 2 or c.size < 2:
        return RatioInterval(ratio - 1, math.nan, math.nan, confidence)
    vt, vc = float(t.var(ddof=1) / t.size), float(c.var(ddof=1) / c.size)
    a_t, a_c = vt, ratio**2 * vc  # the two variance parts of m_t − ρ̂ m_c
    if a_t + a_c == 0:
        return RatioInterval(ratio - 1, ratio - 1, ratio - 1, confidence)
    df = (a_t + a_c) ** 2 / (
        (a_t**2 / (t.size - 1) if a_t else 0.0) + (a_c**2 / (c.size - 1) if a_c else 0.0)
    )
    q2 = float(stats.t.ppf(0.5 + confidence / 2, df)) ** 2
    # (mc² − q² vc) ρ² − 2 mt mc ρ + (mt² − q² vt) <= 0
    a, b, k = mc**2 - q2 * vc, -2 * mt * mc, mt**2 - q2 * vt
    positive = bool((t > 0).all() and (c > 0).all())
    if a <= 0:  # the control mean is not resolved from 0: the set is unbounded
        low = 0.0 if positive else -math.inf
        return RatioInterval(ratio - 1, low - 1, math.inf, confidence)
    disc = b * b - 4 * a * k
    root = math.sqrt(max(disc, 0.0))
    low, high = (-b - root) / (2 * a), (-b + root) / (2 * a)
    if positive:
        low = max(low, 0.0)
    return RatioInterval(ratio - 1, low - 1, high - 1, confidence)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1), in the input's order; NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(p.shape, np.nan)
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = order.size, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class DifferenceInterval:
    effect: float  # mean(treated) − mean(control)
    low: float
    high: float
    confidence: float

    def format(self, digits: int = 3) -> str:
        if not math.isfinite(self.effect):
            return "–"
        if math.isnan(self.low):
            return f"{self.effect:+.{digits}g}"
        return f"{self.effect:+.{digits}g} [{self.low:+.{digits}g}, {self.high:+.{digits}g}]"


def difference_interval(
    treated: Sequence[float], control: Sequence[float], confidence: float = 0.95
) -> DifferenceInterval:
    """Welch's interval of mean(treated) − mean(control), for a quantity that may take either sign."""
    t, c = np.asarray(treated, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if t.size == 0 or c.size == 0:
        return DifferenceInterval(math.nan, math.nan, math.nan, confidence)
    diff = float(t.mean() - c.mean())
    if t.size < 2 or c.size < 2:
        return DifferenceInterval(diff, math.nan, math.nan, confidence)
    vt, vc = float(t.var(ddof=1) / t.size), float(c.var(ddof=1) / c.size)
    if vt + vc == 0:
        return DifferenceInterval(diff, diff, diff, confidence)
    df = (vt + vc) ** 2 / ((vt**2 / (t.size - 1)) + (vc**2 / (c.size - 1)))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(vt + vc)
    return DifferenceInterval(diff, diff - half, diff + half, confidence)
