import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rd_theory.strict_gap import ScalarSource, gap_profile, gaussian_gap


@st.composite
def scalar_sources(draw, max_size=4):
    n = draw(st.integers(2, max_size))
    p = draw(hnp.arrays(np.float64, n, elements=st.floats(0.05, 1.0)))
    # Values on a 0.05 grid: squared differences of floats 1e-100 apart underflow to exact ties,
    # which is float64 arithmetic, not a source worth testing.
    grid = draw(hnp.arrays(np.int64, n, elements=st.integers(-40, 40), unique=True))
    values = np.sort(grid * 0.05)
    return ScalarSource.build(p / p.sum(), values)


@given(scalar_sources(), scalar_sources(max_size=3))
def test_lemma13_and_theorem19(u, v):
    below = np.array([0.2, 0.6, 0.95]) * v.zero_rate_level()
    prof = gap_profile(u, v, below)
    np.testing.assert_allclose(prof.rate_weak, prof.rate_u, atol=1e-8)  # Lemma 13
    assert np.all(prof.gap >= prof.rate_v - 1e-8)  # Theorem 19's bound
    assert np.all(prof.gap > 0)  # strict: would fail if the inequality were reversed
    assert np.all(prof.rate_v > 0)


def test_gap_vanishes_only_at_the_strong_zero_rate_level():
    u = ScalarSource.build([0.25, 0.5, 0.25], [-1.0, 0.0, 1.0])
    v = ScalarSource.build([0.5, 0.5], [-1.0, 1.0])
    end = u.zero_rate_level() + v.zero_rate_level()
    # Between D_V0 and D_U0 + D_V0 the gap is still positive: below D_V0 is sufficient, not necessary.
    between = gap_profile(u, v, [1.01 * v.zero_rate_level(), 0.99 * end])
    assert np.all(between.gap > 0)
    at_end = gap_profile(u, v, [end, 1.5 * end])
    np.testing.assert_allclose(at_end.gap, 0.0, atol=1e-9)


@given(hnp.arrays(np.float64, 3, elements=st.floats(0.1, 4.0)),
       hnp.arrays(np.float64, 2, elements=st.floats(0.1, 4.0)), st.floats(0.01, 0.99))
def test_gaussian_gap(var_u, var_v, frac):
    g = gaussian_gap(var_u, var_v, frac * var_v.sum())
    assert g.gap >= g.rate_v - 1e-12
    assert g.gap > 0


def test_scalar_source_validation():
    with pytest.raises(ValueError, match="values has shape"):
        ScalarSource.build([0.5, 0.5], [1.0, 2.0, 3.0])
