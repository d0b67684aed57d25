r"""Verdicts over seeds: means with t confidence intervals and one-sided Welch tests.

Cell of a table (n seeds, mean m, sample sd s): m ± t_{1-(1-c)/2, n-1} · s / √n. A quantity with a
bounded range gets that interval on a scale where it is unbounded, mapped back, so the interval never
leaves the range: `positive_ci` (log: the geometric mean, for a value > 0 such as an anisotropy or a
distance), `correlation_ci` (Fisher's z = artanh ρ, for a correlation in (−1, 1)) and `share_ci` (logit,
for a share in (0, 1); a share at exactly 0 or 1 keeps the plain interval).

A directional claim "the statistic is lower at λ_max than at λ = 0" (samples a at λ = 0, b at λ_max):

* effect = (m_b - m_a) / m_a, the relative change; its CI is Fieller's interval of m_b / m_a − 1
  (`trends.ratio_interval`), which never falls below −100 % when every value is positive (dividing
  Welch's CI of m_b − m_a by m_a, as before, treated m_a as known and could); with a value <= 0 on
  either side the quantity is not positive and Welch's CI over |m_a| is kept;
* p_lower = P(T <= t) and p_higher = P(T >= t) for Welch's t = (m_b - m_a) / √(s_a²/n_a + s_b²/n_b)
  with Welch–Satterthwaite degrees of freedom (scipy's ``ttest_ind(equal_var=False)``);
* verdict "holds" if m_b < m_a and p_lower < α, "reversed" if m_b > m_a and p_higher < α, otherwise
  "not resolved at this scale". With fewer than two values on either side there is no test:
  "not resolved at this scale (n < 2)".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from rd_train.analysis.trends import ratio_interval

HOLDS, REVERSED, UNRESOLVED = "holds", "reversed", "not resolved at this scale"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 3) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1 or not math.isfinite(self.low):
            return f"{self.mean:.{digits}g} (n = {self.n})"
        return f"{self.mean:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size))


def _mapped_ci(values: Sequence[float] | np.ndarray, confidence: float,
               forward: Callable[[np.ndarray], np.ndarray], inverse: Callable[[float], float]) -> Interval:
    ci = mean_ci(forward(np.asarray(values, dtype=np.float64)), confidence)
    back = [float(inverse(v)) if math.isfinite(v) else v for v in (ci.mean, ci.low, ci.high)]
    return Interval(back[0], back[1], back[2], ci.n)


def positive_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """The geometric mean of values > 0 with its t-interval in log: never below 0."""
    x = np.asarray(values, dtype=np.float64)
    if (x <= 0).any():
        raise ValueError(f"positive_ci: every value must be > 0, got {x.min():g}")
    return _mapped_ci(x, confidence, np.log, math.exp)


def correlation_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """The mean of correlations in Fisher's z (tanh of the mean artanh) with its interval: within (−1, 1)."""
    x = np.clip(np.asarray(values, dtype=np.float64), -1 + 1e-12, 1 - 1e-12)
    return _mapped_ci(x, confidence, np.arctanh, math.tanh)


def share_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """A share's mean in logit with its interval, within (0, 1); with a value at exactly 0 or 1 (a share
    that cannot vary, e.g. the neural share at λ = 0) the plain mean and t-interval."""
    x = np.asarray(values, dtype=np.float64)
    if ((x <= 0) | (x >= 1)).any():
        return mean_ci(x, confidence)
    return _mapped_ci(x, confidence, lambda v: np.log(v / (1 - v)), lambda z: 1 / (1 + math.exp(-z)))


@dataclass(frozen=True)
class Comparison:
    base: Interval  # λ = 0
    top: Interval  # the largest λ
    effect: float  # relative change (top - base) / base
    effect_low: float
    effect_high: float
    p_lower: float
    p_higher: float
    verdict: str

    @property
    def p_value(self) -> float:
        """The p-value of the direction the means point in."""
        return self.p_lower if self.top.mean <= self.base.mean else self.p_higher


def compare_lower(
    base: Sequence[float], top: Sequence[float], alpha: float = 0.05, confidence: float = 0.95
) -> Comparison:
    """Is ``top`` lower than ``base``? One-sided Welch tests both ways (module docstring)."""
    a, b = np.asarray(base, dtype=np.float64), np.asarray(top, dtype=np.float64)
    base_ci, top_ci = mean_ci(a, confidence), mean_ci(b, confidence)
    if a.size < 2 or b.size < 2:
        effect = (top_ci.mean - base_ci.mean) / base_ci.mean if a.size and b.size else math.nan
        return Comparison(
            base_ci, top_ci, effect, math.nan, math.nan, math.nan, math.nan, f"{UNRESOLVED} (n < 2)"
        )
    diff = b.mean() - a.mean()
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(var_a + var_b)
    if se == 0:  # identical values on both sides: the sign of diff is certain or there is no effect
        p_lower = 0.0 if diff < 0 else 1.0
        p_higher = 0.0 if diff > 0 else 1.0
        half = 0.0
    else:
        df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
        t = diff / se
        p_lower, p_higher = float(stats.t.cdf(t, df)), float(stats.t.sf(t, df))
        half = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    scale = abs(a.mean())
    low, high = (diff - half) / scale, (diff + half) / scale
    if (a > 0).all() and (b > 0).all():
        fieller = ratio_interval(b, a, confidence)
        low, high = fieller.low, fieller.high
    verdict = (
        HOLDS if diff < 0 and p_lower < alpha else REVERSED if diff > 0 and p_higher < alpha else UNRESOLVED
    )
    return Comparison(
        base_ci,
        top_ci,
        float(diff / scale),
        float(low),
        float(high),
        p_lower,
        p_higher,
        verdict,
    )
