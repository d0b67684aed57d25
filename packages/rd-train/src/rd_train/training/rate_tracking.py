"""Whose KL the rate controller reads at each step (``rate.geco_tracks``; rate.py says why each exists).

- ``trained``: the trained weights' KL on the step's training batch, which the step has already computed.
- ``averaged``: the weight average's (ema.py: the model every evaluation reads) on the step's batch.
- ``heldout``: the weight average's on the step's batch of the held-out images.
- ``trained_heldout``: the trained weights' on the step's batch of the held-out images.

The last three cost one more encoder pass per step, under no_grad, after the optimiser step: the KL read
is the one of the weights the next step starts from. Held-out batches are cycled in a fixed order
(run.py shuffles the validation split once by the run's seed) and normalised as an evaluation normalises
them: by BatchNorm statistics of training images, never by the held-out batch's own (those read some
25 % higher than the evaluation in the third GECO pilot).
"""

from __future__ import annotations

from typing import cast

import torch

from rd_train.config import RateConfig
from rd_train.training.distributed import global_mean
from rd_train.training.ema import WeightAverage
from rd_train.training.evaluation import batch_norms
from rd_train.training.metrics import kl_per_sample
from rd_train.training.models import SpatialVAE, VectorVAE


class TrackedKL:
    """The KL GECO steers, as a 0-dim device tensor (the mean over the global batch)."""

    def __init__(self, rate: RateConfig, model: VectorVAE | SpatialVAE, ema: WeightAverage | None) -> None:
        # TrainConfig.validate names the missing optim.ema_decay; this guards direct construction.
        assert ema is not None or not rate.reads_average, "the weight average's KL needs a weight average"
        self.tracks, self.model, self.ema = rate.tracked, model, ema
        self.images: torch.Tensor | None = None  # the held-out images, for the two held-out modes
        self._averaged_has_batch_norm = ema is not None and bool(batch_norms(ema.averaged_model()))

    def __call__(self, step: int, batch: torch.Tensor, trained_kl: torch.Tensor) -> torch.Tensor:
        """At ``step``, whose training batch is ``batch`` and whose trained KL (global mean) is
        ``trained_kl``."""
        if self.tracks == "trained":
            return trained_kl
        if self.tracks == "averaged":
            return self.averaged_kl(batch)
        held_out = self.held_out_batch(step, batch)
        if self.tracks == "heldout":
            return self.averaged_kl(held_out, statistics=batch)
        return self.trained_heldout_kl(held_out)

    def held_out_batch(self, step: int, batch: torch.Tensor) -> torch.Tensor:
        """Step ``step``'s batch of the held-out images, as large as the training batch, cycled in order
        (a last partial batch is never read)."""
        if self.images is None:
            raise RuntimeError(f"rate.geco_tracks={self.tracks}: set VAEModule.tracking_images (run.py does)")
        if self.images.device != batch.device:  # one copy, kept on the device
            self.images = self.images.to(batch.device)
        size = batch.shape[0]
        index = step % max(1, self.images.shape[0] // size)
        return self.images[index * size:(index + 1) * size]

    @torch.no_grad()
    def trained_heldout_kl(self, x: torch.Tensor) -> torch.Tensor:
        """The trained model's mean KL on ``x``, its encoder in eval mode: BatchNorm normalises with the
        running statistics the training steps keep (the last ~10 training batches at the default momentum;
        the step just taken included). No pass moves them, so training is not changed by the reading."""
        return _mean_kl_in_mode(self.model, x, training=False)

    @torch.no_grad()
    def averaged_kl(self, x: torch.Tensor, statistics: torch.Tensor | None = None) -> torch.Tensor:
        """The weight average's mean KL on ``x``. Without ``statistics``, its encoder in training mode:
        BatchNorm normalises with the batch's own statistics, as the trained model's step does (over
        shuffled training batches that came within 0-2.6 % of the recalibrated model's KL in four PatchGAN
        and VGG16 (HED) runs). With ``statistics`` (the step's training batch), a training-mode pass over
        it first moves the average's BatchNorm running statistics, and ``x`` is then encoded in eval mode
        with them: held-out images normalised by the training images' statistics, as an evaluation does
        after recalibrating. A model without BatchNorm (the AutoencoderKL) has no statistics to move, and
        skips that pass."""
        assert self.ema is not None
        model = cast(VectorVAE | SpatialVAE, self.ema.averaged_model())  # a copy of the trained model
        if statistics is not None and self._averaged_has_batch_norm:
            was_training = model.training
            model.train()
            model.encode(statistics)
            model.train(was_training)
        return _mean_kl_in_mode(model, x, training=statistics is None)


def _mean_kl_in_mode(model: VectorVAE | SpatialVAE, x: torch.Tensor, training: bool) -> torch.Tensor:
    """``model``'s mean KL on ``x`` (over the global batch), encoded in training or eval mode; the model's
    mode is restored after."""
    was_training = model.training
    model.train(training)
    mu, logvar = model.encode(x)
    model.train(was_training)
    return global_mean(kl_per_sample(mu.float(), logvar.float()).mean())
