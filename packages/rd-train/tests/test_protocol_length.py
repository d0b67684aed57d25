"""claims.md's section on training length (issue 30 D): the effect at every measured length, the pilot's
rows beside the sweep's, each a paired geometric-mean change."""

import math

import pytest
from hand_made_records import _design
from rd_train.errors import MissingDataError
from rd_train.protocol.length import pilot_rows, record_rows, section
from rd_train.protocol.report import read_pilot

LABELS = {"pixel": "pixel SSE only", "perceptual": "VGG16 (HED) features", "adversarial": "PatchGAN"}


def _effect(line: str) -> float:
    return float(line.split("|")[9].split("%")[0]) / 100


def test_the_matched_rate_effect_is_shown_at_both_lengths_with_its_own_sign():
    # VGG16 (HED): anisotropy ∝ exp(-0.2 · index of λ) at 10 nats, so λ = 5 vs 0 is exp(-1) − 1 at 1000
    # steps; at 2000 steps the replicate rises instead (falling_long=False): exp(+1) − 1.
    for falling_long, expected in ((True, math.exp(-1.0) - 1), (False, math.exp(1.0) - 1)):
        lines = section(_design(falling_long=falling_long), LABELS, None)
        vgg = [line for line in lines if line.startswith("| matched, 10 nats | VGG16")]
        assert [line.split("|")[5].strip() for line in vgg] == ["1000", "2000"]
        assert _effect(vgg[0]) == pytest.approx(math.exp(-1.0) - 1, abs=5e-4)
        assert _effect(vgg[1]) == pytest.approx(expected, abs=5e-4)
    # Targets trained at one length only have no length row.
    assert not [r for r in record_rows(_design(), ["perceptual"], None) if r.rate != "matched, 10 nats"]


def test_each_architecture_gets_its_own_rows_and_no_arm_pools_the_two():
    import copy

    vector = _design()
    spatial = copy.deepcopy(vector)
    for r in spatial:  # the same design in the other architecture, its λ = 5 arm twice as anisotropic
        r["path"], r["identity"]["architecture"] = "spatial/" + r["path"], "spatial"
        if float(r["identity"]["lam"]) == 5.0 and "anisotropy" in r["metrics"]:
            r["metrics"]["anisotropy"] *= 2
    rows = [r for r in record_rows(vector + spatial, ["perceptual"], None) if r.rate == "matched, 10 nats"]
    assert [(r.architecture, r.steps) for r in rows] == [("vector", 1000), ("vector", 2000),
                                                          ("spatial", 1000), ("spatial", 2000)]
    for v, s in zip(rows[:2], rows[2:], strict=True):
        assert _effect(s.line("VGG")) == pytest.approx(2 * (1 + _effect(v.line("VGG"))) - 1, abs=2e-3)
        assert s.line("VGG").split("|")[3].strip() == "spatial"


def test_the_pilot_rows_pair_each_length_by_seed_and_name_runs_from_its_cells():
    pilot = {"cells": {"beta": 0.016, "lams": {"pixel": 0.0, "perceptual": 5.0}, "seeds": [0, 1]},
             "reference_1500_steps": {"runs": {"pixel_lam0_beta0.016_seed0": {"anisotropy": 0.4},
                                               "pixel_lam0_beta0.016_seed1": {"anisotropy": 0.5},
                                               "perceptual_lam5_beta0.016_seed0": {"anisotropy": 0.2},
                                               "perceptual_lam5_beta0.016_seed1": {"anisotropy": 0.4}}},
             "lengths": {"6000": {"verdicts": [
                 {"run": "pixel_lam0_beta0.016_seed0", "anisotropy": 0.8},
                 {"run": "perceptual_lam5_beta0.016_seed0", "anisotropy": 0.6},
                 {"run": "perceptual_lam5_beta0.016_seed1", "anisotropy": 9.0}]}}}
    rows = pilot_rows(pilot, ["perceptual", "adversarial"])
    assert [(r.family, r.steps) for r in rows] == [("perceptual", 1500), ("perceptual", 3000 * 2)]
    reference, long = (row.line("VGG") for row in rows)
    assert _effect(reference) == pytest.approx(math.sqrt(0.5 * 0.8) - 1, abs=5e-4)  # geometric, paired
    assert long.split("|")[6].strip() == "1"  # seed 1 has no pixel run at 6000: it leaves the pair
    assert _effect(long) == pytest.approx(0.6 / 0.8 - 1, abs=5e-4)


def test_an_unreadable_pilot_file_is_one_clear_error_naming_the_option(tmp_path):
    with pytest.raises(MissingDataError, match=r"--length-pilot .*nothing\.json"):
        read_pilot(tmp_path / "nothing.json")
    assert read_pilot(None) is None
