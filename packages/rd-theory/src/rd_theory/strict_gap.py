r"""When a weaker distortion gives a *strictly* lower rate (spec Lemma 13 - Theorem 19).

Source ``X = (U, V)`` with ``U ⊥ V``; the strong (pixel-like) distortion sees both parts, the weak
(feature-like) one only ``U``:

    d_strong = ||u - û||² + ||v - v̂||²,        d_weak = ||u - û||².              (eqs. 16, 17)

Lemma 13:  R_weak(D) = R_U(D): the weak problem is the RD problem of ``U`` alone.
Zero-rate level of V (Definition 14):  D_V⁰ = min_v̂ E||V - v̂||² (over the reconstruction alphabet).
Theorem 19: for ``D < D_V⁰`` every kernel feasible for d_strong must carry information about V:

    R_strong(D) >= R_U(D) + R_V(D) > R_weak(D).

Reconstruction (the spec's formulas were lost): the gap bound follows the chain rule
``I(X; X̂) >= I(U; Û) + I(V; V̂ | U, Û)`` with both parts' budgets at most ``D``. Below ``D_V⁰`` is a
sufficient condition; for independent parts the gap vanishes only once ``D`` reaches the strong
curve's own zero-rate level ``D_U⁰ + D_V⁰`` (then both rates are 0). `gap_profile` measures the
whole picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rd_theory._validation import as_distribution
from rd_theory.rate_distortion import distortion_limits, rate_distortion
from rd_theory.waterfill import gaussian_rate_distortion


@dataclass(frozen=True)
class ScalarSource:
    """A discrete scalar source: probabilities on ``values``, reconstructed on ``reconstruction``."""

    probabilities: NDArray[np.float64]
    values: NDArray[np.float64]
    reconstruction: NDArray[np.float64]

    @classmethod
    def build(
        cls, probabilities: ArrayLike, values: ArrayLike, reconstruction: ArrayLike | None = None
    ) -> ScalarSource:
        p = as_distribution(probabilities, "probabilities")
        x = np.asarray(values, dtype=np.float64)
        if x.shape != p.shape:
            raise ValueError(f"values has shape {x.shape}, probabilities has shape {p.shape}")
        xh = x.copy() if reconstruction is None else np.asarray(reconstruction, dtype=np.float64)
        return cls(probabilities=p, values=x, reconstruction=xh)

    def squared_error(self) -> NDArray[np.float64]:
        return (self.values[:, None] - self.reconstruction[None, :]) ** 2

    def zero_rate_level(self) -> float:
        """D⁰ = min over constant reconstructions of the expected squared error."""
        return distortion_limits(self.probabilities, self.squared_error()).maximum


@dataclass(frozen=True)
class ProductProblem:
    p_x: NDArray[np.float64]
    d_weak: NDArray[np.float64]
    d_strong: NDArray[np.float64]


def product_problem(u: ScalarSource, v: ScalarSource) -> ProductProblem:
    """The joint source (U, V) with the weak and strong distortions of eqs. 16-17.

    Symbol index ``i * |V| + j`` is (u_i, v_j); reconstruction ``k * |V̂| + l`` is (û_k, v̂_l).
    """
    p_x = np.kron(u.probabilities, v.probabilities).astype(np.float64)
    du, dv = u.squared_error(), v.squared_error()
    d_weak = np.kron(du, np.ones_like(dv)).astype(np.float64)
    d_strong = d_weak + np.kron(np.ones_like(du), dv)
    return ProductProblem(p_x=p_x, d_weak=d_weak, d_strong=d_strong)


@dataclass(frozen=True)
class GapProfile:
    budgets: NDArray[np.float64]
    rate_weak: NDArray[np.float64]
    rate_strong: NDArray[np.float64]
    rate_u: NDArray[np.float64]  # Lemma 13 says rate_weak == rate_u
    rate_v: NDArray[np.float64]  # Theorem 19's lower bound on the gap below D_V⁰
    zero_rate_v: float
    zero_rate_strong: float

    @property
    def gap(self) -> NDArray[np.float64]:
        return self.rate_strong - self.rate_weak


def gap_profile(u: ScalarSource, v: ScalarSource, budgets: ArrayLike) -> GapProfile:
    """R_weak, R_strong, R_U and R_V on ``budgets`` for the discrete product source."""
    problem = product_problem(u, v)
    grid = np.asarray(budgets, dtype=np.float64)
    du, dv = u.squared_error(), v.squared_error()
    u_min = distortion_limits(u.probabilities, du).minimum
    v_min = distortion_limits(v.probabilities, dv).minimum

    def rate(p: NDArray[np.float64], d: NDArray[np.float64], D: float, floor: float) -> float:
        return rate_distortion(p, d, max(D, floor))

    strong_min = distortion_limits(problem.p_x, problem.d_strong).minimum
    return GapProfile(
        budgets=grid,
        rate_weak=np.array([rate(problem.p_x, problem.d_weak, D, u_min) for D in grid]),
        rate_strong=np.array([rate(problem.p_x, problem.d_strong, D, strong_min) for D in grid]),
        rate_u=np.array([rate(u.probabilities, du, D, u_min) for D in grid]),
        rate_v=np.array([rate(v.probabilities, dv, D, v_min) for D in grid]),
        zero_rate_v=v.zero_rate_level(),
        zero_rate_strong=u.zero_rate_level() + v.zero_rate_level(),
    )


@dataclass(frozen=True)
class GaussianGap:
    """Closed form for U ~ N(0, diag σ_U²), V ~ N(0, diag σ_V²): D_V⁰ = Σ σ_V²."""

    rate_weak: float
    rate_strong: float
    rate_v: float
    zero_rate_v: float

    @property
    def gap(self) -> float:
        return self.rate_strong - self.rate_weak


def gaussian_gap(var_u: ArrayLike, var_v: ArrayLike, D: float) -> GaussianGap:
    vu = np.asarray(var_u, dtype=np.float64)
    vv = np.asarray(var_v, dtype=np.float64)
    return GaussianGap(
        rate_weak=gaussian_rate_distortion(vu, D),
        rate_strong=gaussian_rate_distortion(np.concatenate([vu, vv]), D),
        rate_v=gaussian_rate_distortion(vv, D),
        zero_rate_v=float(vv.sum()),
    )
