"""A validation feeds nothing back into training unless GECO's offset correction acts at it.

The cadence pilot (benchmarks/geco_cadence_pilot.py) chose corrections every 25 steps; the corrections act
only from ``rate.geco_outer_start`` on, so validations before it add convergence-history points and cost,
and nothing else. This holds only while a validation (BatchNorm recalibration of the weight average, the
validation pass, its seeded noise) touches no state a training step reads: the test pins that down.
"""

from pathlib import Path
from typing import Any

import pytest
import torch
from rd_train import from_dict
from rd_train.training.run import fit

# params.yaml's GECO (trained weights on held-out images, PI, the offset correction from half of training,
# read with the weights' lag and aimed at the end), on a PatchGAN run: the family whose discriminator
# also trains, so a validation that touched it would show.
GECO = {"mode": "geco", "beta": 0.03, "target": 6.0, "warmup_steps": 8, "geco_tracks": "trained_heldout",
        "geco_step_size": 0.1, "geco_ema_decay": 0.95, "geco_proportional": 3.0,
        "geco_proportional_limit": 0.5, "geco_outer_start": 0.5, "geco_offset_average": "weights",
        "geco_outer_terminal": True}
PATCHGAN = {"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1}


def trained_state(tiny: Any, tmp_path: Path, cadence: int, gain: float) -> tuple[dict[str, Any], Any]:
    """The final checkpoint (weights, optimisers, schedulers, the run's own state) of a 48-step run that
    validates every ``cadence`` steps, with offset gain ``gain``; and its validation history, taken out."""
    config = {**tiny(rate={**GECO, "geco_outer_gain": gain}, loss=PATCHGAN,
                     optim={"max_steps": 48, "ema_decay": 0.9}),
              "val_every_n_steps": cadence, "out_dir": str(tmp_path / f"every-{cadence}-gain-{gain}")}
    fit(from_dict(config))
    ckpt = torch.load(Path(config["out_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    history = ckpt["rd_train"].pop("validation_history")
    kept = ("state_dict", "optimizer_states", "lr_schedulers", "rd_train")
    return {key: ckpt[key] for key in kept}, history


def assert_same(a: Any, b: Any) -> None:
    """Equal bit for bit (values and dtypes), through the checkpoint's nested mappings and sequences."""
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_validations_without_a_correction_change_no_trained_state(tiny, tmp_path):
    """With the correction off, validating every 8 or every 16 steps trains the same run bit for bit; the
    validation histories differ (6 points and 3). With it on, the two cadences correct at different steps
    and train different runs: the comparison sees a feedback where there is one."""
    dense, dense_history = trained_state(tiny, tmp_path, 8, 0.0)
    sparse, sparse_history = trained_state(tiny, tmp_path, 16, 0.0)
    assert [row[0] for row in dense_history] == [8, 16, 24, 32, 40, 48]
    assert [row[0] for row in sparse_history] == [16, 32, 48]
    assert_same(dense, sparse)

    corrected_dense, _ = trained_state(tiny, tmp_path, 8, 0.8)
    corrected_sparse, _ = trained_state(tiny, tmp_path, 16, 0.8)
    assert corrected_dense["rd_train"]["rate"]["corrections"] != corrected_sparse["rd_train"]["rate"][
        "corrections"]
    with pytest.raises(AssertionError):
        assert_same(corrected_dense["state_dict"], corrected_sparse["state_dict"])

