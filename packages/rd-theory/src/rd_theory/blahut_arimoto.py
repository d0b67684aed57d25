r"""Blahut–Arimoto for the discrete Shannon rate-distortion function (spec, Definition 8, eq. 10).

For a source ``p(x)`` on a finite alphabet and a distortion matrix ``d(x, x̂) >= 0``

    R(D) = min_{Q(x̂|x) : E_{p Q}[d] <= D}  I(X; X̂)        (nats).

At a slope ``s >= 0`` the Lagrangian ``G(s) = min_Q I(Q) + s E[d]`` is minimised by alternating

    Q(x̂|x) = q(x̂) exp(-s d(x, x̂)) / Z(x),     Z(x) = Σ_x̂ q(x̂) exp(-s d(x, x̂)),
    q(x̂)  <- q(x̂) c(x̂),                      c(x̂) = Σ_x p(x) exp(-s d(x, x̂)) / Z(x).

Blahut (1972) bounds the Lagrangian at every iterate, which gives a *certified* stopping rule:

    -Σ_x p log Z - max_x̂ log c   <=   G(s)   <=   -Σ_x p log Z - Σ_x̂ q(x̂) c(x̂) log c(x̂).

We stop when the two sides differ by less than ``tol``. The left side also certifies the curve at
*every* budget: ``R(D) >= lower - s D`` for all ``D`` (weak duality), which `rate_distortion` uses
to read off ``R`` at an exact target ``D`` even where ``R`` has a linear piece.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rd_theory._validation import as_source_and_distortion

DEFAULT_TOLERANCE = 1e-11  # nats, on the Lagrangian's upper-minus-lower gap
DEFAULT_MAX_ITERATIONS = 200_000


@dataclass(frozen=True)
class BlahutArimotoResult:
    """One point of the rate-distortion curve, at the slope ``-slope``.

    ``kernel`` is the optimal test channel Q(x̂|x) (rows sum to one), ``output_marginal`` the
    induced q(x̂). ``lagrangian_lower`` certifies ``R(D) >= lagrangian_lower - slope * D`` for every
    ``D``; ``gap`` is the Lagrangian's certified suboptimality at termination.
    """

    rate: float
    distortion: float
    kernel: NDArray[np.float64]
    output_marginal: NDArray[np.float64]
    slope: float
    lagrangian_lower: float
    gap: float
    iterations: int
    converged: bool

    def rate_lower_bound(self, budget: float) -> float:
        """Certified lower bound on R(budget) from this slope's dual variables."""
        return max(0.0, self.lagrangian_lower - self.slope * budget)


def blahut_arimoto(
    p_x: ArrayLike,
    dist: ArrayLike,
    slope: float,
    *,
    tol: float = DEFAULT_TOLERANCE,
    max_iter: int = DEFAULT_MAX_ITERATIONS,
    q_init: ArrayLike | None = None,
) -> BlahutArimotoResult:
    """Solve the rate-distortion Lagrangian at ``slope`` (``s`` above) to certified tolerance ``tol``."""
    p, d = as_source_and_distortion(p_x, dist)
    if not np.isfinite(slope) or slope < 0:
        raise ValueError(f"slope must be a finite number >= 0, got {slope!r}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    support = p > 0  # zero-probability symbols carry no constraint and no information
    p_s, d_s = p[support], d[support]
    m = d.shape[1]

    q = np.full(m, 1.0 / m) if q_init is None else _as_initial_marginal(q_init, m)
    # Shifting each row by its minimum keeps exp() in (0, 1] with a 1 in every row, so Z(x) never
    # underflows as long as q keeps mass on each row's best reconstruction.
    row_min = d_s.min(axis=1, keepdims=True)
    weights = np.exp(-slope * (d_s - row_min))

    q, z, c, gap, iterations = alternate(p_s, weights, q, tol=tol, max_iter=max_iter)
    if not np.all(np.isfinite(z)) or np.any(z <= 0):
        raise FloatingPointError(
            f"Blahut-Arimoto underflowed at slope {slope:g}; the slope is too large for the "
            "distortion scale (rescale dist or use a smaller slope)"
        )
    # Undo the row shift: log Z(x) = log(weights @ q) - s * row_min.
    log_z = np.log(z) - slope * row_min[:, 0]
    lagrangian_lower = float(-np.dot(p_s, log_z) - np.log(c.max()))

    kernel_s = weights * q[None, :] / z[:, None]
    kernel = _full_kernel(support, kernel_s, q, d, slope)
    output_marginal = p_s @ kernel_s
    distortion = float(np.sum(p_s[:, None] * kernel_s * d_s))
    rate = mutual_information(p_s, kernel_s)
    return BlahutArimotoResult(
        rate=rate,
        distortion=distortion,
        kernel=kernel,
        output_marginal=output_marginal,
        slope=float(slope),
        lagrangian_lower=lagrangian_lower,
        gap=gap,
        iterations=iterations,
        converged=gap <= tol,
    )


def alternate(
    p_s: NDArray[np.float64],
    weights: NDArray[np.float64],
    q: NDArray[np.float64],
    *,
    tol: float,
    max_iter: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float, int]:
    """The alternating minimisation for a fixed Gibbs weight matrix ``weights[x, x̂] >= 0``.

    Returns the final output marginal ``q``, ``Z = weights @ q``, ``c`` and the certified gap.
    ``weights`` is ``exp(-s d)`` (row-shifted) for a finite slope, or the indicator of each row's
    minimisers in the ``s -> inf`` limit used at ``D = D_min``.
    """
    def update(q: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
        """One Blahut–Arimoto step q -> q c, and the certified gap at q."""
        z = weights @ q
        c = (p_s / z) @ weights
        q_next = q * c
        log_c = np.log(c)
        used = q_next > 0
        gap = float(log_c.max() - np.dot(q_next[used], log_c[used]))
        return q_next / q_next.sum(), gap  # renormalise: rounding drifts the sum

    def objective(q: NDArray[np.float64]) -> float:
        """Σ_x p log (weights q)(x): BA is EM for it and increases it monotonically."""
        return float(np.dot(p_s, np.log(weights @ q)))

    # Plain BA is EM for the mixture weights q and converges linearly, often with a rate within
    # 1e-4 of one. SQUAREM (Varadhan & Roland 2008, scheme S3) extrapolates along two consecutive
    # steps; a step is kept only if it stays in the simplex and does not lower the EM objective,
    # so every accepted iterate is at least as good as a plain BA step from the same point.
    gap = np.inf
    iterations = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        while iterations < max_iter:
            if iterations and iterations % _NEWTON_EVERY == 0:
                q = _newton_polish(p_s, weights, q, objective)
            q1, gap = update(q)
            iterations += 1
            if gap <= tol:
                q = q1
                break
            q2, _ = update(q1)
            iterations += 1
            r, v = q1 - q, (q2 - q1) - (q1 - q)
            v_norm = float(np.linalg.norm(v))
            alpha = -float(np.linalg.norm(r)) / v_norm if v_norm > 0 else -1.0
            alpha = min(alpha, -1.0)
            base = objective(q2)
            while True:
                candidate = q - 2.0 * alpha * r + alpha * alpha * v
                if alpha >= -1.0 or (np.all(candidate >= 0) and objective(candidate) >= base):
                    break
                alpha = (alpha - 1.0) / 2.0  # back off towards the plain double step
            q = q2 if alpha >= -1.0 else candidate / candidate.sum()
        z = weights @ q
        c = (p_s / z) @ weights
    return q, z, c, gap, iterations


_NEWTON_EVERY = 64  # BA/SQUAREM steps between Newton polishes: enough to find the support first
_NEWTON_STEPS = 30


def _newton_polish(
    p_s: NDArray[np.float64],
    weights: NDArray[np.float64],
    q: NDArray[np.float64],
    objective: Callable[[NDArray[np.float64]], float],
) -> NDArray[np.float64]:
    """Active-set Newton on max_{q>=0} f(q) - Σq, f(q) = Σ p log(weights q).

    ``f(tq) = f(q) + log t``, so this problem has the BA fixed point as its solution (with Σq = 1)
    and no equality constraint. On the support S its gradient is ``c_S - 1`` and its Hessian
    ``-W_Sᵀ diag(p / Z²) W_S``; a damped Newton step with a ratio test (dropping the index that
    hits zero) converges quadratically where BA crawls. A step that does not raise the objective
    is rejected, so the polish never makes the iterate worse.
    """
    q = q.copy()
    q[q < 1e-14 * q.max()] = 0.0
    for _ in range(_NEWTON_STEPS):
        grad_full = (p_s / (weights @ q)) @ weights - 1.0
        # KKT: grad <= 0 where q = 0. A violator re-enters the support, so a symbol that an
        # earlier step dropped too early comes back instead of staying at zero forever.
        idx = np.flatnonzero((q > 0) | (grad_full > 1e-13))
        w_s = weights[:, idx]
        z = w_s @ q[idx]
        grad = grad_full[idx]
        hess = (w_s * (p_s / z**2)[:, None]).T @ w_s  # minus the Hessian: positive semidefinite
        try:
            step = np.linalg.solve(hess + 1e-14 * np.trace(hess) * np.eye(idx.size), grad)
        except np.linalg.LinAlgError:
            break
        step[(q[idx] == 0) & (step < 0)] = 0.0  # an entry at zero cannot go lower
        shrinking = step < 0
        t_max = float(np.min(-q[idx][shrinking] / step[shrinking])) if np.any(shrinking) else np.inf
        t = min(1.0, t_max)
        current = objective(q) - q.sum()
        for _ in range(40):  # backtracking on the concave objective
            trial = q.copy()
            trial[idx] = np.maximum(q[idx] + t * step, 0.0)
            if objective(trial) - trial.sum() >= current:
                break
            t /= 2.0
        else:
            break
        q = trial
        if np.abs(grad).max() < 1e-15:
            break
    return q / q.sum()


def mutual_information(p_x: NDArray[np.float64], kernel: NDArray[np.float64]) -> float:
    """I(X; X̂) in nats for a source ``p_x`` and a channel ``kernel[x, x̂]`` (rows sum to one)."""
    q = p_x @ kernel
    joint = p_x[:, None] * kernel
    positive = joint > 0
    ratio = kernel[positive] / np.broadcast_to(q[None, :], kernel.shape)[positive]
    return float(max(0.0, np.sum(joint[positive] * np.log(ratio))))


def _as_initial_marginal(q_init: ArrayLike, m: int) -> NDArray[np.float64]:
    q = np.asarray(q_init, dtype=np.float64)
    if q.shape != (m,) or np.any(q < 0) or not np.all(np.isfinite(q)) or q.sum() <= 0:
        raise ValueError(f"q_init must be a nonnegative vector of length {m} with positive mass")
    # A zero stays zero under the multiplicative update; keep a floor so a warm start can recover.
    q = np.maximum(q / q.sum(), 1e-300)
    return q / q.sum()


def _full_kernel(
    support: NDArray[np.bool_],
    kernel_s: NDArray[np.float64],
    q: NDArray[np.float64],
    d: NDArray[np.float64],
    slope: float,
) -> NDArray[np.float64]:
    """Kernel on the full alphabet: zero-probability rows get the same Gibbs form (any row would do)."""
    kernel = np.empty_like(d)
    kernel[support] = kernel_s
    if not np.all(support):
        d_off = d[~support]
        logits = np.log(np.maximum(q, 1e-300))[None, :] - slope * (d_off - d_off.min(axis=1, keepdims=True))
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        kernel[~support] = w / w.sum(axis=1, keepdims=True)
    return kernel
