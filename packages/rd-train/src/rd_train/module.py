r"""The training step: β-VAE with a balanced reconstruction term (spec eq. 6, appendix B).

    G   = Balancer({pixel: 1, neural: λ}) gradient of (pixel SSE, neural) at the decoder output x̂
    L   = <x̂, G> + β_t · mean_b KL_b                   (β_t fixed with warm-up, or GECO)

One backward of L applies G to the autoencoder and β·KL to the encoder, with the KL outside the
balancer as EnCodec does with its commitment loss. A PatchGAN discriminator, when used, takes its
own hinge step after the generator's. Noise ε and flips come from a generator seeded by (seed,
step), so a run resumed from a checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from rd_kernels import Balancer, sample_and_kl
from torch import nn

from rd_train.config import LossConfig, TrainConfig, from_dict
from rd_train.losses import pixel_sse
from rd_train.metrics import LatentStatistics
from rd_train.models import build_model
from rd_train.rate import build_rate_controller


def build_neural_loss(config: LossConfig) -> nn.Module | None:
    if config.neural == "none" or config.lam == 0:
        return None
    if config.neural == "lpips":
        from rd_train.losses.perceptual import LPIPSLoss

        return LPIPSLoss(config.lpips_net, config.weights_path)
    if config.neural == "features":
        from rd_train.losses.learned_features import LearnedFeatureLoss

        return LearnedFeatureLoss(config.weights_path)
    if config.neural == "dinov2":
        from rd_train.losses.perceptual import DINOv2Loss

        return DINOv2Loss(config.dinov2_model, config.dinov2_layers, config.weights_path)
    from rd_train.losses.adversarial import PatchGANLoss

    return PatchGANLoss(config.disc_channels, config.disc_layers, config.disc_spectral_norm,
                        config.feature_matching_weight)


class VAEModule(L.LightningModule):
    def __init__(self, config: dict[str, Any], neural_loss: nn.Module | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config}, ignore=["neural_loss"])
        self.config: TrainConfig = from_dict(config)
        self.automatic_optimization = False
        c = self.config
        self.model = build_model(c.model, c.data.image_size)
        self.neural = neural_loss if neural_loss is not None else build_neural_loss(c.loss)
        weights = {"pixel": 1.0, **({"neural": c.loss.lam} if self.neural is not None else {})}
        self.balancer = Balancer(weights, ema_decay=c.loss.balancer_ema_decay)
        self.rate = build_rate_controller(c.rate)
        self.adversarial = self.neural is not None and c.loss.neural == "patchgan"
        self.step_count = 0  # batches trained; checkpointed (global_step counts optimizer steps)

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        o = self.config.optim
        gen = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=tuple(o.betas))  # type: ignore[arg-type]
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(gen, T_max=o.max_steps)
        if not self.adversarial:
            return [gen], [schedule]
        assert self.neural is not None
        disc = torch.optim.Adam(self.neural.parameters(), lr=o.lr / 2, betas=(0.5, 0.999))
        return [gen, disc], [schedule]

    def _step_generator(self, index: int) -> torch.Generator:
        """CPU generator for step (or validation batch) ``index``: same draws after a resume."""
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + index)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        step = self.step_count
        x = batch
        g = self._step_generator(step)
        if self.config.data.hflip:
            flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        mu, logvar = self.model.encode(x)
        eps = torch.randn(mu.shape, generator=g).to(device=mu.device, dtype=mu.dtype)
        z, kl, stats = sample_and_kl(mu, logvar, eps)
        x_hat = self.model.decode(z)

        losses = {"pixel": pixel_sse(x, x_hat)}
        use_neural = self.neural is not None and (
            not self.adversarial or step >= self.config.loss.disc_start_step)
        if use_neural:
            losses["neural"] = self._neural_generator_loss(x, x_hat)
        kl_mean = kl.mean()
        _check_finite(step, {**losses, "kl": kl_mean})

        beta = self.rate.value(step)
        gradient, effective = self.balancer.gradient(losses, x_hat)
        surrogate = (x_hat.float() * gradient.float()).sum() + beta * kl_mean
        optimizers = self.optimizers()
        gen_opt = optimizers[0] if isinstance(optimizers, list) else optimizers
        gen_opt.zero_grad()
        self.manual_backward(surrogate)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), math.inf)
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"step {step}: non-finite gradient norm ({float(grad_norm)}) in the "
                                     "autoencoder; the last checkpoint before this step is kept")
        gen_opt.step()
        scheduler = self.lr_schedulers()
        scheduler.step()  # type: ignore[union-attr]
        self.rate.update(step, float(kl_mean.detach()))

        if self.adversarial and step >= self.config.loss.disc_start_step:
            assert isinstance(optimizers, list) and self.neural is not None
            disc_opt = optimizers[1]
            disc_opt.zero_grad()
            d_loss = self.neural.discriminator_loss(x, x_hat)  # type: ignore[operator]
            _check_finite(step, {"discriminator": d_loss})
            self.manual_backward(d_loss)
            disc_opt.step()
            self.log("train/discriminator", d_loss.detach())

        self.step_count += 1
        self.log_dict({
            "train/kl": kl_mean.detach(), "train/beta": beta, "train/effective": effective,
            "train/anisotropy": stats.anisotropy.mean(), "train/variance_kl": stats.variance_kl.mean(),
            **{f"train/{k}": v.detach() for k, v in losses.items()},
            **{f"train/{k}": v for k, v in self.balancer.metrics.items()},
        }, prog_bar=False)
        if self.step_count >= self.config.optim.max_steps:
            self.trainer.should_stop = True

    def _neural_generator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        assert self.neural is not None
        if self.adversarial:
            return self.neural.generator_loss(x, x_hat)  # type: ignore[operator]
        return self.neural(x, x_hat)

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, loader: Any) -> dict[str, Any]:
        """Metrics over ``loader`` with one posterior sample per image (seeded per batch)."""
        was_training = self.training
        self.eval()
        stats = LatentStatistics()
        scores_neural = self.neural is not None and not self.adversarial  # PatchGAN's depends on D
        totals = {"pixel_sse": 0.0, **({"neural": 0.0} if scores_neural else {})}
        count = 0
        for i, x in enumerate(loader):
            x = x.to(self.device)
            mu, logvar = self.model.encode(x)
            eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(i)).to(mu.device, mu.dtype)
            z, _, _ = sample_and_kl(mu, logvar, eps)
            x_hat = self.model.decode(z)
            stats.update(mu, logvar, x, x_hat)
            totals["pixel_sse"] += float(pixel_sse(x, x_hat)) * x.shape[0]
            if scores_neural:
                totals["neural"] += float(self.neural(x, x_hat)) * x.shape[0]  # type: ignore[misc]
            count += x.shape[0]
        self.train(was_training)
        result = stats.summary()
        result["distortion"] = {k: v / count for k, v in totals.items()}
        result["beta"] = self.rate.value(self.step_count)
        result["steps"] = self.step_count
        return result

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        mu, logvar = self.model.encode(batch)
        eps = torch.randn(mu.shape, generator=self._step_generator(batch_idx)).to(mu)
        z, kl, stats = sample_and_kl(mu, logvar, eps)
        self.log_dict({"val/kl": kl.mean(), "val/anisotropy": stats.anisotropy.mean(),
                       "val/pixel": pixel_sse(batch, self.model.decode(z))})

    # -- checkpoint state that lives outside nn.Modules ---------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rd_train"] = {"balancer": self.balancer.state_dict(), "rate": self.rate.state_dict(),
                                  "step_count": self.step_count}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["rd_train"]
        self.balancer.load_state_dict(state["balancer"])
        self.rate.load_state_dict(state["rate"])
        self.step_count = int(state["step_count"])


def _check_finite(step: int, terms: dict[str, torch.Tensor]) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            raise FloatingPointError(f"step {step}: loss term {name!r} is {float(value)}; stopping before "
                                     "the update, the last checkpoint before this step is kept")
