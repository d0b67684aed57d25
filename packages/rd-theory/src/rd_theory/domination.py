r"""Weakness of a distortion as affine domination, and the RD ordering it implies.

Spec Definitions 1, 9 and 10: ``d_weak`` is weaker than ``d_strong`` with constants ``a > 0``,
``b >= 0`` when, for every pair (x, x̂),

    d_weak(x, x̂) <= a · d_strong(x, x̂) + b.                                         (eq. 2 / 13)

Theorems 11 and 12 (Observation 2): then every kernel meeting budget ``D`` under ``d_strong``
meets ``a D + b`` under ``d_weak``, so

    R_weak(a D + b) <= R_strong(D)        for every D.                                 (eq. 3 / 15)

For a given ``a`` the tightest offset is ``b(a) = max(0, max_{x,x̂} d_weak - a d_strong)``; a pure
scale (``b = 0``) exists iff ``d_weak`` vanishes wherever ``d_strong`` does, and then the tightest
one is ``a = max_{d_strong > 0} d_weak / d_strong``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rd_theory._validation import as_distortion, as_source_and_distortion
from rd_theory.rate_distortion import Method, distortion_limits, rate_distortion


@dataclass(frozen=True)
class Domination:
    """Certificate ``d_weak <= a d_strong + b`` with ``b`` the tightest offset for this ``a``."""

    a: float
    b: float

    def bound(self, d_strong: ArrayLike) -> NDArray[np.float64]:
        return self.a * np.asarray(d_strong, dtype=np.float64) + self.b


def affine_domination(
    d_weak: ArrayLike, d_strong: ArrayLike, a: float | None = None
) -> Domination:
    """Constants certifying ``d_weak <= a * d_strong + b`` pointwise.

    With ``a`` given, returns the tightest ``b`` for it. Without, returns the tightest pure scale
    ``(a*, 0)`` when one exists; otherwise ``a*`` is the largest ratio over pairs with
    ``d_strong > 0`` and ``b`` the largest ``d_weak`` where ``d_strong == 0``.
    """
    weak = as_distortion(d_weak, np.shape(d_weak)[0], name="d_weak")
    strong = as_distortion(d_strong, weak.shape[0], name="d_strong")
    if weak.shape != strong.shape:
        raise ValueError(f"d_weak has shape {weak.shape} but d_strong has shape {strong.shape}")
    if a is not None:
        if not np.isfinite(a) or a <= 0:
            raise ValueError(f"a must be a finite number > 0, got {a!r}")
        return Domination(a=float(a), b=float(max(0.0, np.max(weak - a * strong))))
    positive = strong > 0
    ratio = float(np.max(weak[positive] / strong[positive])) if np.any(positive) else 0.0
    offset = float(np.max(weak[~positive])) if np.any(~positive) else 0.0
    # a must be > 0 (Definition 10); a weak distortion that is identically zero needs no scale.
    return Domination(a=max(ratio, np.finfo(np.float64).tiny), b=offset)


@dataclass(frozen=True)
class OrderingCheck:
    """R_weak(a D + b) <= R_strong(D) on a grid of D; ``slack = R_strong - R_weak`` per point."""

    budgets: NDArray[np.float64]
    rate_strong: NDArray[np.float64]
    rate_weak: NDArray[np.float64]
    slack: NDArray[np.float64]
    tolerance: float

    @property
    def worst_slack(self) -> float:
        return float(self.slack.min())

    @property
    def holds(self) -> bool:
        return self.worst_slack >= -self.tolerance


def check_rd_ordering(
    p_x: ArrayLike,
    d_weak: ArrayLike,
    d_strong: ArrayLike,
    domination: Domination,
    *,
    n_budgets: int = 12,
    method: Method = "ba",
    tolerance: float = 1e-8,
) -> OrderingCheck:
    """Evaluate Theorem 12's inequality on ``n_budgets`` budgets spanning d_strong's curve.

    ``tolerance`` absorbs the solver's certified error (BA stops at a 1e-11 Lagrangian gap).
    """
    p, strong = as_source_and_distortion(p_x, d_strong)
    weak = as_distortion(d_weak, p.size, name="d_weak")
    limits = distortion_limits(p, strong)
    budgets = np.linspace(limits.minimum, limits.maximum, n_budgets)
    rate_strong = np.array([rate_distortion(p, strong, D, method) for D in budgets])
    weak_min = distortion_limits(p, weak).minimum
    # a D + b >= D_min(weak) whenever the certificate is valid; clamp only rounding below it, and
    # let a certificate that is wrong show up as a failed check rather than an exception.
    rate_weak = np.array(
        [rate_distortion(p, weak, max(domination.a * D + domination.b, weak_min), method)
         for D in budgets]
    )
    return OrderingCheck(
        budgets=budgets,
        rate_strong=rate_strong,
        rate_weak=rate_weak,
        slack=rate_strong - rate_weak,
        tolerance=tolerance,
    )
