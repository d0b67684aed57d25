"""Checkpoints that survive a kill and never execute code when read.

Writing: Lightning's default writer streams into the final file (or a temporary file in the
system's temp directory, which is a copy, not a rename, when that is another filesystem), so a kill
or a full disk during the write can leave a truncated ``last.ckpt`` where a good one was.
`AtomicCheckpointIO` writes beside the target and renames onto it: the previous checkpoint stays
readable until the new one is complete.

Reading: `read_checkpoint` loads with ``weights_only=True`` (tensors and plain containers only,
no arbitrary pickled objects). A file that cannot be read that way is reported by name with what to
do; the remedy is never to unpickle it unsafely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from rd_theory.atomic import atomic_write

from rd_train.errors import CheckpointError
from rd_train.training.stopping import stop_requested

TEMPORARY_PREFIX = "."  # rd_theory.atomic names its temporary files ".<target name>.<random>"


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` with a write-then-rename save."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(Path(path), lambda tmp: torch.save(checkpoint, tmp))


class SaveLast(L.Callback):
    """Write ``<directory>/last.ckpt`` at every epoch end (after that epoch's validation), nothing else:
    ModelCheckpoint would also keep a per-epoch copy of the same file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "last.ckpt"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if stop_requested():  # a signal ended this epoch early: a mid-epoch checkpoint would not resume
            return            # exactly (the loader restarts its epoch), so the last epoch end's stays
        trainer.save_checkpoint(self.path, weights_only=False)  # optimiser state too: resume is exact


def remove_partial_writes(directory: Path) -> None:
    """Delete temporary files a killed write left behind (never a finished checkpoint)."""
    for tmp in directory.glob(f"{TEMPORARY_PREFIX}*.ckpt.*"):
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded safely; with ``config``, it must be that run's checkpoint."""
    path = Path(path)
    remedy = "delete it to restart that run from scratch, or pass --checkpoint with another file"
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: train the run first (`rd-train fit` "
            "with the same config), or pass --checkpoint with an existing file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated archive, foreign pickle, not a torch file at all
        # torch's own message advises weights_only=False, i.e. running code from the file: not repeated.
        raise CheckpointError(
            f"{path} is not a readable Lightning checkpoint ({type(error).__name__}: it is "
            f"truncated, or was not written by rd-train); {remedy}"
        ) from None
    if not isinstance(state, dict) or not {"state_dict", "hyper_parameters", "rd_train"} <= set(state):
        raise CheckpointError(
            f"{path} is a torch file but not an rd-train checkpoint (no state_dict, "
            f"hyper_parameters and rd_train entries); {remedy}"
        )
    if config is not None and state["hyper_parameters"].get("config") != config:
        raise CheckpointError(f"{path} was written by a run with another config than this one; {remedy}")
    return state
