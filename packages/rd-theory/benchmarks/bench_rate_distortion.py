"""Blahut–Arimoto vs the cvxpy convex program for one R(D) evaluation (`nox -s bench`).

Source: a quantised Gaussian on n points reconstructed on an n-point grid, squared error, budget at
30 % of the way from D_min to D_max. Both solvers must agree to 1e-5 nats (the equal-accuracy
condition); the cvxpy solve on 256x256 takes tens of minutes on 2 cores, so it is marked slow.
"""

import numpy as np
import pytest
from rd_theory import distortion_limits, rate_distortion


def problem(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    # Both sizes come from one random stream, 64 first, so REFERENCE stays reproducible.
    rng = np.random.default_rng(0)
    for size in (64, 256):
        p = rng.dirichlet(np.ones(size))
        x, x_hat = rng.normal(size=size), np.linspace(-2, 2, size)
        if size == n:
            d = (x[:, None] - x_hat[None, :]) ** 2
            lim = distortion_limits(p, d)
            return p, d, lim.minimum + 0.3 * (lim.maximum - lim.minimum)
    raise ValueError(f"no benchmark problem of size {n}")


# cvxpy (Clarabel) solutions of these two problems: 0.564314218587534 and 0.5801928979248114.
REFERENCE = {64: 0.564314218587534, 256: 0.5801928979248114}


@pytest.mark.parametrize("n", [64, 256])
def test_blahut_arimoto(benchmark, n):
    p, d, D = problem(n)
    rate = benchmark.pedantic(rate_distortion, args=(p, d, D), rounds=5, iterations=1)
    assert rate == pytest.approx(REFERENCE[n], abs=1e-5)


@pytest.mark.parametrize(
    "n", [64, pytest.param(256, marks=pytest.mark.slow)]
)
def test_cvxpy(benchmark, n):
    p, d, D = problem(n)
    rate = benchmark.pedantic(rate_distortion, args=(p, d, D), kwargs={"method": "cvxpy"},
                              rounds=3 if n == 64 else 1, iterations=1)
    assert rate == pytest.approx(REFERENCE[n], abs=1e-5)
