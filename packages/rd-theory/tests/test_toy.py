import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rd_theory import toy
from scipy.optimize import minimize

coefficients = hnp.arrays(np.float64, st.integers(2, 8), elements=st.floats(0.0, 10.0))


@given(coefficients, st.floats(0.01, 50.0))
def test_closed_form_minimiser(c, beta):
    closed = toy.optimal_variances(c, beta)
    numeric = minimize(toy.objective_in_log_variance, np.zeros(c.size), args=(c, beta),
                       method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12}).x
    np.testing.assert_allclose(np.log(closed), numeric, atol=1e-5)
    # A perturbed profile is strictly worse (J is strictly convex).
    assert toy.objective(closed, c, beta) < toy.objective(closed * 1.05, c, beta)


@given(coefficients.filter(lambda c: c.max() > 0.01), st.floats(0.05, 30.0))
def test_rate_map_is_decreasing_and_inverted(c, target):
    betas = np.logspace(-2, 2, 20)
    assert np.all(np.diff([toy.rate_at_beta(c, b) for b in betas]) < 0)
    beta = toy.beta_for_rate(c, target)
    assert toy.rate_at_beta(c, beta) == pytest.approx(target, rel=1e-9)


def test_kl_decomposition_matches_torch():
    rng = np.random.default_rng(0)
    mu, var = rng.normal(size=6), rng.uniform(0.1, 3.0, 6)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.sqrt(var))),
        torch.distributions.Normal(0.0, 1.0)).sum().item()
    assert toy.gaussian_kl(mu, var) == pytest.approx(expected, rel=1e-12)


def test_anisotropy_zero_iff_isotropic():
    assert toy.anisotropy(np.full(5, 0.3)) == 0.0
    assert toy.anisotropy([0.3, 0.3, 0.31]) > 0


def test_matched_rate_pair_theorem42():
    c_iso = np.ones(16)
    c_ramp = toy.distortion_coefficients(toy.ramp_metric(16, 10.0), np.eye(16))
    np.testing.assert_allclose(c_ramp[[0, -1]], [1.0, 100.0])
    pair = toy.matched_rate_pair(c_iso, c_ramp, 5.0)
    assert pair.relative_rate_mismatch < 1e-9
    assert pair.isotropic.anisotropy < 1e-20
    assert pair.anisotropic.anisotropy > 0.1
    grid = toy.matched_rate_pair(c_iso, c_ramp, 5.0, beta_grid=np.logspace(-3, 3, 20001))
    assert grid.relative_rate_mismatch < 1e-3


def test_errors():
    with pytest.raises(ValueError, match="all c_i are 0"):
        toy.beta_for_rate(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="beta"):
        toy.optimal_variances([1.0], 0.0)
    with pytest.raises(ValueError, match="compose"):
        toy.distortion_coefficients(np.eye(3), np.eye(2))
