"""When a run validates: every ``val_every_n_steps`` steps, and every ``rate.geco_correct_every_n_steps``
from the step at which GECO's offset correction starts to act (rate.py).

Why two cadences: a validation feeds training only through a correction. Before the corrections start, a
validation adds a point to the convergence history and costs time, and changes nothing that trains
(tests/test_validation_cadence.py holds that bit for bit). From their start, a finer cadence shortens the
interval at the run's end that no correction sees (the cadence pilot, docs/protocol.md). So the schedule
trains exactly the run that validates at the fine cadence throughout, with fewer validations.

Lightning fixes ``val_check_interval`` for a fit. `ValidationSchedule` therefore sets the trainer's
check interval (``trainer.val_check_batch``, which Lightning reads at every batch end after the batch's
callbacks) from the module's step count after every batch. A resumed run restores its step count, and
with it the interval (tests/test_validation_cadence.py resumes at steps of either cadence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L

from rd_train.config import TrainConfig
from rd_train.training.module import VAEModule
from rd_train.training.rate import correction_start


@dataclass(frozen=True)
class Cadence:
    """Validate every ``every`` steps (0: at each epoch end), and every ``correcting_every`` steps from
    step ``correcting_from`` on (None: no correction acts, one cadence throughout)."""

    every: int
    correcting_every: int
    correcting_from: int | None

    def interval(self, step: int) -> int:
        """The cadence that decides whether step ``step`` (batches trained) ends with a validation."""
        correcting = self.correcting_from is not None and step >= self.correcting_from
        return self.correcting_every if correcting else self.every

    def validation_steps(self, max_steps: int) -> list[int]:
        """The steps of a run of ``max_steps`` steps that end with a validation (a step cadence only)."""
        if self.every <= 0:
            raise ValueError("validation_steps needs a step cadence (val_every_n_steps > 0)")
        return [step for step in range(1, max_steps + 1) if step % self.interval(step) == 0]


def cadence(config: TrainConfig) -> Cadence:
    """``config``'s validation schedule (module doc). The fine cadence applies only to a GECO run whose
    offset correction acts (``geco_outer_gain`` > 0) and only from the first step it can act at."""
    every, fine, rate = config.val_every_n_steps, config.rate.geco_correct_every_n_steps, config.rate
    if fine <= 0 or rate.mode != "geco" or rate.geco_outer_gain <= 0:
        return Cadence(every, every, None)
    start = correction_start(rate.warmup_steps, rate.geco_outer_start, config.optim.max_steps)
    return Cadence(every, fine, start)


class ValidationSchedule(L.Callback):
    """Moves Lightning's validation check interval to the run's `Cadence` (module doc)."""

    def __init__(self, schedule: Cadence) -> None:
        self.schedule = schedule

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Lightning then validates if (the batch's total index + 1), the module's step count once the
        # batch has trained, is a multiple of val_check_batch (training_epoch_loop._should_check_val_fx).
        # Nothing reads the interval before a resumed run's first batch ends: checkpoints are written at
        # epoch ends (checkpoints.py), so Lightning's mid-epoch restart check never runs.
        assert isinstance(pl_module, VAEModule)
        trainer.val_check_batch = self.schedule.interval(pl_module.step_count)
