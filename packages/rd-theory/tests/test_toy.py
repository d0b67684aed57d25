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


def _mismatches(pair: toy.MatchedRatePair) -> list[str]:
    return [name for name, here, paper, half in toy.table3_comparison(pair) if abs(here - paper) > half]


def test_table3_reproduces_every_published_number():
    assert _mismatches(toy.table3()) == []


def test_table3_check_fails_on_the_earlier_reconstruction_and_on_a_nearby_grid():
    """The d = 32, ratio-10 reconstruction this replaced gave anisotropy 1.126; a grid of 1000 points
    moves the achieved rates past the published rounding."""
    assert "anisotropy, ramping" in _mismatches(toy.table3(dim=32, ramp_ratio=10.0))
    assert _mismatches(toy.table3(beta_grid=np.logspace(-2, 2, 1000))) != []
    with pytest.raises(ValueError, match="overlap"):
        toy.overlap_target(np.ones(2), np.full(2, 1e6), np.logspace(-2, -1, 5))


def _docstring_table(marker: str) -> list[list[str]]:
    """The rows of the reST table in toy's docstring that follows ``marker``."""
    text = toy.__doc__.split(marker, 1)[1]
    rows, rules = [], 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("===="):
            rules += 1
            if rules == 3:
                return rows
        elif rules == 2 and stripped:
            rows.append(stripped.replace("**", "").split())
    raise AssertionError(f"no table after {marker!r}")


def test_the_docstring_search_tables_are_what_the_code_computes():
    target = toy.PUBLISHED_TABLE3.target
    columns = [("M", 2.0), ("M", 4.0), ("M", 10.0), ("c", 10.0)]
    ramps = _docstring_table("for each exponential ramp")
    assert len(ramps) == 4
    for row in ramps:
        dim = int(row[0])
        for (on, ratio), printed in zip(columns, row[1:], strict=True):
            weights = ratio ** (np.arange(dim) / (dim - 1))
            c = weights**2 if on == "M" else weights
            value = toy.anisotropy(toy.optimal_variances(c, toy.beta_for_rate(c, target)))
            assert round(value, 4) == float(printed), (dim, on, ratio)
    grids = _docstring_table("the grid ``logspace(a, b, N)``")
    assert len(grids) == 5
    for lo, hi, n, *printed in grids:
        grid = np.logspace(np.log10(float(lo.strip("[,"))), np.log10(float(hi.strip("]"))), int(n))
        pair = toy.table3(beta_grid=grid)
        values = [pair.target, pair.isotropic.rate, pair.anisotropic.rate, pair.anisotropic.anisotropy]
        digits = [4, 4, 4, 5]
        assert [round(v, d) for v, d in zip(values, digits, strict=True)] == [float(p) for p in printed]
