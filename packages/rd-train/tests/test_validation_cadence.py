"""A validation feeds nothing back into training unless GECO's offset correction acts at it; so the
validation schedule (training/cadence.py) trains exactly the run that validates at its fine cadence
throughout.

The cadence pilot (benchmarks/geco_cadence_pilot.py) chose corrections every 25 steps; the corrections act
only from ``rate.geco_outer_start`` on, so validations before it add convergence-history points and cost,
and nothing else. This holds only while a validation (BatchNorm recalibration of the weight average, the
validation pass, its seeded noise) touches no state a training step reads: the first test pins that down,
the later ones the schedule that relies on it.
"""

from pathlib import Path
from typing import Any

import pytest
import torch
from rd_train import from_dict
from rd_train.params import load_params
from rd_train.pipeline.plan import planned_blocks
from rd_train.training.cadence import cadence
from rd_train.training.run import fit

ROOT = Path(__file__).resolve().parents[3]

# params.yaml's GECO (trained weights on held-out images, PI, the offset correction from half of training,
# read with the weights' lag and aimed at the end), on a PatchGAN run: the family whose discriminator
# also trains, so a validation that touched it would show.
GECO = {"mode": "geco", "beta": 0.03, "target": 6.0, "warmup_steps": 8, "geco_tracks": "trained_heldout",
        "geco_step_size": 0.1, "geco_ema_decay": 0.95, "geco_proportional": 3.0,
        "geco_proportional_limit": 0.5, "geco_outer_start": 0.5, "geco_offset_average": "weights",
        "geco_outer_terminal": True}
PATCHGAN = {"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1}


def run_config(tiny: Any, tmp_path: Path, cadence: int, gain: float, correcting: int = 0) -> dict[str, Any]:
    """A 48-step PatchGAN GECO run (8 batches an epoch) validating every ``cadence`` steps, and every
    ``correcting`` from the corrections' start (step 24) when ``correcting`` > 0; offset gain ``gain``."""
    name = f"every-{cadence}-gain-{gain}" + (f"-correcting-{correcting}" if correcting else "")
    return {**tiny(rate={**GECO, "geco_outer_gain": gain, "geco_correct_every_n_steps": correcting},
                   loss=PATCHGAN, optim={"max_steps": 48, "ema_decay": 0.9}),
            "val_every_n_steps": cadence, "out_dir": str(tmp_path / name)}


def trained_state(tiny: Any, tmp_path: Path, cadence: int, gain: float,
                  correcting: int = 0) -> tuple[dict[str, Any], Any]:
    """The final checkpoint (weights, optimisers, schedulers, the run's own state) of `run_config`'s run,
    and its validation history, taken out."""
    config = run_config(tiny, tmp_path, cadence, gain, correcting)
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


def test_the_schedule_trains_the_run_that_validates_at_the_fine_cadence_throughout(tiny, tmp_path):
    """Every 16 steps, and every 8 from the corrections' start (step 24, not a multiple of 16): validations
    at 16, 24, 32, 40 and 48, and a final checkpoint equal bit for bit to the run that validates every 8
    steps throughout; its history is that run's at the same steps. The run validating every 16 steps
    throughout corrects at other steps and trains another run."""
    scheduled, scheduled_history = trained_state(tiny, tmp_path, 16, 0.8, correcting=8)
    fine, fine_history = trained_state(tiny, tmp_path, 8, 0.8)
    coarse, _ = trained_state(tiny, tmp_path, 16, 0.8)
    assert [row[0] for row in scheduled_history] == [16, 24, 32, 40, 48]
    assert [row[0] for row in scheduled["rd_train"]["rate"]["corrections"]] == [24, 32, 40, 48]
    assert_same(scheduled, fine)
    assert_same(scheduled_history, [row for row in fine_history if row[0] in (16, 24, 32, 40, 48)])
    with pytest.raises(AssertionError):
        assert_same(scheduled["state_dict"], coarse["state_dict"])


@pytest.mark.parametrize("killed_at", [28, 36, 44])
def test_a_resumed_run_keeps_the_schedule(tiny, tmp_path, monkeypatch, killed_at):
    """Killed after its last checkpoint (every epoch end, 8 steps): at 24, the corrections' first step;
    at 32, a step of both cadences; at 40, a step of the fine cadence alone. The scheduled run resumes at
    that checkpoint and ends as the uninterrupted one: the same validations and corrections, bit for bit."""
    straight, straight_history = trained_state(tiny, tmp_path / "straight", 16, 0.8, correcting=8)
    from rd_train.training import module as module_lib

    original = module_lib.VAEModule.training_step

    def dies(self, batch, batch_idx):
        if self.step_count == killed_at:
            raise RuntimeError("simulated kill")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(module_lib.VAEModule, "training_step", dies)
    config = run_config(tiny, tmp_path / "killed", 16, 0.8, correcting=8)
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(from_dict(config))
    ckpt = torch.load(Path(config["out_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["rd_train"]["step_count"] == killed_at - 4
    monkeypatch.setattr(module_lib.VAEModule, "training_step", original)
    resumed, resumed_history = trained_state(tiny, tmp_path / "killed", 16, 0.8, correcting=8)
    assert [row[0] for row in resumed_history] == [16, 24, 32, 40, 48]
    assert_same(resumed_history, straight_history)
    assert_same(resumed, straight)


def test_the_sweeps_geco_runs_validate_as_the_pilot_chose_and_no_other_run_changes():
    """params.yaml: every GECO run (vector, length replicate, AutoencoderKL) validates at 30 steps, every
    twentieth of training before the corrections' start (half of training) and every fortieth from it, as
    the cadence pilot's chosen runs correct; every fixed-β run at its 20, as before the schedule."""
    for block in planned_blocks(load_params(ROOT / "params.yaml")):
        for config in block.configs:
            steps, schedule = config.optim.max_steps, cadence(config)
            validated = schedule.validation_steps(steps)
            if config.rate.mode == "fixed":
                assert schedule.correcting_from is None and len(validated) == 20, config.out_dir
                continue
            assert schedule.correcting_from == steps // 2, config.out_dir
            assert schedule.correcting_every * 40 == schedule.every * 20 == steps, config.out_dir
            assert len([s for s in validated if s < steps // 2]) == 9, config.out_dir
            assert len([s for s in validated if s >= steps // 2]) == 21, config.out_dir
