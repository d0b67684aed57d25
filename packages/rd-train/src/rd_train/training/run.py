"""Fit and evaluate one run: Lightning owns the loop, checkpoints, DDP and precision.

A run directory holds ``config.json``, ``checkpoints/last.ckpt`` (written at every epoch end, by
write-then-rename so a kill never truncates it), ``logs/`` (CSV) and, once finished,
``metrics.json``. Re-running a finished run with the same config returns its metrics without
training; an interrupted one resumes from ``last.ckpt`` and ends with the same metrics as an
uninterrupted run (data order is a function of the epoch, noise and flips of the step).
Checkpoints load with ``weights_only=True``; one that cannot be read so stops the run, by name.
The final evaluation runs on the training device (Lightning hands the module back on the CPU).

A run directory is locked (``<run>/.lock``, an advisory ``flock`` the kernel releases when the process
ends, however it ends) while a process trains it: a second sweep or ``fit`` of the same directory stops
with one line instead of training it at the same time. A process asked to stop (workers.py: a sweep
worker's SIGTERM or SIGINT) stops at the next step boundary, keeps its last epoch-end checkpoint and
raises `StoppedError` without writing ``metrics.json``: the run is unfinished, and a rerun resumes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

from rd_train.config import TrainConfig, from_dict
from rd_train.errors import ConfigError, RunConflictError, StoppedError
from rd_train.training.cadence import ValidationSchedule, cadence
from rd_train.training.checkpoints import AtomicCheckpointIO, SaveLast, read_checkpoint, remove_partial_writes
from rd_train.training.data import ImageDataModule
from rd_train.training.metrics import write_json
from rd_train.training.module import VAEModule
from rd_train.training.precision import resolve as resolve_precision
from rd_train.training.step_graph import ENV_VAR as STEP_GRAPH_ENV
from rd_train.training.step_graph import requested as step_graph_requested
from rd_train.training.stopping import stop_requested


class StopWhenAsked(L.Callback):
    """End training at the step boundary after a stop request (module doc)."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if stop_requested():
            trainer.should_stop = True


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``<out>/.lock`` while training; another holder means another process trains ``out``."""
    with open(out / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunConflictError(f"{out} is being trained by another process right now; wait for it to "
                                   "finish (its run is then reused) or stop it, then rerun") from None
        yield  # the lock goes with the file's closing, or with the process


def fit(config: TrainConfig, neural_loss: nn.Module | None = None,
        callbacks: Sequence[L.Callback] = (), step_graph: bool | None = None) -> dict[str, Any]:
    """Train (or resume, or reuse) the run ``config`` describes. ``step_graph`` (default: the
    ``RD_TRAIN_STEP_GRAPH`` environment variable) replays each step's forward and backward as a CUDA
    graph (step_graph.py): how the step runs, not what it computes, so it is not part of the config."""
    graphed = step_graph_requested(step_graph)
    if graphed:
        check_step_graph(config)
    out = Path(config.out_dir)
    metrics_path = out / "metrics.json"
    if is_finished(config):
        return json.loads(metrics_path.read_text())  # a finished run is reused, never retrained
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        if is_finished(config):  # another process finished it while this one waited to look
            return json.loads(metrics_path.read_text())
        return _train(config, neural_loss, callbacks, graphed)


def _train(config: TrainConfig, neural_loss: nn.Module | None, callbacks: Sequence[L.Callback],
           graphed: bool) -> dict[str, Any]:
    """`fit`'s work, under the run's lock."""
    out = Path(config.out_dir)
    spec = config.to_dict()  # the config as every file of the run holds it (validated once, by from_dict)
    metrics_path = out / "metrics.json"
    config_path = out / "config.json"
    if config_path.is_file() and not same_config(json.loads(config_path.read_text()), config):
        raise RunConflictError(f"{out} holds a run with another config ({config_path}): choose another "
                               "out_dir, or delete that directory to train this config there")
    write_json(config_path, spec)

    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        remove_partial_writes(checkpoints)
    last = checkpoints / "last.ckpt"
    if last.is_file():  # fail now, naming the file, rather than inside Lightning's restore
        read_checkpoint(last, spec)

    L.seed_everything(config.seed, workers=True, verbose=False)
    precision = resolve_precision(config.precision, training_device(config))
    data = data_module(config)
    module = VAEModule(spec, neural_loss, step_graph=graphed)
    give_training_images(module, data, config)
    if precision.precision == "bf16-mixed" and training_device(config).type == "cpu":
        module.use_channels_last()
    validations = cadence(config)  # the trainer's interval below until a correction can act (cadence.py)
    schedule = [ValidationSchedule(validations)] if validations.correcting_from is not None else []
    trainer = L.Trainer(
        accelerator=config.accelerator, devices=config.devices, precision=precision.precision,  # type: ignore[arg-type]
        strategy="ddp" if config.devices > 1 else "auto",
        sync_batchnorm=config.devices > 1,  # BatchNorm statistics over the global batch (see module.py)
        max_epochs=-1, max_steps=-1,  # the module stops itself after optim.max_steps batches
        callbacks=[SaveLast(checkpoints), StopWhenAsked(), *schedule, *callbacks],
        enable_checkpointing=False,  # SaveLast checkpoints
        plugins=[AtomicCheckpointIO()],
        logger=CSVLogger(out, name="logs", version=0),
        enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=config.log_every_n_steps,
        # every N global steps (Lightning counts across epochs when check_val_every_n_epoch is None)
        val_check_interval=config.val_every_n_steps or 1.0,
        check_val_every_n_epoch=None if config.val_every_n_steps else 1,
    )
    start = time.perf_counter()
    terminated = False
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None,
                    weights_only=True)
    except SIGTERMException:  # Lightning's own SIGTERM handler (it calls ours too) ends fit this way
        terminated = True
    if terminated or stop_requested():
        message = (f"{out}: stopped by a signal at step {module.step_count} of {config.optim.max_steps}; "
                   "rerun to resume it from its last epoch-end checkpoint")
        print(f"rd-train: {message}", file=sys.stderr, flush=True)  # into train.log inside a sweep
        raise StoppedError(message)
    if not trainer.is_global_zero:
        return {}
    module.to(trainer.strategy.root_device)  # Lightning returns the module on the CPU after fit
    metrics = module.evaluate(data.val_dataloader())
    metrics["config"] = spec
    metrics["identity"] = dict(config.identity)
    metrics["precision"], metrics["precision_reason"] = precision.precision, precision.reason
    metrics["threads"] = torch.get_num_threads()  # intra-op threads that trained it (workers.py)
    metrics["train_seconds_this_process"] = time.perf_counter() - start
    write_json(metrics_path, metrics)
    return metrics


def is_finished(config: TrainConfig) -> bool:
    """Whether ``config.out_dir`` holds this config's finished run (its metrics.json)."""
    path = Path(config.out_dir) / "metrics.json"
    if not path.is_file():
        return False
    return same_config(json.loads(path.read_text()).get("config"), config)


def same_config(stored: Any, config: TrainConfig) -> bool:
    """Whether a run's stored config is ``config``, read by today's schema: a key added since the run
    was written takes its default. A new key's default is the behaviour before the key existed (the
    rule for every new key, config.py), so such a run computed what ``config`` computes and is reused;
    a run whose stored config today's schema rejects is not. Compared by `TrainConfig.training_spec`: a
    fixed-β run is the same run whatever GECO's keys say."""
    if stored == config.to_dict():
        return True
    if not isinstance(stored, dict):
        return False
    try:
        return from_dict(stored).training_spec() == config.training_spec()
    except ConfigError:
        return False


def check_step_graph(config: TrainConfig) -> None:
    """A CUDA-graphed step runs one process (no DDP hooks inside a graph), without GradScaler (fp16
    scaling reads the scale on the host) and without torch.compile (its own graphs); and, until its
    replays train as the eager step does on a GPU, not on CUDA at all."""
    problems = [problem for problem, bad in (
        (f"devices={config.devices} (it needs 1)", config.devices != 1),
        ("precision=16-mixed (use 32-true or bf16-mixed)", config.precision == "16-mixed"),
        (f"compile={config.compile!r} (it needs false)", config.compile is not False),
    ) if bad]
    if problems:
        raise ConfigError(f"{STEP_GRAPH_ENV}=1 / step_graph cannot run with " + ", ".join(problems)
                          + f": change those keys, or unset {STEP_GRAPH_ENV}")
    if training_device(config).type == "cuda":
        # Measured on an H100: the graphed step's 24-step runs ended at 2.5x the eager runs' KL, in fp32
        # and bf16, with and without PatchGAN (benchmarks/results/nvidia-h100-cuda-tests.txt). A wrong
        # step must not train silently; the CPU path runs the body eagerly and stays allowed (tested).
        raise ConfigError(f"{STEP_GRAPH_ENV}=1 / step_graph does not yet train as the eager step does on "
                          "CUDA (benchmarks/results/nvidia-h100-cuda-tests.txt): unset "
                          f"{STEP_GRAPH_ENV}; benchmarks/step_graph_lockstep.py finds where the two depart")


def evaluate(config: TrainConfig, checkpoint: str | Path) -> dict[str, Any]:
    """``rd-train evaluate``: the final evaluation of ``config``'s run from ``checkpoint``."""
    return load_trained(config.out_dir, checkpoint=checkpoint, evaluated=False,
                        device=training_device(config)).evaluate()


@dataclass
class TrainedRun:
    """A run loaded for reading (`load_trained`): its module, its config, its ``metrics.json`` (empty when
    it has none: a checkpoint given on its own), and its data module, set up once."""

    dir: Path
    config: TrainConfig
    metrics: dict[str, Any]
    module: VAEModule
    data: ImageDataModule

    def images(self, split: str = "val", count: int | None = None) -> torch.Tensor:
        """The run's `first_images` of ``split``."""
        return first_images(self.data, split, count)

    def evaluate(self) -> dict[str, Any]:
        """The run's final evaluation (module.py) on its validation split."""
        return self.module.evaluate(self.data.val_dataloader())


def load_trained(run_dir: str | Path, device: torch.device | str | None = None, evaluated: bool = True,
                 checkpoint: str | Path | None = None) -> TrainedRun:
    """The one loader of a trained run, which evaluation, the analyses, inspection and diffusability share.

    Reads ``checkpoint`` (default ``<run_dir>/checkpoints/last.ckpt``) with ``weights_only=True``,
    checked against the config in ``<run_dir>/metrics.json`` when there is one; restores the state
    outside nn.Modules (GECO, balancer, the weight average); builds the run's data module once, whose
    first training images recalibrate BatchNorm. ``evaluated`` (the default) then makes ``module.model``
    the evaluated autoencoder (`VAEModule.use_evaluated_weights`: the average's weights, BatchNorm
    recalibrated, eval mode), what the run's metrics were measured on; ``evaluated=False`` leaves the
    trained weights and the average as they were saved, for `TrainedRun.evaluate` or for the losses."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    state = read_checkpoint(checkpoint or run_dir / "checkpoints" / "last.ckpt", metrics.get("config"))
    module = VAEModule(state["hyper_parameters"]["config"])
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)
    if device is not None:
        module.to(device)
    config = module.config
    data = data_module(config)
    module.calibration_images = calibration_images(data, config.bn_calibration_images)
    data.setup("fit")
    if evaluated:
        module.use_evaluated_weights()
    return TrainedRun(run_dir, config, metrics, module, data)


def give_training_images(module: VAEModule, data: ImageDataModule, config: TrainConfig) -> None:
    """Give ``module`` the fixed images a training step reads besides its batch: BatchNorm's calibration
    images and GECO's held-out images (``rate.geco_tracks``). Whatever trains the module (`fit`, a
    benchmark's bare loop) calls this, so a step that reads held-out images never finds them missing."""
    module.calibration_images = calibration_images(data, config.bn_calibration_images)
    module.tracking_images = tracking_images(data, config)


def tracking_images(data: ImageDataModule, config: TrainConfig) -> torch.Tensor | None:
    """For ``rate.geco_tracks: heldout`` or ``trained_heldout``: the validation images in an order shuffled
    once by the run's seed, so that each batch GECO reads is a sample of the split (its order groups
    similar images, and BatchNorm on one such batch would not measure the split), else None."""
    if not config.rate.reads_heldout:
        return None
    images = first_images(data, "val")
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(config.seed))
    return images[order]


def calibration_images(data: ImageDataModule, count: int) -> torch.Tensor | None:
    """The first ``count`` training images (a fixed set: the split's order is fixed), for BatchNorm."""
    return first_images(data, "train", count) if count else None


def first_images(data: ImageDataModule, split: str, count: int | None = None) -> torch.Tensor:
    """The first ``count`` (default: all) images of ``data``'s ``"train"`` or ``"val"`` split, in the
    split's fixed order, as one (N, 3, H, W) tensor in [-1, 1]."""
    data.setup("fit")
    dataset = {"train": data.train_set, "val": data.val_set}[split]
    assert dataset is not None
    n = len(dataset) if count is None else min(count, len(dataset))  # type: ignore[arg-type]
    return torch.stack([dataset[i] for i in range(n)])


def data_module(config: TrainConfig) -> ImageDataModule:
    """The run's data, its batches pinned when it trains on CUDA (see `ImageDataModule`)."""
    return ImageDataModule(config.data, pin_memory=training_device(config).type == "cuda")


def training_device(config: TrainConfig) -> torch.device:
    """The device a run's config trains on (its first device under DDP)."""
    if config.accelerator in ("gpu", "cuda") or (config.accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    return torch.device("cpu")
