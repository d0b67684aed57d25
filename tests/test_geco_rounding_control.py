"""benchmarks/geco_rounding_control.py: its reference is the committed records of exactly its 18 runs, and
its summary counts and measures shifts as its docstring says (hand-made numbers)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("geco_rounding_control",
                                              ROOT / "benchmarks" / "geco_rounding_control.py")
assert spec is not None and spec.loader is not None
control = importlib.util.module_from_spec(spec)
spec.loader.exec_module(control)


def test_the_reference_is_the_committed_records_of_the_measured_cells():
    reference = control.committed()
    assert sorted(reference) == sorted((family, target, seed) for family in ("adversarial", "pixel")
                                       for target in (5.0, 10.0, 20.0) for seed in (0, 1, 2))
    assert control.MISS in reference
    assert abs(reference[control.MISS]["geco_tracking_error"]) > control.TOLERANCE  # the sweep's one miss


def metrics(error: float, anisotropy: float) -> dict[str, float]:
    return {"geco_tracking_error": error, "anisotropy": anisotropy}


def test_the_summary_counts_each_arm_and_measures_the_shift():
    reference = {("adversarial", 20.0, 2): metrics(0.0316, 0.6), ("adversarial", 5.0, 0): metrics(-0.01, 1.0),
                 ("pixel", 5.0, 0): metrics(0.001, 2.0)}
    shifted = {("adversarial", 20.0, 2): metrics(0.0116, 0.3), ("adversarial", 5.0, 0): metrics(-0.04, 1.1),
               ("pixel", 5.0, 0): metrics(0.002, 2.0)}
    rows, families = control.summary(reference, shifted)
    assert [r["error_shift"] for r in rows] == pytest.approx([-0.03, -0.02, 0.001])  # sorted by run
    assert [r["anisotropy_relative_shift"] for r in rows] == pytest.approx([0.1, -0.5, 0.0])
    adversarial = families["adversarial"]
    assert (adversarial["within_3_percent_record"], adversarial["within_3_percent_control"]) == (1, 1)
    assert adversarial["mean_abs_error_shift"] == pytest.approx(0.025)
    assert adversarial["max_abs_error_shift"] == pytest.approx(0.03)
    assert families["pixel"]["runs"] == 1


def test_the_extension_reads_vgg16_hed_at_its_largest_lambda():
    reference = control.committed(("perceptual",))
    assert sorted(reference) == sorted(("perceptual", target, seed) for target in (5.0, 10.0, 20.0)
                                       for seed in (0, 1, 2))


def test_the_second_extension_reads_patchgan_at_twice_the_steps():
    reference = control.committed(("adversarial",), "length")
    assert sorted(reference) == [("adversarial", 10.0, seed) for seed in (0, 1, 2)]
    length = control.narrowed({"sweep": {"lams": [0.1, 5.0], "seeds": [0, 1, 2], "rate_targets": [5.0, 10.0],
                                         "length_replicate": {"targets": [10.0], "steps_factor": 2}}},
                              "adversarial", [10.0], [2], "length")
    assert length["sweep"]["length_replicate"]["targets"] == [10.0] and length["sweep"]["seeds"] == [2]
    assert length["sweep"]["rate_targets"] == [5.0, 10.0] and length["sweep"]["lams"] == [5.0]
