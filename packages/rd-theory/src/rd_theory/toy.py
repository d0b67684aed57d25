r"""The linear-Gaussian anisotropy toy model (spec appendix D.2, Proposition 39 - Theorem 42).

Posterior ``q(z) = N(μ, diag σ²)``, linear decoder ``x̂ = A z``, squared metric ``||M (x̂ - x)||²``.
Reconstruction of the lost formulas:

    E ||M (A z - x)||² = ||M (A μ - x)||² + Σ_i c_i σ_i²,   c_i = ||M A e_i||²         (eq. 44)
    varKL(σ²) = ½ Σ_i (σ_i² - 1 - log σ_i²)                                           (Def. 36)
    KL(N(μ, diag σ²) || N(0, I)) = ½ ||μ||² + varKL(σ²)                               (Lemma 35)
    J(σ²) = Σ_i c_i σ_i² + β varKL(σ²)   is strictly convex in each σ_i², minimised at
    σ_i²* = β / (β + 2 c_i)                                                            (eq. 46)
    A(σ²) = Var_i(log σ_i²)   (population variance over coordinates)                   (eq. 47)

Theorem 41: ``β -> varKL(σ²*(β))`` is continuous and strictly decreasing from +∞ (β -> 0) to 0
(β -> ∞) whenever some ``c_i > 0``, so every target rate has exactly one β (`beta_for_rate`).
Theorem 42: with ``M = I`` (all ``c_i`` equal) the optimum is isotropic, ``A = 0``; with a metric
whose ``c_i`` differ, ``A > 0`` at the *same* variance-KL.

Table 3 in number (`table3`)
----------------------------
The spec's Table 3 lost its setup with its formulas; what survives is the procedure (each metric's β
chosen on a log-spaced grid as the point nearest in variance-KL to a target "in the overlap" of the two
metrics' rate ranges; an exponentially ramping anisotropic metric) and four numbers: target 17.26,
achieved 17.24 (isotropic) and 17.25 (ramping), anisotropy 0 and 0.6486. The free choices are few:
the dimension d, where the ramp acts (on M, so ``c_i = m_i²``, or on the prices ``c_i`` directly), its
form and ratio, the β grid, and how the target is read off the overlap. The search (A = I throughout;
a ramp on M with ratio r is the same model as a ramp on c with ratio r²):

1. The anisotropy at the published target, β exact, for each exponential ramp ``r^(i/(d-1))``:

   ====  ==============  ==============  ===============  ======================
   d     on M, r = 2     on M, r = 4     on M, r = 10     on c, r = 10
   ====  ==============  ==============  ===============  ======================
   8     0.2038          0.8134          2.2311           0.5615
   16    0.1649          **0.6487**      1.7111           0.4506
   32    0.1226          0.4651          1.1262           0.3281
   64    0.0814          0.2923          0.6405           0.2107
   ====  ==============  ==============  ===============  ======================

   A linear ramp of M from 1 to 4 at d = 16 gives 0.5928. Only d = 16 with M ramping from 1 to 4
   (c_i from 1 to 16) lands within 1e-3 of 0.6486; a wider search (d from 2 to 256, ratios from 1.5
   to 1e4, ramps in i/(d-1), i/d and e^(a i)) finds no other non-degenerate choice within 1e-3.
2. The grid and the target, for that metric: the target as the midpoint of the overlap of the two
   rate ranges on the grid, the grid ``logspace(a, b, N)``:

   ============  =======  ========  ====================  ====================  ===========
   β range       N        target    achieved, isotropic   achieved, ramping     anisotropy
   ============  =======  ========  ====================  ====================  ===========
   [1e-3, 1e3]   500      26.4080   26.4478               26.3347               0.70139
   [1e-1, 1e1]   500      9.2505    9.2295                9.2462                0.51079
   [1e-2, 1e2]   200      17.2645   17.3271               17.2328               0.64846
   [1e-2, 1e2]   **500**  17.2645   17.2410               17.2452               0.64858
   [1e-2, 1e2]   1000     17.2645   17.2573               17.2711               0.64883
   ============  =======  ========  ====================  ====================  ===========

   Only the range [1e-2, 1e2] puts the overlap's midpoint at 17.26 (the overlap is [rate of the ramp
   at β = 100, rate of the isotropic metric at β = 0.01], whatever N), and of the round grid sizes only
   N = 500 rounds all three grid-dependent numbers to the published ones.

So `table3` is: d = 16, A = I, M = I against M = diag(4^(i/15)), β on ``logspace(-2, 2, 500)``, target
the midpoint of the overlap. It reproduces all four published numbers at their printed precision
(tested); the search above is recomputed by the tests, so its rows cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq


def _as_coefficients(c: ArrayLike) -> NDArray[np.float64]:
    coeffs = np.asarray(c, dtype=np.float64)
    if coeffs.ndim != 1 or coeffs.size == 0:
        raise ValueError(f"c must be a non-empty 1-D array, got shape {coeffs.shape}")
    if not np.all(np.isfinite(coeffs)) or np.any(coeffs < 0):
        raise ValueError("c must be finite and >= 0 (c_i = ||M A e_i||²)")
    return coeffs


def _as_variances(var: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(var, dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("variances must be a non-empty array of finite values > 0")
    return v


def distortion_coefficients(metric: ArrayLike, decoder: ArrayLike) -> NDArray[np.float64]:
    """c_i = ||M A e_i||² (eq. 44), the price of posterior variance along latent coordinate i."""
    M = np.asarray(metric, dtype=np.float64)
    A = np.asarray(decoder, dtype=np.float64)
    if M.ndim != 2 or A.ndim != 2 or M.shape[1] != A.shape[0]:
        raise ValueError(f"metric {M.shape} and decoder {A.shape} do not compose as M @ A")
    return np.sum((M @ A) ** 2, axis=0)


def optimal_variances(c: ArrayLike, beta: float) -> NDArray[np.float64]:
    """σ_i²* = β / (β + 2 c_i), the unique minimiser of J (eq. 46)."""
    coeffs = _as_coefficients(c)
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be finite and > 0, got {beta!r}")
    return beta / (beta + 2.0 * coeffs)


def objective(var: ArrayLike, c: ArrayLike, beta: float) -> float:
    """J(σ²) = Σ c_i σ_i² + β varKL(σ²) (eq. 45, the μ-dependent constant dropped)."""
    v = _as_variances(var)
    return float(np.dot(_as_coefficients(c), v) + beta * variance_kl(v))


def objective_in_log_variance(log_var: ArrayLike, c: ArrayLike, beta: float) -> float:
    """J as a function of log σ² (unconstrained), for numerical cross-checks of eq. 46."""
    return objective(np.exp(np.asarray(log_var, dtype=np.float64)), c, beta)


def variance_kl(var: ArrayLike) -> float:
    """½ Σ (σ_i² - 1 - log σ_i²): the variance part of KL to N(0, I), in nats."""
    v = _as_variances(var)
    return float(0.5 * np.sum(v - 1.0 - np.log(v)))


def gaussian_kl(mu: ArrayLike, var: ArrayLike) -> float:
    """KL(N(μ, diag σ²) || N(0, I)) = ½||μ||² + varKL(σ²) (Lemma 35)."""
    m = np.asarray(mu, dtype=np.float64)
    return float(0.5 * np.dot(m.ravel(), m.ravel()) + variance_kl(var))


def anisotropy(var: ArrayLike) -> float:
    """Population variance of log σ_i² over coordinates (eq. 47); 0 iff all σ_i² are equal."""
    return float(np.var(np.log(_as_variances(var))))


def rate_at_beta(c: ArrayLike, beta: float) -> float:
    """The variance-KL map of Theorem 41: β -> varKL(σ²*(β))."""
    return variance_kl(optimal_variances(c, beta))


def beta_for_rate(c: ArrayLike, target: float) -> float:
    """The unique β with varKL(σ²*(β)) = target (Theorem 41)."""
    coeffs = _as_coefficients(c)
    if not np.any(coeffs > 0):
        raise ValueError("all c_i are 0: the posterior sits at the prior for every β (rate 0)")
    if not np.isfinite(target) or target <= 0:
        raise ValueError(f"target variance-KL must be finite and > 0, got {target!r}")
    lo, hi = 1.0, 1.0
    while rate_at_beta(coeffs, lo) < target:
        lo /= 10.0
    while rate_at_beta(coeffs, hi) > target:
        hi *= 10.0
    log_beta = brentq(
        lambda t: rate_at_beta(coeffs, float(np.exp(t))) - target,
        np.log(lo), np.log(hi), xtol=1e-14, rtol=4 * np.finfo(float).eps,
    )
    return float(np.exp(log_beta))


@dataclass(frozen=True)
class OperatingPoint:
    """One metric's model at a chosen β."""

    name: str
    coefficients: NDArray[np.float64]
    beta: float
    variances: NDArray[np.float64]
    rate: float  # variance-KL, nats
    anisotropy: float


def operating_point(name: str, c: ArrayLike, beta: float) -> OperatingPoint:
    coeffs = _as_coefficients(c)
    var = optimal_variances(coeffs, beta)
    return OperatingPoint(name, coeffs, float(beta), var, variance_kl(var), anisotropy(var))


def ramp_metric(dim: int, ratio: float) -> NDArray[np.float64]:
    """Diagonal metric whose weights ramp exponentially from 1 to ``ratio`` over the coordinates."""
    if dim < 2 or ratio <= 0:
        raise ValueError("ramp_metric needs dim >= 2 and ratio > 0")
    return np.diag(ratio ** (np.arange(dim) / (dim - 1)))


@dataclass(frozen=True)
class MatchedRatePair:
    target: float
    isotropic: OperatingPoint
    anisotropic: OperatingPoint

    @property
    def relative_rate_mismatch(self) -> float:
        return abs(self.anisotropic.rate - self.isotropic.rate) / self.target


def matched_rate_pair(
    c_isotropic: ArrayLike,
    c_anisotropic: ArrayLike,
    target: float,
    beta_grid: ArrayLike | None = None,
) -> MatchedRatePair:
    """Theorem 42's construction: each metric at the β that brings its variance-KL to ``target``.

    With ``beta_grid`` the β is the grid point closest in rate (as the spec's Table 3 does, so
    the rates match only up to the grid's resolution); without, β is exact (`beta_for_rate`).
    """
    def choose(c: ArrayLike) -> float:
        if beta_grid is None:
            return beta_for_rate(c, target)
        grid = np.asarray(beta_grid, dtype=np.float64)
        rates = np.array([rate_at_beta(c, b) for b in grid])
        return float(grid[np.argmin(np.abs(rates - target))])

    return MatchedRatePair(
        target=float(target),
        isotropic=operating_point("isotropic metric", c_isotropic, choose(c_isotropic)),
        anisotropic=operating_point("ramping metric", c_anisotropic, choose(c_anisotropic)),
    )


TABLE3_DIM = 16
TABLE3_RAMP_RATIO = 4.0  # metric weights ramp from 1 to 4, so the prices c_i ramp from 1 to 16
TABLE3_BETA_GRID = np.logspace(-2.0, 2.0, 500)


@dataclass(frozen=True)
class PublishedTable3:
    """The numbers the spec's Table 3 prints (variance-KL in nats), at their printed precision."""

    target: float = 17.26
    achieved_isotropic: float = 17.24
    achieved_ramping: float = 17.25
    anisotropy_isotropic: float = 0.0
    anisotropy_ramping: float = 0.6486


PUBLISHED_TABLE3 = PublishedTable3()


def overlap_target(c_a: ArrayLike, c_b: ArrayLike, beta_grid: ArrayLike) -> float:
    """The midpoint of the overlap of two metrics' variance-KL ranges over ``beta_grid``."""
    grid = np.asarray(beta_grid, dtype=np.float64)
    rates_a = np.array([rate_at_beta(c_a, b) for b in grid])
    rates_b = np.array([rate_at_beta(c_b, b) for b in grid])
    low, high = max(rates_a.min(), rates_b.min()), min(rates_a.max(), rates_b.max())
    if low >= high:
        raise ValueError(f"the two rate ranges do not overlap on this grid ({low:.4g} >= {high:.4g})")
    return float((low + high) / 2.0)


def table3(dim: int = TABLE3_DIM, ramp_ratio: float = TABLE3_RAMP_RATIO,
           beta_grid: ArrayLike = TABLE3_BETA_GRID) -> MatchedRatePair:
    """The spec's Table 3 as reconstructed above: M = I against the ramping metric, A = I, each β on
    ``beta_grid`` nearest in variance-KL to the midpoint of the overlap of the two rate ranges."""
    decoder = np.eye(dim)
    c_isotropic = distortion_coefficients(np.eye(dim), decoder)
    c_ramping = distortion_coefficients(ramp_metric(dim, ramp_ratio), decoder)
    target = overlap_target(c_isotropic, c_ramping, beta_grid)
    return matched_rate_pair(c_isotropic, c_ramping, target, beta_grid=beta_grid)


def table3_comparison(pair: MatchedRatePair,
                      published: PublishedTable3 = PUBLISHED_TABLE3) -> list[tuple[str, float, float, float]]:
    """(quantity, reproduced, published, half a unit of the published last digit) for each number of
    Table 3: the reproduction matches a number when it rounds to it, |reproduced - published| <= half."""
    return [
        ("target", pair.target, published.target, 0.005),
        ("achieved, isotropic", pair.isotropic.rate, published.achieved_isotropic, 0.005),
        ("achieved, ramping", pair.anisotropic.rate, published.achieved_ramping, 0.005),
        ("anisotropy, isotropic", pair.isotropic.anisotropy, published.anisotropy_isotropic, 1e-12),
        ("anisotropy, ramping", pair.anisotropic.anisotropy, published.anisotropy_ramping, 0.00005),
    ]
