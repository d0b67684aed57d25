r"""The training step: a per-sample β-VAE objective with a balanced reconstruction term (spec eq. 6,
appendix B).

The objective of sample b, in a batch of B (reconstructed from eq. 6 and the balancer's definition):

    J_b = Σ_k σ_k ℓ_k(x_b, x̂_b) + β_t KL_b,        σ_k = s_k / B

ℓ_k are the reconstruction terms (pixel SSE; the neural term weighted λ), s_k the balancer's scales for
the batch-mean losses mean_b ℓ_k. Since the per-item gradient of a batch mean carries a 1/B, the
balancer's norms do too and s_k ∝ B: σ_k, the weight a single sample's distortion gets, does not depend
on the batch size. A step minimises mean_b J_b with one backward of

    L = (1/B) <x̂, G> + β_t · mean_b KL_b,       G = balancer gradient of (ℓ_k) w.r.t. x̂  (a constant)

so the parameter gradient is the batch mean of the per-sample gradients ∂J_b/∂θ: duplicating the batch
leaves it unchanged, and under DDP the average over workers of their batch means is the mean over the
global batch (BatchNorm statistics are synchronised then: `run.py` sets ``sync_batchnorm``). GECO sees
the KL averaged over the global batch, so every worker keeps the same β. The KL stays outside the
balancer, as EnCodec does with its commitment loss. A PatchGAN discriminator takes its own hinge step
after the generator's.

No host synchronisation in a step (what keeps a GPU busy): noise and flips come from a generator on the
training device seeded by (seed, step), so a resumed run continues exactly as an uninterrupted one;
β and GECO's state are device tensors; a non-finite loss or gradient skips that step's update on the
device (fused Adam's ``found_inf``, the mechanism GradScaler uses) and records the first step and term
at which each went bad. The host reads these, and the logged metrics, every ``log_every_n_steps``
steps, before every checkpoint and at the end: then training stops, naming the step and the term,
and the last checkpoint written (from before that step) is kept.

Evaluation (every validation, and the final metrics): evaluation.py, on the trained weights or their
EMA (ema.py). With ``loss.norm_match`` the balanced gradient G is rescaled to mean per-sample norm equal
to the balancer's total norm, what pixel SSE alone gets (training_averages.py says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import lightning as L
import torch
from rd_kernels import Balancer, PosteriorStats, sample_and_kl
from torch import nn

from rd_train.config import TrainConfig, from_dict
from rd_train.training.averages import TrainingAverages
from rd_train.training.distributed import global_mean
from rd_train.training.ema import WeightAverage
from rd_train.training.evaluation import EvaluationMixin
from rd_train.training.losses import build_neural_loss, pixel_sse
from rd_train.training.models import build_model
from rd_train.training.rate import build_rate_controller
from rd_train.training.rate_tracking import TrackedKL
from rd_train.training.step_graph import EAGER_STEPS, StepFunctions, StepGraph

# What can go non-finite in a step, in the order the training step records it.
TERMS = ("pixel", "neural", "kl", "autoencoder gradient", "discriminator")


class Objective(NamedTuple):
    """One generator step's quantities (all device tensors, or a float β)."""

    surrogate: torch.Tensor  # L: its parameter gradient is mean_b ∂J_b/∂θ
    x_hat: torch.Tensor
    losses: dict[str, torch.Tensor]  # batch means of the reconstruction terms
    kl: torch.Tensor  # per sample
    stats: PosteriorStats
    beta: torch.Tensor | float
    combined_norm: torch.Tensor  # mean_b ||G_b|| before norm matching (training_averages.py)


class StepResult(NamedTuple):
    """A step's forward and backward (`VAEModule.forward_backward`): what the eager part of the step needs."""

    objective: Objective
    kl_mean: torch.Tensor  # over the global batch
    generator_bad: torch.Tensor  # per TERMS[:4]: pixel, neural, KL, autoencoder gradient non-finite
    discriminator_loss: torch.Tensor  # 0 while the discriminator is off
    discriminator_bad: torch.Tensor  # 0-dim bool


class VAEModule(EvaluationMixin, L.LightningModule):
    def __init__(self, config: dict[str, Any], neural_loss: nn.Module | None = None,
                 step_graph: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config}, ignore=["neural_loss"])
        self.config: TrainConfig = from_dict(config)
        self.automatic_optimization = False
        c = self.config
        self.model = build_model(c.model, c.data.image_size)
        self.neural = neural_loss if neural_loss is not None else build_neural_loss(c)
        weights = {"pixel": 1.0, **({"neural": c.loss.lam} if self.neural is not None else {})}
        self.balancer = Balancer(weights, ema_decay=c.loss.balancer_ema_decay)
        self.rate = build_rate_controller(c.rate, c.optim.max_steps, c.optim.ema_decay)
        self.adversarial = self.neural is not None and c.loss.neural == "patchgan"
        # The evaluated weights' average (ema.py): not a submodule, not in the state_dict; checkpointed below.
        self.ema = WeightAverage(self.model, c.optim.ema_decay) if c.optim.ema_decay > 0 else None
        self._model_parameters = list(self.model.parameters())  # walked once: a step reads their gradients
        self.tracked_kl = TrackedKL(c.rate, self.model, self.ema)  # rate_tracking.py
        self._training_averages = TrainingAverages(c.rate.warmup_steps, c.optim.max_steps)
        self.step_count = 0  # batches trained; checkpointed (global_step counts optimizer steps)
        self.validation_history: list[list[float]] = []  # [step, KL, pixel SSE, anisotropy]; checkpointed
        self._generator: torch.Generator | None = None
        self._first_bad: torch.Tensor | None = None  # per TERMS: first step it was non-finite, or -1
        self._core = self._sample_and_decode
        if c.compile is not False:
            mode = None if c.compile is True else c.compile
            self._core = torch.compile(self._sample_and_decode, fullgraph=True, mode=mode)
        # CUDA graphs (compile: reduce-overhead) reuse their output memory: a step tells them when the
        # previous step's outputs are dead, at its start (nothing from a step outlives it).
        self._cuda_graphs = c.compile == "reduce-overhead"
        self._step_graph = StepGraph(StepFunctions(  # step_graph.py: the step as callables, nothing else
            draw_noise=self.draw_noise, beta=lambda step: self.rate.value(step), body=self.forward_backward,
            mutable_state=self.step_state)) if step_graph else None
        self.calibration_images: torch.Tensor | None = None  # set by run.py from the training split

    @property
    def tracking_images(self) -> torch.Tensor | None:
        """The held-out images GECO reads (``rate.geco_tracks``: heldout, trained_heldout; run.py sets them:
        the validation split in an order shuffled once by the run's seed)."""
        return self.tracked_kl.images

    @tracking_images.setter
    def tracking_images(self, images: torch.Tensor | None) -> None:
        self.tracked_kl.images = images

    def step_state(self) -> list[torch.Tensor]:
        """The tensors a training step changes besides gradients and optimiser state: the autoencoder's and
        the neural loss's buffers (BatchNorm statistics, spectral-norm vectors) and the balancer's EMA."""
        neural = self.neural.buffers() if self.neural is not None else ()
        return [*self.model.buffers(), *neural, *self.balancer.device_state()]

    def use_channels_last(self) -> None:
        """A frozen perceptual feature network's weights in NHWC (channels-last) memory format: oneDNN's
        bf16 convolutions work in it, so NCHW weights cost a reorder at every call (measured on the
        2-core machine, a VGG16 (HED) step at batch 32 under bf16 autocast: 59 ms NCHW, 41 ms NHWC).
        The autoencoder and a PatchGAN discriminator stay NCHW: their small convolutions ran slower in
        NHWC there. run.py uses it for bf16-mixed CPU training only, so fp32 runs compute exactly
        what they did."""
        if self.neural is not None and not self.adversarial:
            self.neural.to(memory_format=torch.channels_last)

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        o = self.config.optim
        # fused: one kernel per step, and it can skip a step on the device (found_inf, below).
        gen = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=tuple(o.betas), fused=True)  # type: ignore[arg-type]
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(gen, T_max=o.max_steps,
                                                              eta_min=o.lr * o.lr_floor)
        if not self.adversarial:
            return [gen], [schedule]
        assert self.neural is not None
        disc = torch.optim.Adam(self.neural.parameters(), lr=o.lr / 2, betas=(0.5, 0.999), fused=True)
        if self.config.loss.disc_lr_schedule == "cosine":  # the same multiplier as the generator's
            disc_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(disc, T_max=o.max_steps,
                                                                       eta_min=o.lr / 2 * o.lr_floor)
            return [gen, disc], [schedule, disc_schedule]
        return [gen, disc], [schedule]

    def step_generator(self, index: int, device: torch.device) -> torch.Generator:
        """The generator for step (or validation batch) ``index`` on ``device``: same draws after a resume."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        return self._generator.manual_seed(self.config.seed * 1_000_003 + index)

    def _sample_and_decode(self, x: torch.Tensor, eps: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, PosteriorStats]:
        mu, logvar = self.model.encode(x)
        z, kl, stats = sample_and_kl(mu, logvar, eps)
        return self.model.decode(z), kl, stats

    def draw_noise(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(horizontal flips or None, ε) for step ``step``, drawn on x's device in a fixed order."""
        g = self.step_generator(step, x.device)
        flip = torch.rand(x.shape[0], generator=g, device=x.device) < 0.5 if self.config.data.hflip else None
        eps = torch.randn((x.shape[0], *self.model.latent_shape), generator=g, device=x.device, dtype=x.dtype)
        return flip, eps

    def objective(self, x: torch.Tensor, step: int) -> Objective:
        """Flip, encode, sample, decode, and the surrogate L of the per-sample objective (module doc)."""
        flip, eps = self.draw_noise(x, step)
        neural_term = self._neural_term(self._disc_active(step))
        return self.objective_from(x, flip, eps, self.rate.value(step), neural_term)

    def objective_from(self, x: torch.Tensor, flip: torch.Tensor | None, eps: torch.Tensor,
                       beta: torch.Tensor | float, neural_term: bool) -> Objective:
        """`objective` with the step's draws, β and whether the neural term is on given."""
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        if flip is not None:
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        x_hat, kl, stats = self._core(x, eps)
        losses = {"pixel": pixel_sse(x, x_hat)}
        if neural_term:
            losses["neural"] = self.neural_generator_loss(x, x_hat)
        gradient = self.balancer.gradient(losses, x_hat)
        combined_norm = gradient.float().flatten(1).norm(dim=1).mean()
        if self.config.loss.norm_match:
            gradient = gradient * (self.balancer.total_norm / combined_norm).to(gradient.dtype)
        # At least fp32 (bf16 outputs are upcast); a float64 model keeps float64 (exact tests).
        accumulate = torch.promote_types(x_hat.dtype, torch.float32)
        surrogate = (x_hat.to(accumulate) * gradient.to(accumulate)).sum() / x.shape[0] + beta * kl.mean()
        return Objective(surrogate, x_hat, losses, kl, stats, beta, combined_norm.detach())

    def _disc_active(self, step: int) -> bool:
        """Whether the PatchGAN discriminator trains (and its generator term counts) at ``step``."""
        return self.adversarial and step >= self.config.loss.disc_start_step

    def _neural_term(self, disc_active: bool) -> bool:
        return self.neural is not None and (not self.adversarial or disc_active)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        optimizers = self.optimizers()
        schedulers = self.lr_schedulers()
        result = self.train_step(batch, optimizers if isinstance(optimizers, list) else [optimizers],
                                 schedulers if isinstance(schedulers, list) else [schedulers])
        out, kl_mean = result.objective, result.kl_mean
        last = self.step_count >= self.config.optim.max_steps
        if last or self.step_count % self.config.log_every_n_steps == 0:  # when Lightning writes logs
            self.raise_if_non_finite()
            values = {
                "train/kl": kl_mean, "train/beta": out.beta, "train/anisotropy": out.stats.anisotropy.mean(),
                "train/variance_kl": out.stats.variance_kl.mean(),
                "train/discriminator": result.discriminator_loss,
                "train/effective": self.balancer.effective_loss(out.losses),
                "train/combined_gradient_norm": out.combined_norm,
                **{f"train/{k}": v for k, v in out.losses.items()},
                **{f"train/{k}": v for k, v in self.balancer.metrics().items()},
            }
            # Copies: Lightning keeps the tensors it is given (callback_metrics), and a graphed step's
            # outputs are rewritten by the next replay.
            self.log_dict({k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                           for k, v in values.items()})
        if last:
            self.trainer.should_stop = True

    def train_step(self, batch: torch.Tensor, optimizers: Sequence[Any],
                   schedulers: Sequence[Any]) -> StepResult:
        """One training step, whichever loop drives it (Lightning's `training_step`, or the bare loop
        benchmarks/loop_overhead.py times against it): the forward and backward pass (graphed or eager),
        the optimiser steps with their non-finite skips, the EMA, the schedulers, the rate update and the
        running averages. Advances `step_count`; logging and stopping stay with the loop. ``optimizers``:
        the autoencoder's, then the discriminator's (torch optimisers, or Lightning's wrappers of them),
        as `configure_optimizers` makes them; ``schedulers`` likewise."""
        step = self.step_count
        disc_active = self._disc_active(step)
        active = optimizers if disc_active else optimizers[:1]
        if self._step_graph is not None and step >= EAGER_STEPS:
            result = self._step_graph.run(batch, step, disc_active, active)
        else:
            for optimizer in active:
                optimizer.zero_grad()
            flip, eps = self.draw_noise(batch, step)
            result = self.forward_backward(batch, flip, eps, self.rate.value(step), disc_active)
        generator_bad = result.generator_bad.any()
        _skip_if(optimizers[0], generator_bad)
        optimizers[0].step()
        if self.ema is not None:
            self.ema.update()
        for scheduler in schedulers:
            scheduler.step()
        self.rate.update(step, self.tracked_kl(step, batch, result.kl_mean), ~generator_bad)
        self._training_averages.add(step, "combined_gradient_norm", result.objective.combined_norm)
        if disc_active:
            _skip_if(optimizers[1], result.discriminator_bad)
            optimizers[1].step()
            self._training_averages.add(step, "discriminator_hinge", result.discriminator_loss)
        self._record_non_finite(step, torch.cat([result.generator_bad, result.discriminator_bad.view(1)]))
        self.step_count += 1
        return result

    def forward_backward(self, batch: torch.Tensor, flip: torch.Tensor | None, eps: torch.Tensor,
                         beta: torch.Tensor | float, disc_active: bool) -> StepResult:
        """A step's forward and backward, optimisers not stepped: the autoencoder's gradient of the
        objective, then (PatchGAN, once on) the discriminator's hinge gradient. The discriminator sees
        x̂ detached, so its gradient does not depend on the generator's update: computing it before
        that update (one block for step_graph.py to capture) changes no number."""
        out = self.objective_from(batch, flip, eps, beta, self._neural_term(disc_active))
        self.manual_backward(out.surrogate)
        grad_norm = max_abs([p.grad for p in self._model_parameters if p.grad is not None])
        kl_mean = global_mean(out.kl.mean().detach())
        zero = kl_mean.new_zeros(())
        terms = [out.losses["pixel"].detach(), out.losses.get("neural", zero).detach(), kl_mean, grad_norm]
        generator_bad = ~torch.isfinite(torch.stack(terms).float())
        d_loss = zero
        if disc_active:
            assert self.neural is not None
            d_loss = self.neural.discriminator_loss(batch, out.x_hat)
            self.manual_backward(d_loss)
        d_loss = d_loss.detach()
        return StepResult(out, kl_mean, generator_bad, d_loss, ~torch.isfinite(d_loss))

    def neural_generator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """The neural term the balancer weighs, as a batch mean (a PatchGAN's generator loss, or the
        feature distance): what the transfer analysis differentiates too."""
        assert self.neural is not None
        if self.adversarial:
            return self.neural.generator_loss(x, x_hat)
        return self.neural(x, x_hat)

    def _record_non_finite(self, step: int, bad: torch.Tensor) -> None:
        if self._first_bad is None or self._first_bad.device != bad.device:
            self._first_bad = torch.full((len(TERMS),), -1, dtype=torch.int64, device=bad.device)
        self._first_bad = torch.where((self._first_bad < 0) & bad, step, self._first_bad)

    def raise_if_non_finite(self) -> None:
        """Read the non-finite records (a host sync) and stop training if any term went bad."""
        if self._first_bad is not None:
            first = self._first_bad.tolist()
            bad = [(s, term) for s, term in zip(first, TERMS, strict=True) if s >= 0]
            if bad:
                step, term = min(bad)
                raise FloatingPointError(
                    f"step {step}: loss term {term!r} is non-finite (nan or inf); that step's update and all "
                    "later ones were skipped, and the last checkpoint written before it is kept")
        self.balancer.check_finite()

    # -- checkpoint state that lives outside nn.Modules ---------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.raise_if_non_finite()  # never write a checkpoint of a run that went non-finite
        checkpoint["rd_train"] = {
            "balancer": self.balancer.state_dict(), "rate": self.rate.state_dict(),
            "step_count": self.step_count, "validation_history": self.validation_history,
            "training_averages": self._training_averages.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["rd_train"]
        self.balancer.load_state_dict(state["balancer"])
        self.rate.load_state_dict(state["rate"])
        self.step_count = int(state["step_count"])
        self.validation_history = [list(row) for row in state.get("validation_history", [])]
        if "training_averages" in state:
            self._training_averages.load_state_dict(state["training_averages"])
        if self.ema is not None:
            if "ema" not in state:
                raise KeyError("this checkpoint has no weight average, but the run's optim.ema_decay is set")
            self.ema.load_state_dict(state["ema"])

    def use_evaluated_weights(self) -> None:
        """Make ``model`` hold the evaluated weights (the EMA's, if any), BatchNorm recalibrated, in eval
        mode: for a finished run loaded only to be analysed."""
        if self.ema is not None:
            self.model.load_state_dict(self.ema.averaged_model().state_dict())
            self.ema = None
        self.recalibrate_batchnorm()
        self.model.eval()


def max_abs(tensors: list[torch.Tensor]) -> torch.Tensor:
    """max |t| over all elements of ``tensors`` (their joint ∞-norm; NaN if any element is NaN), a 0-dim
    tensor: what a step reads to tell a non-finite gradient. The same value as
    ``torch.nn.utils.get_total_norm(tensors, norm_type=inf)`` (a maximum is exact in any order), in three
    foreach calls: that one's per-tensor ∞-norms cost 0.37 ms a step for the vector VAE's 20 gradients,
    about 4.5 % of a pixel-SSE step (benchmarks/step_host_costs.py)."""
    if not tensors:
        return torch.zeros(())
    return torch.stack(torch._foreach_max(torch._foreach_abs(tensors))).max()


def _skip_if(optimizer: Any, bad: torch.Tensor) -> None:
    """Make the fused optimizer's next step a no-op on the device when ``bad`` (a 0-dim bool tensor)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps the torch one
    inner.found_inf = bad.float()
    inner.grad_scale = None
