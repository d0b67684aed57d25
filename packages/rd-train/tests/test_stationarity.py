"""The window rule on synthetic histories with known answers (rd_train.analysis.stationarity)."""

import math

import numpy as np
import pytest
from rd_train.analysis import Rules
from rd_train.analysis.convergence import check
from rd_train.analysis.stationarity import WindowRule, stationarity, window_drift
from rd_train.errors import ParamsError


def history(kl, anisotropy=None, steps=1500, every=25):
    """Validation rows [step, KL, pixel SSE, anisotropy] from functions of the step."""
    anisotropy = anisotropy or (lambda t: 0.5)
    rows = [[t, kl(t), 100.0, anisotropy(t)] for t in range(every, steps + 1, every)]
    return {"steps": steps, "validation_history": rows, "kl": rows[-1][1], "anisotropy": rows[-1][3],
            "distortion": {"pixel_sse": 100.0}, "config": {"rate": {"mode": "fixed", "target": None}}}


RULE = WindowRule(window=0.4, relative=0.05, floors=(0.1, 0.0, 0.02))


def test_the_drift_is_the_fitted_change_over_the_window():
    steps = np.arange(0, 601, 75, dtype=float)
    assert window_drift(steps, 3.0 + 0.01 * steps) == pytest.approx(6.0)
    assert window_drift(steps, np.full_like(steps, 2.0)) == 0.0


def test_a_slow_drift_fails():
    result = stationarity(history(lambda t: 20 + 0.004 * t), RULE)  # 2.4 nats over 600 steps, 1.3 allowed
    assert not result.passed and "validation KL drifted +2.4" in result.reason


@pytest.mark.parametrize("phase", np.linspace(0, 2 * math.pi, 12, endpoint=False))
def test_a_stationary_oscillation_passes_whatever_its_phase(phase):
    def kl(t):
        return 20 + 1.0 * math.sin(2 * math.pi * t / 150 + phase)  # 4 periods in the window, ±5 %

    result = stationarity(history(kl), RULE)
    assert result.passed, result.reason
    assert abs(result.drifts[0]) <= 6 * 1.0 / (math.pi * 4) + 1e-9  # the bound of the module docstring
    assert result.means[0] == pytest.approx(20, abs=0.1)  # the window mean does not depend on the phase


def test_the_two_point_rule_passes_or_fails_the_same_oscillation_by_its_phase():
    rules = Rules(window=0.2, max_relative_change=0.05)
    verdicts = set()
    for phase in np.linspace(0, 2 * math.pi, 12, endpoint=False):
        # period 160: the rule's two points (steps 1200 and 1500) sit at different phases
        m = history(lambda t, p=phase: 20 + 1.5 * math.sin(2 * math.pi * t / 160 + p))
        verdicts.add(check(m, rules).passed)
        assert stationarity(m, RULE).passed  # the window rule passes every phase
    assert verdicts == {True, False}


def test_a_floor_keeps_a_tiny_absolute_move_of_a_small_quantity_from_failing():
    # anisotropy 0.100 -> 0.107 over the window: 7 % relative (fails 5 %), 0.007 absolute (< floor 0.02)
    m = history(lambda t: 20.0, anisotropy=lambda t: 0.1 + 0.007 * max(0, t - 900) / 600)
    assert stationarity(m, RULE).passed
    assert not stationarity(m, WindowRule(window=0.4, relative=0.05, floors=(0.1, 0.0, 0.0))).passed


def test_too_few_validations_fail_by_name_and_params_are_validated():
    result = stationarity(history(lambda t: 20.0, every=500), RULE)
    assert not result.passed and "needs 4" in result.reason
    assert WindowRule.from_params({"stationarity": {"window": 0.3}}).window == 0.3
    assert WindowRule.from_params({}).floors == (0.1, 0.0, 0.02)
    with pytest.raises(ParamsError, match="stationarity"):
        WindowRule.from_params({"stationarity": {"windw": 0.3}})
