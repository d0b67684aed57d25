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
