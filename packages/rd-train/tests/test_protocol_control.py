"""The balancer control from run records (rd_train.protocol.control), on hand-made records of known answer."""

import math

import numpy as np
import pytest
from rd_train.protocol.control import rows, section
from scipy import stats

SEEDS = [0, 1, 2, 3]


def _record(sweep, family, lam, seed, kl, norm=1.0, beta=0.016):
    identity = {"sweep": sweep, "family": family, "architecture": "vector", "lam": lam, "beta": beta,
                "target": None, "seed": seed, "steps": 1000}
    metrics = {"kl": kl, "training_averages": {"combined_gradient_norm": {"second_half": norm}}}
    return {"path": f"{sweep}/{family}/lam{lam:g}_seed{seed}", "identity": identity, "metrics": metrics}


def _records(matched_kl):
    """Pixel SSE at 30 + seed, the plain λ = 5 run 20 % lower, the norm-matched run at ``matched_kl``."""
    out = []
    for seed in SEEDS:
        pixel = 30.0 + seed
        out += [_record("fixed", "pixel", 0.0, seed, pixel, norm=0.9),
                _record("fixed", "perceptual", 5.0, seed, 0.8 * pixel, norm=0.7),
                _record("control", "perceptual", 5.0, seed, matched_kl(seed, pixel), norm=1.0)]
    return out


def test_a_drop_that_survives_norm_matching_is_found_with_its_paired_effect_and_share():
    logs = [math.log(0.9), math.log(0.88), math.log(0.91), math.log(0.89)]
    records = _records(lambda seed, pixel: pixel * math.exp(logs[seed]))
    (row,) = rows(records)
    assert (row.family, row.lam, row.beta, row.seeds) == ("perceptual", 5.0, 0.016, SEEDS)
    assert row.effect.effect == pytest.approx(math.exp(np.mean(logs)) - 1)  # geometric mean, paired by seed
    assert row.p == pytest.approx(stats.ttest_1samp(logs, 0.0, alternative="less").pvalue)
    pixel, plain, matched = (np.mean(a) for a in (row.pixel, row.plain, row.matched))
    assert row.share == pytest.approx((pixel - matched) / (pixel - plain))  # about half of the drop
    assert row.norms == pytest.approx({"pixel": 0.9, "plain": 0.7, "matched": 1.0})
    text = "\n".join(section(records, 0.05, {"perceptual": "VGG16 (HED) features"}))
    assert "**the drop survives**" in text and "VGG16 (HED) features" in text


def test_a_drop_that_is_only_the_shorter_gradient_is_not_called_surviving():
    """Norm-matched runs back at pixel SSE's KL (up to noise of either sign): no verdict that it survives."""
    noise = [0.01, -0.012, 0.008, -0.009]
    records = _records(lambda seed, pixel: pixel * (1 + noise[seed]))
    (row,) = rows(records)
    assert abs(row.share) < 0.1 and row.p > 0.05
    text = "\n".join(section(records, 0.05, {}))
    assert "the drop survives" not in text and "not resolved at this scale" in text


def test_seeds_without_all_three_runs_are_left_out_and_no_control_means_no_section():
    records = _records(lambda seed, pixel: 0.9 * pixel)
    records = [r for r in records if not (r["identity"]["sweep"] == "control" and r["identity"]["seed"] == 3)]
    (row,) = rows(records)
    assert row.seeds == [0, 1, 2]
    assert section([r for r in records if r["identity"]["sweep"] == "fixed"], 0.05, {}) == []
