"""Fit and evaluate one run: Lightning owns the loop, checkpoints, DDP and precision.

A run directory holds ``config.json``, ``checkpoints/last.ckpt`` (written at every epoch end),
``logs/`` (CSV) and, once finished, ``metrics.json``. Re-running a finished run with the same
config returns its metrics without training; an interrupted one resumes from ``last.ckpt`` and,
on CPU, ends with the same metrics as an uninterrupted run (data order is a function of the epoch,
noise and flips of the step). Checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from rd_train.config import TrainConfig
from rd_train.data import ImageDataModule
from rd_train.metrics import write_json
from rd_train.module import VAEModule


def fit(config: TrainConfig, neural_loss: nn.Module | None = None) -> dict[str, Any]:
    out = Path(config.out_dir)
    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        finished = json.loads(metrics_path.read_text())
        if finished.get("config") == config.to_dict():
            return finished  # a finished run is reused, never retrained
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    if config_path.is_file() and json.loads(config_path.read_text()) != config.to_dict():
        raise ValueError(f"{out} holds a run with a different config ({config_path}); "
                         "choose another out_dir or delete that run")
    write_json(config_path, config.to_dict())

    L.seed_everything(config.seed, workers=True, verbose=False)
    data = ImageDataModule(config.data)
    module = VAEModule(config.to_dict(), neural_loss)
    last = out / "checkpoints" / "last.ckpt"
    trainer = L.Trainer(
        accelerator=config.accelerator, devices=config.devices, precision=config.precision,
        strategy="ddp" if config.devices > 1 else "auto",
        max_epochs=-1, max_steps=-1,  # the module stops itself after optim.max_steps batches
        callbacks=[ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, every_n_epochs=1,
                                   save_top_k=1, filename="{epoch}")],
        logger=CSVLogger(out, name="logs", version=0),
        enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False,
        num_sanity_val_steps=0, check_val_every_n_epoch=1, log_every_n_steps=10,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None,
                weights_only=True)
    metrics = module.evaluate(data.val_dataloader())
    metrics["config"] = config.to_dict()
    metrics["train_seconds_this_process"] = time.perf_counter() - start
    if trainer.is_global_zero:
        write_json(metrics_path, metrics)
    return metrics


def evaluate(config: TrainConfig, checkpoint: str | Path) -> dict[str, Any]:
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module = VAEModule(state["hyper_parameters"]["config"])
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)
    data = ImageDataModule(config.data)
    data.setup("validate")
    return module.evaluate(data.val_dataloader())
