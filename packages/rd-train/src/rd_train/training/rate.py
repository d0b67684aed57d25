r"""Rate control: a fixed β with a sine warm-up, or GECO rate targeting (spec appendix B).

Fixed β with warm-up over T steps (reconstructed "sine" schedule):

    β_t = β · sin(π/2 · min(1, t / T))

GECO (Rezende & Viola 2018), targeting the rate directly. With K_t the step's mean per-sample KL
(over the global batch under DDP), K̄_t its EMA (decay ρ, bias-corrected) and R* the target:

    ν_t = (K̄_t - R*) / R*                          (relative violation)
    I_{t+1} = clamp(I_t · exp(η ν_t), β_min, β_max)   (integral part)
    β_{t+1} = clamp(I_{t+1} · exp(κ_p ν_t), β_min, β_max)

Too much rate raises β, too little lowers it; the multiplicative form keeps β > 0 without a
projection. With κ_p = 0 (``geco_proportional``) this is the original integral-only GECO, whose log β
integrates the violation: with the model's KL answering β only after a lag, that loop oscillates (about
±10 % of the target, a period near 600 steps, in every family of the committed sweep). κ_p > 0 makes it a
PI controller on log β: the proportional part answers the violation at once and damps the loop (for a
first-order lag, the damping ratio grows with 1 + K κ_p, K the sensitivity of ν to log β); the integral
part, clamped to [β_min, β_max] so it cannot wind up, removes the steady-state error. The proportional part
acts on the unbounded relative violation: when the hold ends with the KL far above the target it
multiplies β by e^{κ_p ν} at once (measured, benchmarks/geco_pilot.py: κ_p = 3 and 10 collapsed the
posteriors of pixel-SSE runs at 5 nats). A bound L
(``geco_proportional_limit``) makes the proportional part act on clamp(ν, -L, L): it then moves β by at
most e^{κ_p L} at once, while the integral part still sees the whole violation. The default profile runs
κ_p = 3 with L = 0.5 (params.yaml: the pilots that chose it).

Offset correction (``geco_outer_gain`` g > 0). GECO steers the KL it reads (below: whose, on which
images); the tables report the KL of the evaluated model (the weights' EMA, ema.py) on held-out images
after BatchNorm recalibration, which can sit a few percent off it (up to 16 % at 5 nats in the committed
v2 sweep, where GECO read the trained weights' KL on training batches: a bias by family). From
``geco_outer_start`` (a fraction of training) on, each validation measures that offset, o = K̄ / K_val
(the read KL's EMA over the evaluated KL), smooths it, ô ← (1 - g) ô + g o (the first measurement
taken as it is), and moves the target the inner loop steers the read KL to:

    R_train = R* · clamp(ô, 0.8, 1.25)

so that the evaluated KL lands on R* when the offset holds. A feedforward correction, not a loop on
K_val: an integral outer loop on (R* / K_val)^g oscillated in the pilot (the inner loop answers a new
R_train only after a lag of the order of the validation interval). It starts late, when the offset has
settled, and the clamp keeps one noisy validation from moving the target far. Each run reports its
tracking error, K_val at the end against R*. Measured (seed 99, λ = 5, 1000 steps; benchmarks/results/
cpu-geco-offset-pilot.json): pixel SSE and VGG16 (HED) end within 2 % of 5 and 20 nats; PatchGAN does not
(+4 % and +14 %): its training KL itself still rises late and leaves the inner loop behind, which neither a
learning-rate floor nor an offset averaged like the weights (cpu-geco-offset-lag-pilot.json) mended.

Which average of the read KL the offset divides (``geco_offset_average``). With ``geco_ema`` (the behaviour
before this key) the numerator is K̄, GECO's own EMA of the read KL (decay ρ, about 20 steps at 0.95), while
the evaluated weights average the trained ones over about 1 / (1 − ρ_w) steps (ema.py: 100 at 0.99). When
the rate moves, o then measures that lag as well as the offset: o moves with the evaluated KL's change over
the previous validation interval (correlation 0.85-0.91 in every family of the sweep at f90613f,
`paper/records`), so a rising KL reads as an offset and raises the target. With ``weights`` the numerator is
K̃, the read KL averaged with the weights' own decay (``optim.ema_decay``, bias-corrected as K̄ is), so both
sides of the ratio lag alike and o measures the offset only. On its own it did not pay: an earlier form,
when GECO read the training batches with an integral-only loop, did no better on one seed
(cpu-geco-offset-lag-pilot.json), and an exploration on seeds 90-93 (benchmarks/geco_gain_exploration.py,
cpu-geco-lagmatched-exploration.json) kept 6 of 12 PatchGAN λ = 5 runs within 3 %, every one above its
target, against gain 0.8's 10 of 12. The default profile runs it together with the terminal aim below,
the pair its pilot chose (params.yaml; cpu-geco-terminal-pilot.json).

Terminal aim (``geco_outer_terminal``). The tables read the weight average at the run's end, which holds
ρ_w^N of the average at a validation N steps before it (ema.py). Read to first order, the evaluated KL at
the end is then ρ_w^N K_val + (1 − ρ_w^N) K_rest / ô, K_rest the read KL over the steps left; so the
correction aims the read KL at

    R_train = ô · (R* − ρ_w^N K_val) / (1 − ρ_w^N),   clamped to R* · [0.8, 1.25],

which is R* · ô while N ≫ 1 / (1 − ρ_w) and, near the end, asks the steps left to make up for what the
average already holds (a PatchGAN λ = 5 run traced by benchmarks/geco_offset_trace.py ends 6 % high
because its weight average still holds an excess of steps 650-950 that the read KL no longer has). Its
exploration and pilot, and whether the default profile runs it: docs/protocol.md and params.yaml.

Ramp term (``geco_ramp_gain`` η₂ > 0). A loop with one integrator follows a KL that drifts at a steady
rate r per step (relative, at fixed β) only with a constant lag error, ν_ss ≈ r / (η K), K the sensitivity
of ν to log β; the committed PatchGAN λ = 5 runs drift +17 to +44 % over their last 400 steps at fixed β
(convergence.md), all their GECO misses are above target, and their log β climbs through the end. From
``geco_ramp_start`` (a fraction of training) on, a second integrator J learns the slope log β needs:

    J_{t+1} = clamp(J_t + η₂ ν_t, -J_max, J_max)
    I_{t+1} = clamp(I_t · exp(η ν_t + J_{t+1}), β_min, β_max)

so a steady drift leaves no steady error (a type-2 loop). J is the log β slope per step; J_max bounds it
(``RAMP_LIMIT``: 1 % per step, above the ~0.3 % the committed runs' β climbs at), and J is reset when the
integral meets β_min or β_max, so neither state winds up. It starts after the hold and the first
transient, so J does not learn the transient's slope. The price is phase: a second integrator inside a loop
whose KL answers β only after ~100 steps lowers its damping. Off in the default profile: its pilot
(benchmarks/geco_ramp_pilot.py, with η = 0.03 to buy the phase back) kept 32 of 40 runs within 3 %
against the default's 36. PatchGAN λ = 5's swings stayed (its rate wanders by tens of percent at fixed β
too: benchmarks/fixed_beta_wander.py), and the smaller η left the AutoencoderKL, whose weight average lags
~1000 steps, 11-15 % short.

Whose KL (``geco_tracks``; rate_tracking.py computes it). K_t is the trained weights' KL on the step's
batch by default. With ``averaged`` it is the weight average's (ema.py: the model every evaluation reads)
on the same batch, so the offset the correction above removes is only the one between training and
held-out images. With ``heldout`` it is the weight average's on one batch of the held-out images per
step, normalised as an evaluation normalises them, so little offset is left to remove; the price of both
is a lag inside the loop: the average trails the trained weights by about 1 / (1 - ρ_ema) steps. With
``trained_heldout`` it is the trained weights' on the held-out batch: no lag beyond the KL's own EMA, and
the offset correction removes the remaining gap between the trained weights and their average.

During the first T steps β is held at its initial value and only the EMA is tracked, so GECO does
not react to the warm-up transient.

GECO's state (β, the EMA's two sums, the integral, the ramp) lives in device tensors, updated with device
ops, so a training step never waits for the host to read the KL; a step whose KL is not finite leaves the
state unchanged (the training step reports it). ``state_dict`` holds plain floats.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rd_train.config import RateConfig

OFFSET_RANGE = (0.8, 1.25)  # how far the offset correction may move the training target (module doc)
RAMP_LIMIT = 0.01  # |J|, the ramp term's log β slope per step (module doc)


class FixedBeta:
    def __init__(self, config: RateConfig) -> None:
        self.beta, self.warmup = config.beta, config.warmup_steps

    def value(self, step: int) -> float:
        if self.warmup <= 0 or step >= self.warmup:
            return self.beta
        return self.beta * math.sin(0.5 * math.pi * step / self.warmup)

    def update(self, step: int, kl: torch.Tensor, finite: torch.Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class GECO:
    def __init__(self, config: RateConfig, max_steps: int, weights_decay: float = 0.0) -> None:
        """``weights_decay``: the evaluated weights' EMA decay (``optim.ema_decay``), which K̃ averages the
        read KL with under ``geco_offset_average: weights`` (module doc)."""
        assert config.target is not None
        reads_weights = config.geco_offset_average == "weights" or config.geco_outer_terminal
        if reads_weights and not 0 < weights_decay < 1:
            raise ValueError(f"geco_offset_average=weights and geco_outer_terminal need the weights' EMA "
                             f"decay in (0, 1), got {weights_decay!r}")
        self.target = config.target
        self.training_target = config.target  # what the inner loop steers the training KL to (outer loop)
        self.outer_gain, self.outer_start = config.geco_outer_gain, config.geco_outer_start
        self.offset: float | None = None  # the smoothed training / evaluated KL ratio ô
        self.corrections: list[list[float]] = []  # [step, evaluated KL, new training target]
        self.step_size = config.geco_step_size
        self.decay = config.geco_ema_decay
        self.beta_min, self.beta_max = config.beta_min, config.beta_max
        self.warmup = config.warmup_steps
        self.proportional = config.geco_proportional
        self.proportional_limit = config.geco_proportional_limit
        self.ramp_gain = config.geco_ramp_gain
        self.ramp_start = max(self.warmup, math.ceil(config.geco_ramp_start * max_steps))
        self.offset_average = config.geco_offset_average
        self.terminal = config.geco_outer_terminal
        self.weights_decay = weights_decay
        # β, Σ ρ^{t-s} K_s, Σ ρ^{t-s}, the integral I, the ramp J, and K̃'s two sums (Σ ρ_w^{t-s} K_s,
        # Σ ρ_w^{t-s}; zero unless the offset reads K̃): moved to the KL's device at the first update.
        self._state = torch.tensor([config.beta, 0.0, 0.0, config.beta, 0.0, 0.0, 0.0], dtype=torch.float64)

    @property
    def beta(self) -> torch.Tensor:
        return self._state[0]

    @property
    def kl_ema(self) -> torch.Tensor:
        return self._state[1] / self._state[2]  # NaN before the first update

    @property
    def kl_weights_average(self) -> torch.Tensor:
        """K̃: the read KL averaged with the evaluated weights' decay (module doc); NaN unless
        ``geco_offset_average`` is ``weights``."""
        return self._state[5] / self._state[6]

    def value(self, step: int) -> torch.Tensor:
        return self._state[0].float()

    def update(self, step: int, kl: torch.Tensor, finite: torch.Tensor) -> None:
        """Fold the step's mean KL into the EMA and, after the warm-up, move β; skipped if not finite."""
        if self._state.device != kl.device:
            self._state = self._state.to(kl.device)
        beta, ema_sum, ema_weight, integral, ramp, slow_sum, slow_weight = self._state.unbind()
        kl = torch.where(finite, kl.detach().double(), 0.0)
        new_sum, new_weight = self.decay * ema_sum + kl, self.decay * ema_weight + 1.0
        if self.offset_average == "weights":
            slow_sum, slow_weight = self.weights_decay * slow_sum + kl, self.weights_decay * slow_weight + 1.0
        new_beta, new_integral, new_ramp = beta, integral, ramp
        if step >= self.warmup:
            violation = (new_sum / new_weight - self.training_target) / self.training_target
            increment = self.step_size * violation
            if self.ramp_gain and step >= self.ramp_start:
                new_ramp = (ramp + self.ramp_gain * violation).clamp(-RAMP_LIMIT, RAMP_LIMIT)
                increment = increment + new_ramp
            new_integral = (integral * torch.exp(increment)).clamp(self.beta_min, self.beta_max)
            if self.ramp_gain:  # a clamped integral resets the slope: no wind-up (module doc)
                at_bound = (new_integral <= self.beta_min) | (new_integral >= self.beta_max)
                new_ramp = torch.where(at_bound, 0.0, new_ramp)
            new_beta = new_integral
            if self.proportional:
                acting = violation
                if self.proportional_limit is not None:
                    acting = violation.clamp(-self.proportional_limit, self.proportional_limit)
                new_beta = (new_integral * torch.exp(self.proportional * acting)).clamp(
                    self.beta_min, self.beta_max)
        new_state = torch.stack([new_beta, new_sum, new_weight, new_integral, new_ramp,
                                 slow_sum, slow_weight])
        self._state = torch.where(finite, new_state, self._state)

    def correct(self, step: int, evaluated_kl: float, max_steps: int) -> None:
        """The offset correction (module doc), at a validation of step ``step`` of ``max_steps``."""
        start = correction_start(self.warmup, self.outer_start, max_steps)
        if self.outer_gain <= 0 or step < start or not math.isfinite(evaluated_kl) or evaluated_kl <= 0:
            return
        read = self.kl_weights_average if self.offset_average == "weights" else self.kl_ema
        offset = float(read) / evaluated_kl
        if not math.isfinite(offset):
            return
        self.offset = (offset if self.offset is None
                       else (1 - self.outer_gain) * self.offset + self.outer_gain * offset)
        left = max_steps - step
        if self.terminal and left > 0:
            # The weight average at the end holds ρ_w^left of today's; the steps left must supply the rest.
            held = self.weights_decay ** left
            aim = (self.target - held * evaluated_kl) / (1 - held)  # in evaluated units
            self.training_target = min(max(self.offset * aim, OFFSET_RANGE[0] * self.target),
                                       OFFSET_RANGE[1] * self.target)
        else:
            self.training_target = self.target * min(max(self.offset, OFFSET_RANGE[0]), OFFSET_RANGE[1])
        self.corrections.append([float(step), float(evaluated_kl), self.training_target])

    def state_dict(self) -> dict[str, Any]:
        beta, ema_sum, ema_weight, integral, ramp, slow_sum, slow_weight = self._state.tolist()
        return {"beta": beta, "ema_sum": ema_sum, "ema_weight": ema_weight, "integral": integral,
                "ramp": ramp, "weights_average_sum": slow_sum, "weights_average_weight": slow_weight,
                "training_target": self.training_target, "corrections": self.corrections,
                "offset": self.offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        values = [float(state["beta"]), float(state["ema_sum"]), float(state["ema_weight"]),
                  float(state.get("integral", state["beta"])),  # integral-only checkpoints: I = β
                  float(state.get("ramp", 0.0)),  # checkpoints before the ramp term: J = 0
                  # checkpoints before geco_offset_average: no K̃ (the offset read K̄)
                  float(state.get("weights_average_sum", 0.0)),
                  float(state.get("weights_average_weight", 0.0))]
        self._state = torch.tensor(values, dtype=torch.float64, device=self._state.device)
        self.training_target = float(state.get("training_target", self.target))
        self.corrections = [list(map(float, row)) for row in state.get("corrections", [])]
        self.offset = None if state.get("offset") is None else float(state["offset"])


def correction_start(warmup_steps: int, outer_start: float, max_steps: int) -> int:
    """The first step whose validation GECO's offset correction acts at (`GECO.correct`): the fraction
    ``outer_start`` (``rate.geco_outer_start``) of the run, and never inside the warm-up."""
    return max(warmup_steps, math.ceil(outer_start * max_steps))


def build_rate_controller(config: RateConfig, max_steps: int, weights_decay: float = 0.0) -> FixedBeta | GECO:
    """The rate controller of ``config`` for a run of ``max_steps`` steps whose evaluated weights average
    with decay ``weights_decay`` (``optim.ema_decay``)."""
    return GECO(config, max_steps, weights_decay) if config.mode == "geco" else FixedBeta(config)
