r"""R(D) at a given budget and the whole curve, by Blahut–Arimoto or as an independent convex program.

The curve lives on ``[D_min, D_max]`` with

    D_min = Σ_x p(x) min_x̂ d(x, x̂)        (every symbol reconstructed at its best, R = R(D_min))
    D_max = min_x̂ Σ_x p(x) d(x, x̂)        (one constant reconstruction, R = 0).

``method="ba"`` maximises the concave dual ``φ(s) = G_lower(s) - s D`` over the slope ``s`` (each
evaluation a certified Blahut–Arimoto run, warm-started from the previous one). Reading ``R`` off
the dual instead of root-finding ``D(s) = D`` stays exact on linear pieces of the curve, where
``D(s)`` jumps. At ``D = D_min`` the slope is infinite, so we run the ``s -> inf`` limit directly:
the alternating minimisation restricted to each row's minimisers.

``method="cvxpy"`` solves the same problem as a convex program over the joint ``P(x, x̂)``:

    minimise  Σ rel_entr(P, p ⊗ q)   s.t.  P >= 0,  Σ_x̂ P = p,  q = Σ_x P,  <P, d> <= D,

an independent check that shares no code with the BA path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar

from rd_theory._validation import as_source_and_distortion
from rd_theory.blahut_arimoto import (
    DEFAULT_MAX_ITERATIONS,
    BlahutArimotoResult,
    alternate,
    blahut_arimoto,
    mutual_information,
)

Method = Literal["ba", "cvxpy"]

# Budgets within this relative distance of an end of the curve are treated as that end.
_END_TOLERANCE = 1e-12


@dataclass(frozen=True)
class DistortionLimits:
    minimum: float  # D_min: no budget below it is achievable
    maximum: float  # D_max: zero rate from here on


@dataclass(frozen=True)
class RDCurve:
    distortion: NDArray[np.float64]
    rate: NDArray[np.float64]  # nats


def distortion_limits(p_x: ArrayLike, dist: ArrayLike) -> DistortionLimits:
    p, d = as_source_and_distortion(p_x, dist)
    return DistortionLimits(minimum=float(p @ d.min(axis=1)), maximum=float((p @ d).min()))


def rate_distortion(
    p_x: ArrayLike,
    dist: ArrayLike,
    D: float,
    method: Method = "ba",
    *,
    tol: float = 1e-11,
) -> float:
    """The Shannon rate-distortion function R(D) in nats."""
    p, d = as_source_and_distortion(p_x, dist)
    limits = distortion_limits(p, d)
    budget = _checked_budget(D, limits)
    if budget >= limits.maximum:
        return 0.0
    if method == "cvxpy":
        return _rate_cvxpy(p, d, budget)
    if method != "ba":
        raise ValueError(f"method must be 'ba' or 'cvxpy', got {method!r}")
    if budget <= limits.minimum:
        return rate_at_minimum_distortion(p, d, tol=tol)
    return _DualSearch(p, d, tol).rate(budget, limits)


def rd_curve(
    p_x: ArrayLike, dist: ArrayLike, n: int = 50, *, tol: float = 1e-11
) -> RDCurve:
    """``n`` points (D, R(D)) evenly spaced in D from D_min to D_max, by Blahut–Arimoto."""
    if n < 2:
        raise ValueError(f"n must be >= 2 to span [D_min, D_max], got {n}")
    p, d = as_source_and_distortion(p_x, dist)
    limits = distortion_limits(p, d)
    budgets = np.linspace(limits.minimum, limits.maximum, n)
    search = _DualSearch(p, d, tol)  # shares its warm start along the curve
    rates = [rate_at_minimum_distortion(p, d, tol=tol)]
    rates += [search.rate(b, limits) for b in budgets[1:-1]]
    rates.append(0.0)
    return RDCurve(distortion=budgets, rate=np.asarray(rates))


def rate_at_minimum_distortion(
    p_x: ArrayLike, dist: ArrayLike, *, tol: float = 1e-11
) -> float:
    """R(D_min): the least information that still reconstructs every symbol at its best."""
    p, d = as_source_and_distortion(p_x, dist)
    support = p > 0
    p_s, d_s = p[support], d[support]
    row_min = d_s.min(axis=1, keepdims=True)
    best = (d_s <= row_min + _END_TOLERANCE * max(1.0, float(np.abs(d_s).max()))).astype(np.float64)
    q0 = np.full(d.shape[1], 1.0 / d.shape[1])
    q, z, _, _, _ = alternate(p_s, best, q0, tol=tol, max_iter=DEFAULT_MAX_ITERATIONS)
    kernel = best * q[None, :] / z[:, None]
    return mutual_information(p_s, kernel)


def _checked_budget(D: float, limits: DistortionLimits) -> float:
    budget = float(D)
    if not np.isfinite(budget):
        raise ValueError(f"distortion budget D must be finite, got {D!r}")
    slack = _END_TOLERANCE * max(1.0, abs(limits.minimum))
    if budget < limits.minimum - slack:
        raise ValueError(
            f"D={budget:.6g} is below the curve's minimum distortion D_min={limits.minimum:.6g}: "
            "no reconstruction achieves it"
        )
    return max(budget, limits.minimum)


class _DualSearch:
    """Maximises φ(s) = lower(s) - s D over s, carrying the BA warm start between evaluations."""

    def __init__(self, p: NDArray[np.float64], d: NDArray[np.float64], tol: float) -> None:
        self.p, self.d, self.tol = p, d, tol
        self.q: NDArray[np.float64] | None = None
        # Past this slope every non-minimal Gibbs weight exp(-s (d - d_min(x))) underflows to 0:
        # the problem is then the D = D_min limit, and larger slopes change nothing.
        excess = d - d.min(axis=1, keepdims=True)
        positive = excess[excess > 0]
        self.max_slope = 800.0 / float(positive.min()) if positive.size else 1.0

    def solve(self, slope: float) -> BlahutArimotoResult:
        result = blahut_arimoto(self.p, self.d, slope, tol=self.tol, q_init=self.q)
        self.q = result.output_marginal
        return result

    def rate(self, budget: float, limits: DistortionLimits) -> float:
        if budget >= limits.maximum:  # includes the degenerate curve D_min == D_max
            return 0.0
        lo, hi = self._bracket(budget, limits)
        best = {"value": 0.0}

        def negative_dual(log_slope: float) -> float:
            # Unclamped: max(0, .) would flatten the concave dual and stall the line search.
            result = self.solve(float(np.exp(log_slope)))
            value = result.lagrangian_lower - result.slope * budget
            best["value"] = max(best["value"], value)
            return -value

        minimize_scalar(
            negative_dual, bounds=(np.log(lo), np.log(hi)), method="bounded",
            options={"xatol": 1e-9},
        )
        return best["value"]

    def _bracket(self, budget: float, limits: DistortionLimits) -> tuple[float, float]:
        """Slopes ``lo <= s* <= hi`` with D(lo) >= budget >= D(hi)."""
        scale = max(limits.maximum - limits.minimum, 1e-300)
        lo = hi = 1.0 / scale
        while self.solve(lo).distortion < budget and lo > 1e-12 / scale:
            lo /= 4.0
        while hi < self.max_slope and self.solve(hi).distortion > budget:
            hi = min(hi * 4.0, self.max_slope)
        return lo, hi


def _rate_cvxpy(p: NDArray[np.float64], d: NDArray[np.float64], budget: float) -> float:
    import cvxpy as cp  # deferred: cvxpy's import costs a second and only this path needs it

    support = p > 0
    p_s, d_s = p[support], d[support]
    n, m = d_s.shape
    # Scale distortions to O(1): the conic solver's tolerances are absolute.
    scale = float(d_s.max()) or 1.0
    joint = cp.Variable((n, m), nonneg=True)
    q = cp.sum(joint, axis=0)
    product = cp.reshape(p_s, (n, 1), order="C") @ cp.reshape(q, (1, m), order="C")
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.rel_entr(joint, product))),
        [cp.sum(joint, axis=1) == p_s, cp.sum(cp.multiply(joint, d_s / scale)) <= budget / scale],
    )
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or problem.value is None:
        raise RuntimeError(f"cvxpy could not solve the rate-distortion program: {problem.status}")
    return float(max(0.0, problem.value))
