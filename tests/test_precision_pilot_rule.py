"""The bf16 pilot's pre-registered rule (benchmarks/precision_pilot.py) on hand-made numbers: bf16 is
adopted for a family only where its mean absolute shift is at most twice the rounding-only shift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("precision_pilot", ROOT / "benchmarks" / "precision_pilot.py")
assert spec is not None and spec.loader is not None
pilot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pilot)


def runs(fp32: list[float], rounding: list[float], bf16: list[float]) -> dict:
    """One family whose KL and anisotropy take these values: fp32, and fp32 + the shifts."""
    by_variant: dict[str, dict[int, dict]] = {v: {} for v in pilot.VARIANTS}
    for seed, (f, r, b) in enumerate(zip(fp32, rounding, bf16, strict=True)):
        for variant, value in ((pilot.REFERENCE, f), (pilot.CONTROL, f + r), (pilot.CANDIDATE, f + b)):
            by_variant[variant][seed] = {"kl": value, "anisotropy": value / 10}
    return {"perceptual": by_variant}


BASE = [10.0, 11.0, 9.0, 10.5, 9.5]


def test_within_twice_the_rounding_shift_is_adopted():
    summary = pilot.verdicts(runs(BASE, [0.1, -0.1, 0.1, -0.1, 0.1], [0.2, -0.2, 0.15, 0.2, -0.1]))
    assert summary["perceptual"]["kl"]["B_over_R"] == pytest.approx(0.85 / 0.5)
    assert summary["perceptual"]["adopt_bf16"] is True


def test_more_than_twice_is_not_adopted():
    summary = pilot.verdicts(runs(BASE, [0.1, -0.1, 0.1, -0.1, 0.1], [0.3, 0.2, 0.25, 0.2, 0.2]))
    assert summary["perceptual"]["kl"]["B_over_R"] == pytest.approx(2.3)
    assert summary["perceptual"]["adopt_bf16"] is False


def test_no_rounding_shift_or_missing_seeds_or_a_nan_is_not_adopted():
    assert pilot.verdicts(runs(BASE, [0.0] * 5, [1e-9] * 5))["perceptual"]["adopt_bf16"] is False
    four = runs(BASE[:4], [0.1] * 4, [0.1] * 4)
    assert pilot.verdicts(four)["perceptual"]["adopt_bf16"] is False
    nan = runs([*BASE[:4], float("nan")], [0.1] * 5, [0.1] * 5)
    assert pilot.verdicts(nan)["perceptual"]["adopt_bf16"] is False
