"""The trend test and the effect intervals against scipy and hand-computed cases (analysis/trends.py)."""

import itertools
import math

import numpy as np
import pytest
from rd_train.analysis import difference_interval, holm, ratio_interval, trend_test
from scipy import stats


def brute_force_jt(groups, alternative="decreasing"):
    """J and its exact permutation p-value by enumerating every permutation of the pooled values."""
    values = np.concatenate([np.asarray(g, float) for g in groups])
    sizes = [len(g) for g in groups]

    def j(split):
        total = 0.0
        for a, b in itertools.combinations(range(len(split)), 2):
            for x in split[a]:
                for y in split[b]:
                    total += (
                        (y < x) + 0.5 * (y == x) if alternative == "decreasing" else (y > x) + 0.5 * (y == x)
                    )
        return total

    def cut(order):
        out, start = [], 0
        for s in sizes:
            out.append(values[list(order[start : start + s])])
            start += s
        return out

    observed = j(cut(range(values.size)))
    null = [j(cut(p)) for p in itertools.permutations(range(values.size))]
    return observed, float(np.mean(np.asarray(null) >= observed - 1e-9))


@pytest.mark.parametrize("alternative", ["decreasing", "increasing"])
def test_two_groups_is_mann_whitney(alternative):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=5), rng.normal(size=4) - 0.7
    t = trend_test([a, b], alternative)
    scipy_alt = "greater" if alternative == "decreasing" else "less"  # decreasing: a above b
    expected = stats.mannwhitneyu(a, b, alternative=scipy_alt, method="exact").pvalue
    assert t.method == "exact" and t.p_value == pytest.approx(expected, rel=1e-12)


def test_exact_p_matches_a_brute_force_permutation_with_ties():
    groups = [[3.0, 2.0], [2.0, 1.5, 2.5], [1.0, 2.0]]  # ties across groups
    observed, p = brute_force_jt(groups)
    t = trend_test(groups)
    assert t.statistic == observed and t.p_value == pytest.approx(p, rel=1e-12)
    _, p_inc = brute_force_jt(groups, "increasing")
    assert trend_test(groups, "increasing").p_value == pytest.approx(p_inc, rel=1e-12)


def test_hand_computed_statistic_and_a_perfect_trend():
    # U_12 = #{group-2 value below a group-1 value} = 4, U_13 = 4, U_23 = 4 -> J = 12 = all pairs.
    t = trend_test([[5, 6], [3, 4], [1, 2]])
    assert t.statistic == 12 and t.pairs == 12
    assert t.p_value == pytest.approx(1 / math.factorial(6) * (2 * 2 * 2))  # 8 of 720 orders give J = 12
    assert trend_test([[5, 6], [3, 4], [1, 2]], "increasing").p_value == 1.0


def test_normal_approximation_agrees_with_the_exact_null_including_ties():
    rng = np.random.default_rng(0)
    groups = [np.round(rng.normal(size=3) - 0.4 * k, 1) for k in range(3)]  # rounding makes ties
    exact = trend_test(groups)
    normal = trend_test(groups, exact_limit=0)
    assert exact.method == "exact" and normal.method == "normal"
    assert abs(exact.p_value - normal.p_value) < 0.03
    # and the tie-corrected mean / variance: compare with the moments of the exact null
    from rd_train.analysis.trends import _exact_null

    values = np.concatenate(groups)
    null = _exact_null(values, (3, 3, 3))
    n, nk = 9, np.array([3, 3, 3])
    assert null.mean() == pytest.approx((n**2 - (nk**2).sum()) / 4)


def test_a_decreasing_trend_is_found_and_a_flat_one_is_not():
    rng = np.random.default_rng(1)
    falling = [rng.normal(size=5) - k for k in range(6)]
    flat = [rng.normal(size=5) for _ in range(6)]
    assert trend_test(falling).p_value < 1e-6
    assert trend_test(flat).p_value > 0.05
    assert trend_test(falling, "increasing").p_value > 0.99
    with pytest.raises(ValueError):
        trend_test([[1.0], []])


def test_ratio_interval_reduces_to_a_t_interval_when_the_control_is_exact():
    treated, control = [1.0, 1.4, 1.2, 0.9], [2.0, 2.0, 2.0]
    r = ratio_interval(treated, control, 0.95)
    t = np.asarray(treated)
    half = stats.t.ppf(0.975, t.size - 1) * t.std(ddof=1) / math.sqrt(t.size)
    assert r.effect == pytest.approx(t.mean() / 2 - 1)
    assert r.low == pytest.approx((t.mean() - half) / 2 - 1, rel=1e-9)
    assert r.high == pytest.approx((t.mean() + half) / 2 - 1, rel=1e-9)


def test_ratio_interval_never_falls_below_minus_100_percent_for_positive_values():
    treated, control = [0.01, 0.5, 0.02], [1.0, 1.1, 0.9]  # a Welch interval / mean would pass -100 %
    r = ratio_interval(treated, control)
    assert r.low >= -1.0 and r.low <= r.effect <= r.high
    unresolved = ratio_interval([1.0, 1.1], [0.1, 5.0, 0.05])  # control mean not resolved from 0
    assert math.isinf(unresolved.high) and unresolved.low >= -1.0


def test_ratio_interval_covers_at_its_level():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(400):
        t, c = rng.normal(3.0, 0.6, 5), rng.normal(4.0, 0.8, 5)
        r = ratio_interval(t, c)
        hits += r.low <= 3.0 / 4.0 - 1 <= r.high
    assert 0.90 <= hits / 400 <= 0.99


def test_difference_interval_is_welch():
    a, b = [1.0, 2.0, 3.0, 2.5], [0.5, 0.7, 0.2]
    d = difference_interval(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_holm_against_hand_computed_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, float("nan"), 0.01])
    assert (
        adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    )
