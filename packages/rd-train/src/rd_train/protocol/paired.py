r"""Protocol v3's tests for a claim "falls with λ", with seeds as blocks (every run counts).

A seed fixes the initialisation, the noise and the batch order in every arm, so the runs of one seed at the
λ grid are one block, and a cell (family × β, or family × rate target × length) is a blocks × λ table.

* `page` — Page's L test of the ordered alternative "decreasing along the λ grid" in one cell: rank each
  block's values (1 = smallest, ties averaged), predicted ranks k for λ = 0 down to 1 for λ_max, and
  L = Σ_j c_j Σ_i r_ij. The p-value is ``scipy.stats.page_trend_test``'s (exact where it is, else the
  normal approximation with E L = n k (k+1)² / 4, Var L = n k² (k+1) (k² − 1) / 144).
* `stratified_page` — the headline per family and claim: one Page test over every (seed, cell) block of
  all the claim's cells. Ranks are taken within a block, so cells of different scale (rates at two β,
  anisotropy at three targets) pool without one cell's units dominating; its L is the sum of the cells'
  L and its null the sum of their nulls.
* `paired_log_ratio` — the effect: per block d_i = log(y_i(λ_max) / y_i(0)) of a positive quantity, the
  mean d̄ with Student's t-interval over blocks (n − 1 degrees of freedom), reported as the relative
  change of the geometric mean, exp(d̄) − 1 in [exp(lo) − 1, exp(hi) − 1]: never below −100 %.
* `adjacent_falls` — monotonicity shown: how many of the k − 1 adjacent λ steps lower the mean over
  blocks.

The multiplicity correction (Holm over the cells of one claim) is `rd_train.analysis.holm`; the λ × target
interaction is `rd_train.analysis.trend_test` (Jonckheere–Terpstra) over the targets of the per-seed log
ratios. Everything here is a pure function of numbers: which runs enter is decided before (every run of
the pre-registered length; only a non-finite stop removes a run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PageResult:
    statistic: float  # Page's L
    p_value: float  # one-sided, "decreasing along the grid"
    blocks: int
    treatments: int
    method: str  # scipy's: "exact" or "asymptotic"


def _table(blocks: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    data = np.asarray(blocks, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"Page's test needs a blocks x treatments table, got shape {data.shape}")
    if data.shape[0] < 2 or data.shape[1] < 3:
        raise ValueError(f"Page's test needs >= 2 blocks and >= 3 treatments, got {data.shape[0]} x "
                         f"{data.shape[1]}")
    if not np.isfinite(data).all():
        raise ValueError("Page's test: every value must be finite")
    return data


def page(blocks: Sequence[Sequence[float]] | np.ndarray) -> PageResult:
    """Page's test that the values fall along the columns (λ increasing) within each row (a seed)."""
    data = _table(blocks)
    k = data.shape[1]
    # scipy's alternative is "increasing along predicted_ranks": the largest predicted rank at λ = 0.
    result = stats.page_trend_test(data, predicted_ranks=list(range(k, 0, -1)))
    return PageResult(float(result.statistic), float(result.pvalue), data.shape[0], k, str(result.method))


def stratified_page(cells: Sequence[Sequence[Sequence[float]] | np.ndarray]) -> PageResult:
    """One Page test over the blocks of every cell (module doc): the cells' tables stacked by rows. All
    cells need the same λ grid (columns)."""
    tables = [_table(cell) for cell in cells]
    if not tables:
        raise ValueError("stratified_page needs at least one cell")
    widths = {t.shape[1] for t in tables}
    if len(widths) != 1:
        raise ValueError(f"stratified_page: every cell needs the same λ grid, got widths {sorted(widths)}")
    return page(np.vstack(tables))


@dataclass(frozen=True)
class RelativeEffect:
    """exp(mean log ratio) − 1 with its t-interval over blocks, and the mean log ratio itself."""

    effect: float
    low: float
    high: float
    mean_log_ratio: float
    blocks: int
    confidence: float


def paired_log_ratio(treated: Sequence[float] | np.ndarray, control: Sequence[float] | np.ndarray,
                     confidence: float = 0.95) -> RelativeEffect:
    """The paired effect of a positive quantity, treated[i] against control[i] of the same block."""
    t, c = np.asarray(treated, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if t.shape != c.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"paired_log_ratio: two equal non-empty 1-d samples, got {t.shape} and {c.shape}")
    if not ((t > 0).all() and (c > 0).all()):
        raise ValueError("paired_log_ratio: a log ratio needs positive values")
    d = np.log(t) - np.log(c)
    mean = float(d.mean())
    if d.size < 2:
        return RelativeEffect(math.expm1(mean), math.nan, math.nan, mean, 1, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return RelativeEffect(math.expm1(mean), math.expm1(mean - half), math.expm1(mean + half), mean,
                          int(d.size), confidence)


def adjacent_falls(blocks: Sequence[Sequence[float]] | np.ndarray) -> tuple[int, int]:
    """(adjacent λ steps whose mean over blocks falls, adjacent steps)."""
    data = np.asarray(blocks, dtype=np.float64)
    means = data.mean(axis=0)
    steps = np.diff(means)
    return int((steps < 0).sum()), int(steps.size)
