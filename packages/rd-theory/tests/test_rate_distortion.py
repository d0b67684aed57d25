import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rd_theory import (
    blahut_arimoto,
    distortion_limits,
    rate_at_minimum_distortion,
    rate_distortion,
    rd_curve,
)
from rd_theory_strategies import problems


def hamming_rate(m: int, D: float) -> float:
    """R(D) of a uniform m-ary source under Hamming distortion."""
    return np.log(m) + D * np.log(D) + (1 - D) * np.log(1 - D) - D * np.log(m - 1)


@pytest.mark.parametrize("m", [2, 3, 7])
@pytest.mark.parametrize("frac", [0.02, 0.3, 0.7, 0.999])
def test_hamming_closed_form(m, frac):
    D = frac * (1 - 1 / m)
    assert rate_distortion(np.full(m, 1 / m), 1 - np.eye(m), D) == pytest.approx(hamming_rate(m, D), abs=1e-9)


def test_binary_source_closed_form_near_both_ends():
    h = lambda x: -x * np.log(x) - (1 - x) * np.log(1 - x)  # noqa: E731
    p = np.array([0.3, 0.7])
    for D in (1e-6, 0.1, 0.29, 0.2999):
        assert rate_distortion(p, 1 - np.eye(2), D) == pytest.approx(h(0.3) - h(D), abs=1e-9)
    assert rate_distortion(p, 1 - np.eye(2), 0.0) == pytest.approx(h(0.3), abs=1e-12)
    assert rate_distortion(p, 1 - np.eye(2), 0.3) == 0.0


@given(problems(max_size=5), st.floats(0.01, 1.0))
def test_ba_agrees_with_cvxpy(problem, frac):
    # Not at D_min itself: R has infinite slope there, and the conic solver's feasibility slack
    # buys rate (it reports "inaccurate"); D_min is checked exactly below.
    p, d = problem
    lim = distortion_limits(p, d)
    D = lim.minimum + frac * (lim.maximum - lim.minimum)
    assert rate_distortion(p, d, D) == pytest.approx(rate_distortion(p, d, D, method="cvxpy"), abs=1e-5)


@given(problems())
def test_curve_is_nonincreasing_convex_and_ends_right(problem):
    p, d = problem
    curve = rd_curve(p, d, n=9)
    R = curve.rate
    assert np.all(np.diff(R) <= 1e-9)
    assert np.all(R[:-2] - 2 * R[1:-1] + R[2:] >= -1e-8)  # convex on an even grid
    assert R[-1] == 0.0
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    assert R[0] <= entropy + 1e-9  # no more information than the source has


@given(problems(), st.floats(0.01, 30.0))
def test_certified_bound_brackets_the_point(problem, slope):
    p, d = problem
    r = blahut_arimoto(p, d, slope)
    assert r.converged
    np.testing.assert_allclose(r.kernel.sum(axis=1), 1.0, atol=1e-12)
    # The dual certificate never exceeds an achieved (D, I) point, and is tight at convergence.
    assert r.rate_lower_bound(r.distortion) <= r.rate + 1e-9
    assert r.rate_lower_bound(r.distortion) >= r.rate - 1e-7


def test_constant_distortion_has_zero_rate_everywhere():
    curve = rd_curve([2 / 3, 1 / 3], np.full((2, 2), 3.5), n=5)
    np.testing.assert_array_equal(curve.rate, 0.0)


def test_zero_probability_symbols_do_not_change_the_rate():
    p = np.array([0.5, 0.5])
    d = np.array([[0.0, 1.0], [1.0, 0.0]])
    padded_p = np.array([0.5, 0.0, 0.5])
    padded_d = np.array([[0.0, 1.0], [9.0, 9.0], [1.0, 0.0]])
    for D in (0.0, 0.1, 0.4):
        assert rate_distortion(padded_p, padded_d, D) == pytest.approx(rate_distortion(p, d, D), abs=1e-12)


def test_rate_at_minimum_distortion_is_the_entropy_of_the_best_map():
    """Unique row minimisers make the optimal kernel a function f(x): R(D_min) = H(f(X)).
    (A case where cvxpy, at D_min, is off by 4e-3 nats.)"""
    p = np.array([0.14359668, 0.32764022, 0.18449643, 0.15977023, 0.18449643])
    p /= p.sum()
    d = np.array([[0.8, 3.6, 3.6, 1.0, 3.4, 1.4], [3.6, 3.6, 2.0, 3.6, 3.1, 2.7],
                  [3.6, 3.6, 3.6, 2.0, 3.6, 3.0], [3.6, 2.5, 3.6, 3.6, 1.6, 2.5],
                  [3.6, 3.6, 3.6, 2.2, 3.6, 3.6]])
    image = np.zeros(d.shape[1])
    np.add.at(image, d.argmin(axis=1), p)
    entropy = -np.sum(image[image > 0] * np.log(image[image > 0]))
    assert rate_distortion(p, d, distortion_limits(p, d).minimum) == pytest.approx(entropy, abs=1e-10)


def test_rate_at_minimum_distortion_with_ties():
    # Both symbols can be reconstructed perfectly by the shared column 2: zero rate at D_min = 0.
    d = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert rate_at_minimum_distortion([0.5, 0.5], d) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(
    ("p", "d", "D", "message"),
    [
        ([0.5, 0.6], np.eye(2), 0.1, "must sum to 1"),
        ([1.2, -0.2], np.eye(2), 0.1, "negative probabilities"),
        ([0.5, 0.5], -np.eye(2), 0.1, "negative entries"),
        ([0.5, 0.5], np.ones((3, 2)), 0.1, "3 rows but the source has 2"),
        ([0.5, 0.5], 1 + np.eye(2), 0.5, "below the curve's minimum"),
        ([0.5, np.nan], np.eye(2), 0.1, "non-finite"),
        ([0.5, 0.5], np.eye(2), np.inf, "must be finite"),
    ],
)
def test_bad_input_names_the_problem(p, d, D, message):
    with pytest.raises(ValueError, match=message):
        rate_distortion(p, d, D)


def test_unknown_method():
    with pytest.raises(ValueError, match="'ba' or 'cvxpy'"):
        rate_distortion([0.5, 0.5], 1 - np.eye(2), 0.1, method="exact")
