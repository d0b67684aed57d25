r"""How a run is evaluated: every validation (the convergence history) and the final metrics.

What is evaluated: the autoencoder's weights, or with ``optim.ema_decay`` > 0 their exponential moving
average (ema.py), which then is the run's result everywhere (metrics, analyses, inspection).

First, the evaluated model's BatchNorm statistics are recomputed over a fixed set of training images at
its current parameters, as a cumulative average (what SWA's ``update_bn`` does). The running averages of
the last few batches (momentum 0.1) make the evaluated KL and anisotropy move by a few percent from one
step to the next even when the parameters do not (measured: 5.87 vs 5.61 nats on one pilot run, and
5.61 ± 0.003 after recalibration whatever the image order); recalibrated, an evaluation measures the
parameters. Then one posterior sample per image, seeded per batch, in fp32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from rd_kernels import sample_and_kl
from torch import nn

from rd_train.training.distributed import distributed
from rd_train.training.losses import pixel_sse
from rd_train.training.metrics import LatentStatistics, anisotropy, kl_per_sample

CALIBRATION_STREAM = 10**12  # the generator index of BatchNorm recalibration's noise (no step reaches it)
CALIBRATION_BATCH = 256  # images per forward pass of the recalibration (a cumulative average: any size)


class EvaluationMixin:
    """VAEModule's evaluation hooks and methods (it supplies model, ema, neural, config, rate, ...)."""

    model: Any
    ema: Any
    neural: Any
    adversarial: bool
    config: Any
    rate: Any
    balancer: Any
    step_count: int
    validation_history: list[list[float]]
    calibration_images: torch.Tensor | None
    device: torch.device
    trainer: Any
    training: bool
    step_generator: Any
    eval: Any
    train: Any
    log_dict: Any
    _training_averages: Any

    def evaluated_model(self) -> Any:  # an autoencoder of models.py (encode, decode)
        """The autoencoder an evaluation reads: its weight average when there is one."""
        return self.ema.averaged_model() if self.ema is not None else self.model

    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Population BatchNorm statistics of the evaluated model over ``calibration_images`` (module doc)."""
        model = self.evaluated_model()
        norms = batch_norms(model)
        if not norms or self.calibration_images is None:
            return
        was_training = model.training
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        if self.calibration_images.device != self.device:  # one copy, kept on the device
            self.calibration_images = self.calibration_images.to(self.device)
        images = self.calibration_images
        g = self.step_generator(CALIBRATION_STREAM, images.device)
        for batch in images.split(CALIBRATION_BATCH):
            mu, logvar = model.encode(batch)
            eps = torch.randn(mu.shape, generator=g, device=mu.device, dtype=mu.dtype)
            model.decode_statistics(mu + torch.exp(0.5 * logvar) * eps)  # through the last BatchNorm only
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)

    @torch.no_grad()
    def evaluate(self, loader: Any) -> dict[str, Any]:
        """Metrics over ``loader`` with one posterior sample per image (seeded per batch), on the
        module's device, after `recalibrate_batchnorm`."""
        was_training = self.training
        self.recalibrate_batchnorm()
        self.eval()
        self.evaluated_model().eval()
        stats = LatentStatistics()
        scores_neural = self.neural is not None and not self.adversarial  # PatchGAN's depends on D
        for i, x in enumerate(loader):
            x = x.to(self.device, non_blocking=True)  # pinned on CUDA (run.data_module)
            x_hat, mu, logvar = self._reconstruct(x, i)
            stats.update(mu, logvar, x, x_hat)
            stats.add("pixel_sse", pixel_sse(x, x_hat), x.shape[0])
            if scores_neural:
                stats.add("neural", self.neural(x, x_hat), x.shape[0])
        self.train(was_training)
        result = stats.summary()
        result["beta"] = float(self.rate.value(self.step_count))
        result["steps"] = self.step_count
        result["evaluated_weights"] = "ema" if self.ema is not None else "trained"
        result["balancer"] = self._balancer_summary()
        result["training_averages"] = self._training_averages.summary()
        result["validation_history"] = self.validation_history
        if hasattr(self.rate, "kl_ema"):
            result["geco_training_kl_ema"] = float(self.rate.kl_ema)
            result["geco_training_target"] = float(self.rate.training_target)
            result["geco_corrections"] = self.rate.corrections
            result["geco_tracking_error"] = float(result["kl"]) / self.rate.target - 1.0
        return result

    def _reconstruct(self, x: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.evaluated_model()
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=self.step_generator(index, x.device), device=x.device,
                          dtype=mu.dtype)
        z, _, _ = sample_and_kl(mu, logvar, eps)
        return model.decode(z), mu, logvar

    def _balancer_summary(self) -> dict[str, Any]:
        """The balancer's scales s_k at the end, and σ_k = s_k / B, the per-sample distortion weights."""
        scales = {k.removeprefix("scale_"): float(v) for k, v in self.balancer.metrics().items()
                  if k.startswith("scale_")}
        batch = self.config.data.batch_size
        weights = {k: v / batch for k, v in scales.items()}
        return {"scale": scales, "sample_weight": weights, "batch_size": batch}

    def on_validation_epoch_start(self) -> None:
        self._val_sums: torch.Tensor | None = None  # Σ KL, Σ pixel SSE, Σ anisotropy, count, on the device
        if not self.trainer.sanity_checking:
            self.recalibrate_batchnorm()
            self.evaluated_model().eval()  # recalibration ran it in train mode; Lightning set eval before

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """The evaluation's posterior sample for this batch; KL and pixel SSE summed on the device. In
        fp32 whatever the training precision: Lightning runs this step under its autocast, which a
        bf16-mixed run would otherwise apply to the convergence history's numbers."""
        with torch.autocast(batch.device.type, enabled=False):
            self._validation_sums(batch.float(), batch_idx)

    def _validation_sums(self, batch: torch.Tensor, batch_idx: int) -> None:
        x_hat, mu, logvar = self._reconstruct(batch, batch_idx)
        per_sample = (x_hat.float() - batch.float()).pow(2).flatten(1).sum(1)
        sums = torch.stack([kl_per_sample(mu, logvar).sum(), per_sample.sum(), anisotropy(logvar).sum(),
                            per_sample.new_tensor(float(batch.shape[0]))]).double()
        self._val_sums = sums if self._val_sums is None else self._val_sums + sums

    def on_validation_epoch_end(self) -> None:
        """One host read per validation: the point (step, KL, pixel SSE, anisotropy) of the
        convergence history."""
        if self._val_sums is None or self.trainer.sanity_checking:
            return
        sums = self._val_sums
        if distributed():
            dist.all_reduce(sums)  # every worker's shard of the validation set
        kl, pixel, aniso, count = sums.tolist()
        self.validation_history.append([self.step_count, kl / count, pixel / count, aniso / count])
        if hasattr(self.rate, "correct"):  # GECO's outer loop (rate.py) reads the evaluated KL
            self.rate.correct(self.step_count, kl / count, self.config.optim.max_steps)
        self.log_dict({"val/kl": kl / count, "val/pixel": pixel / count, "val/anisotropy": aniso / count})


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """``model``'s BatchNorm layers: what holds running statistics (GroupNorm, the AutoencoderKL's, none)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
