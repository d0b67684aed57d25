import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rd_train.analysis import (
    Rules,
    compare_lower,
    correlation_ci,
    mean_ci,
    positive_ci,
    share_ci,
    value_at_rate,
)
from rd_train.analysis.convergence import check
from rd_train.errors import ParamsError
from scipy import stats


def test_value_at_rate_reproduces_points_and_interpolates_in_log_kl():
    kl = [40.0, 10.0, 20.0, 5.0]  # unsorted on purpose
    values = [0.2, 0.8, 0.5, 1.1]
    for k, v in zip(kl, values, strict=True):
        assert value_at_rate(kl, values, k) == pytest.approx(v)
    # A curve linear in log KL is reproduced exactly between the points (PCHIP keeps linear data linear).
    kl = [2.0, 4.0, 8.0, 16.0]
    values = [3 - math.log(k) for k in kl]
    assert value_at_rate(kl, values, 5.0) == pytest.approx(3 - math.log(5.0))
    # and not linear in KL itself
    assert value_at_rate(kl, values, 5.0) != pytest.approx(values[1] + (values[2] - values[1]) / 4)


def test_value_at_rate_refuses_to_extrapolate_and_names_the_range():
    with pytest.raises(ValueError, match=r"target rate 50 nats is outside the range of kl \[5, 40\]"):
        value_at_rate([5.0, 10.0, 40.0], [1.0, 0.5, 0.1], 50.0)
    with pytest.raises(ValueError, match="outside"):
        value_at_rate([5.0, 10.0, 40.0], [1.0, 0.5, 0.1], 4.99)
    with pytest.raises(ValueError, match="share the KL"):
        value_at_rate([5.0, 5.0, 40.0], [1.0, 0.5, 0.1], 10.0)
    with pytest.raises(ValueError, match="two"):
        value_at_rate([5.0], [1.0], 5.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 100.0), min_size=2, max_size=7, unique=True), st.data())
def test_value_at_rate_stays_within_monotone_data(kl, data):
    """PCHIP on monotone data is monotone and bounded by its neighbours: no overshoot."""
    kl = sorted(kl)
    if min(np.diff(kl)) < 1e-6:
        return
    values = sorted(data.draw(st.lists(st.floats(-5, 5), min_size=len(kl), max_size=len(kl))), reverse=True)
    target = data.draw(st.floats(kl[0], kl[-1]))
    got = value_at_rate(kl, values, target)
    i = max(0, np.searchsorted(kl, target) - 1)
    j = min(len(kl) - 1, i + 1)
    assert min(values[i], values[j]) - 1e-9 <= got <= max(values[i], values[j]) + 1e-9


def test_mean_ci_is_the_t_interval():
    x = [1.0, 2.0, 4.0]
    ci = mean_ci(x)
    half = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert (ci.mean, ci.low, ci.high, ci.n) == pytest.approx((7 / 3, 7 / 3 - half, 7 / 3 + half, 3))


def test_compare_lower_matches_scipy_welch_and_gives_each_verdict():
    base, top = [1.0, 1.1, 0.95, 1.05], [0.6, 0.7, 0.65]
    c = compare_lower(base, top)
    assert c.p_lower == pytest.approx(stats.ttest_ind(top, base, equal_var=False, alternative="less").pvalue)
    assert c.p_higher == pytest.approx(
        stats.ttest_ind(top, base, equal_var=False, alternative="greater").pvalue
    )
    assert c.verdict == "holds" and c.effect == pytest.approx((0.65 - 1.025) / 1.025)
    assert c.effect_low < c.effect < c.effect_high < 0
    assert compare_lower(top, base).verdict == "reversed"
    assert compare_lower([1.0, 1.2, 0.8], [1.05, 0.9, 1.1]).verdict == "not resolved at this scale"
    assert compare_lower([1.0], [0.5, 0.6]).verdict.startswith("not resolved at this scale (n < 2)")


def run_metrics(history, final_kl, final_pixel, steps=1000, geco=None, final_anisotropy=0.5):
    rate = {"mode": "geco", "target": geco[0]} if geco else {"mode": "fixed", "target": None}
    m = {
        "steps": steps,
        "kl": final_kl,
        "distortion": {"pixel_sse": final_pixel},
        "anisotropy": final_anisotropy,
        "validation_history": history,
        "config": {"rate": rate},
    }
    if geco:
        m["geco_training_kl_ema"] = geco[1]
    return m


def test_convergence_rules_measure_the_last_window():
    rules = Rules(window=0.2, max_relative_change=0.05, geco_tolerance=0.05)
    history = [[700, 30.0, 100.0, 0.3], [800, 20.5, 100.0, 0.49], [900, 20.2, 99.0, 0.5]]
    ok = check(run_metrics(history, 20.0, 98.0), rules)
    assert ok.passed and ok.window_start == 800 and ok.kl_change == pytest.approx(0.025)
    moving = check(run_metrics(history, 19.0, 98.0), rules)  # 20.5 -> 19 is 7.9 %
    assert not moving.passed and "validation KL moved 7.9%" in moving.reason
    shape_moving = check(run_metrics(history, 20.0, 98.0, final_anisotropy=0.6), rules)  # 0.49 -> 0.6: 18 %
    assert not shape_moving.passed and "validation anisotropy moved 18.3%" in shape_moving.reason
    off_target = check(run_metrics(history, 20.0, 98.0, geco=(10.0, 10.6)), rules)
    assert not off_target.passed and "6.0% off the GECO target" in off_target.reason
    assert check(run_metrics(history, 20.0, 98.0, geco=(10.0, 10.4)), rules).passed
    assert not check(
        run_metrics([[900, 20.0, 98.0, 0.5]], 20.0, 98.0), rules
    ).passed  # nothing to compare with


def test_rules_come_from_params_and_are_validated():
    assert Rules.from_params({"rules": {"window": 0.25}}).window == 0.25
    with pytest.raises(ParamsError, match="no `rules` section"):
        Rules.from_params({})
    with pytest.raises(ParamsError, match="unknown key"):
        Rules.from_params({"rules": {"windw": 0.2}})
    with pytest.raises(ParamsError, match="window"):
        Rules.from_params({"rules": {"window": 1.5}})


def test_compare_lower_effect_interval_respects_positivity():
    # The old interval (Welch's CI of the difference over the base mean) fell below -100 % here.
    base, top = [1.0, 1.1, 0.9], [0.05, 0.6, 0.02]
    c = compare_lower(base, top)
    diff_half = stats.ttest_ind(top, base, equal_var=False).confidence_interval(0.95)
    assert diff_half.low / np.mean(base) < -1.0
    assert -1.0 <= c.effect_low < c.effect < c.effect_high


def test_bounded_quantities_get_intervals_that_stay_in_their_range():
    """The bug these name: a plain t-interval over three seeds of an anisotropy read 0.625 [−0.051, 1.3],
    and of a Spearman ρ 0.974 [0.947, 1.00x]: below 0 for a positive quantity, above 1 for a correlation."""
    anisotropy = [0.12, 0.95, 0.81]
    assert mean_ci(anisotropy).low < 0  # what the plain interval did
    ci = positive_ci(anisotropy)
    logs = np.log(anisotropy)
    half = stats.t.ppf(0.975, 2) * logs.std(ddof=1) / math.sqrt(3)
    assert ci.mean == pytest.approx(math.exp(logs.mean()))
    assert (ci.low, ci.high) == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))
    assert 0 < ci.low < ci.mean < ci.high
    rho = [0.99, 0.95, 0.999]
    assert mean_ci(rho).high > 1
    r = correlation_ci(rho)
    z = np.arctanh(rho)
    assert r.mean == pytest.approx(math.tanh(z.mean())) and -1 < r.low < r.mean < r.high < 1
    share = [0.001, 0.05, 0.02]
    assert mean_ci(share).low < 0
    assert 0 < share_ci(share).low < share_ci(share).high < 1
    assert share_ci([0.0, 0.0, 0.0]).format(3) == "0 [0, 0]"  # a share that cannot vary keeps the plain one
    with pytest.raises(ValueError, match="> 0"):
        positive_ci([0.5, 0.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 1e6), min_size=2, max_size=8))
def test_a_positive_interval_never_reaches_zero(values):
    ci = positive_ci(values)
    assert 0 < ci.low <= ci.mean * (1 + 1e-9) and ci.mean <= ci.high * (1 + 1e-9)
