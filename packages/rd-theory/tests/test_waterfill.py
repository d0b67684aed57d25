import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rd_theory.waterfill import gaussian_rate_distortion, reverse_waterfill

variances = hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(0.05, 5.0))


@given(variances, st.floats(0.02, 0.98), st.integers(0, 1000))
def test_waterfill_is_optimal_and_meets_budget(var, frac, seed):
    w = np.random.default_rng(seed).uniform(0.1, 3.0, var.size)
    D = frac * float(np.dot(w, var))
    res = reverse_waterfill(var, D, w)
    assert np.dot(w, res.distortions) == pytest.approx(D, rel=1e-10)
    assert np.all(res.distortions <= var * (1 + 1e-12))
    x = cp.Variable(var.size)
    prob = cp.Problem(cp.Minimize(cp.sum(0.5 * np.log(w * var) - 0.5 * cp.log(x))),
                      [cp.sum(x) == D, x <= w * var])
    prob.solve(solver=cp.CLARABEL)
    assert res.rate == pytest.approx(prob.value, abs=1e-6)


def test_expensive_directions_get_less_error():
    res = reverse_waterfill([1.0, 1.0, 1.0], 0.6, weights=[1.0, 4.0, 0.0])
    assert res.distortions[1] < res.distortions[0]  # eq. 8: large weight, small error variance
    assert res.distortions[2] == 1.0  # free coordinate stays at its prior


def test_scalar_gaussian_closed_form_and_zero_rate():
    assert gaussian_rate_distortion([2.0], 0.5) == pytest.approx(0.5 * np.log(4.0))
    assert gaussian_rate_distortion([2.0, 1.0], 3.0) == 0.0


@pytest.mark.parametrize(("var", "D", "w", "msg"), [
    ([1.0, -1.0], 0.5, None, "variances"), ([1.0], 0.0, None, "D must"),
    ([1.0, 2.0], 0.5, [1.0], "weights has shape"), ([1.0], 0.5, [-1.0], ">= 0"),
])
def test_bad_input(var, D, w, msg):
    with pytest.raises(ValueError, match=msg):
        reverse_waterfill(var, D, w)
