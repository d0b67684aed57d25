import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rd_theory.domination import Domination, affine_domination, check_rd_ordering
from rd_theory.strict_gap import ScalarSource, product_problem
from rd_theory_strategies import problems


@given(problems(), st.floats(0.1, 5.0), st.floats(0.0, 2.0))
def test_certificate_is_valid_and_tight(problem, a, b):
    _, strong = problem
    rng = np.random.default_rng(0)
    weak = rng.uniform(size=strong.shape) * (a * strong + b)
    cert = affine_domination(weak, strong, a=a)
    assert np.all(weak <= cert.bound(strong) + 1e-12)
    assert cert.b <= b + 1e-12
    if cert.b > 0:  # tight: a smaller offset (e.g. half) breaks the inequality somewhere
        assert np.any(weak > Domination(a, cert.b / 2).bound(strong))


@given(problems())
def test_pure_scale_is_the_tightest(problem):
    _, strong = problem
    weak = 0.7 * strong  # vanishes wherever strong does, so b = 0 is possible
    cert = affine_domination(weak, strong)
    assert cert.b == 0.0
    if np.any(strong > 0):
        assert cert.a == pytest.approx(0.7)
        assert np.any(weak > Domination(cert.a / 2, 0.0).bound(strong))  # halving fails


def test_pure_scale_impossible_gives_offset():
    strong = np.array([[0.0, 1.0], [2.0, 0.0]])
    weak = np.array([[0.3, 0.5], [0.5, 0.0]])
    cert = affine_domination(weak, strong)
    assert (cert.a, cert.b) == (0.5, 0.3)


@given(problems(max_size=5), st.floats(0.2, 3.0), st.floats(0.0, 0.5))
def test_domination_implies_rd_ordering(problem, a, b):
    p, strong = problem
    weak = np.random.default_rng(1).uniform(size=strong.shape) * (a * strong + b)
    check = check_rd_ordering(p, weak, strong, affine_domination(weak, strong, a=a), n_budgets=6)
    assert check.holds, check.worst_slack


def test_ordering_is_strict_for_the_nuisance_source_so_a_reversed_check_fails():
    u = ScalarSource.build([0.2, 0.3, 0.5], [-1.0, 0.0, 1.5])
    v = ScalarSource.build([0.5, 0.5], [-1.0, 1.0])
    prob = product_problem(u, v)
    check = check_rd_ordering(prob.p_x, prob.d_weak, prob.d_strong, Domination(1.0, 0.0), n_budgets=8)
    assert check.holds
    # Below the strong curve's zero-rate level the gap is positive: R_strong > R_weak, so the
    # reversed inequality R_strong <= R_weak is false there.
    assert np.any(check.slack > 1e-3)


def test_wrong_certificate_is_reported_as_failure():
    u = ScalarSource.build([0.2, 0.3, 0.5], [-1.0, 0.0, 1.5])
    v = ScalarSource.build([0.5, 0.5], [-1.0, 1.0])
    prob = product_problem(u, v)
    # Claim the strong distortion is dominated by the weak one: false, and the check must say so.
    check = check_rd_ordering(prob.p_x, prob.d_strong, prob.d_weak, Domination(1.0, 0.0), n_budgets=8)
    assert not check.holds


def test_shape_mismatch_and_bad_scale():
    with pytest.raises(ValueError, match="shape"):
        affine_domination(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="a must be"):
        affine_domination(np.ones((2, 2)), np.ones((2, 2)), a=-1.0)


def test_public_api_at_the_package_top_level():
    import rd_theory
    from rd_theory.domination import affine_domination, check_rd_ordering
    from rd_theory.waterfill import reverse_waterfill

    assert rd_theory.affine_domination is affine_domination
    assert rd_theory.check_rd_ordering is check_rd_ordering
    assert rd_theory.reverse_waterfill is reverse_waterfill
    assert {"affine_domination", "check_rd_ordering", "reverse_waterfill"} <= set(rd_theory.__all__)
