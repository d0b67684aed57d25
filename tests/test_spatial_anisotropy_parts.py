"""The split of a spatial latent's anisotropy (benchmarks/spatial_anisotropy_parts.py): across channels at a
position plus between positions, which adds up to the anisotropy every table reports."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from spatial_anisotropy_parts import anisotropy_parts, summarise  # noqa: E402


def test_the_two_parts_add_up_to_the_reported_anisotropy():
    from rd_train.training.metrics import anisotropy

    logvar = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    parts = anisotropy_parts(logvar)
    assert parts["total"] == pytest.approx(float(anisotropy(logvar).mean()), rel=1e-12)
    assert parts["across_channels"] + parts["between_positions"] == pytest.approx(parts["total"], rel=1e-12)


def test_each_part_sees_only_its_own_structure():
    profile = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64).view(1, 1, 3, 3)
    only_positions = profile.expand(2, 4, 3, 3)  # every channel the same at a position
    parts = anisotropy_parts(only_positions)
    assert parts["across_channels"] == 0 and parts["between_positions"] == pytest.approx(parts["total"])
    channels = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    only_channels = channels.view(1, 4, 1, 1).expand(2, 4, 3, 3)  # every position the same in a channel
    parts = anisotropy_parts(only_channels)
    assert parts["between_positions"] == 0 and parts["across_channels"] == pytest.approx(1.25)


def test_the_summary_compares_the_largest_lambda_with_pixel_sse_per_length():
    rows = [{"identity": {"steps": 1000, "seed": seed, "lam": lam}, "total": 1.0 / (1 + lam),
             "across_channels": 1.0, "between_positions": 0.1 * (1 + lam)}
            for seed in (0, 1, 2) for lam in (0.0, 1.0, 5.0)]
    summary = summarise(rows)["1000"]
    assert summary["lams"] == [0.0, 1.0, 5.0] and summary["seeds"] == [0, 1, 2]
    assert summary["total"]["effect"] == pytest.approx(1 / 6 - 1)
    assert summary["total"]["page_p"] < 0.01  # falls along λ in every seed
    assert summary["across_channels"]["effect"] == pytest.approx(0.0)
    assert summary["between_positions"]["effect"] == pytest.approx(5.0)
    assert summary["between_positions"]["page_p"] > 0.5  # rises: no evidence of a fall
