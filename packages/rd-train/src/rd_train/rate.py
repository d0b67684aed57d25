r"""Rate control: a fixed β with a sine warm-up, or GECO rate targeting (spec appendix B).

Fixed β with warm-up over T steps (reconstructed "sine" schedule):

    β_t = β · sin(π/2 · min(1, t / T))

GECO (Rezende & Viola 2018), targeting the rate directly. With K_t the batch's mean per-sample KL,
K̄_t its EMA (decay ρ, bias-corrected) and R* the target:

    ν_t = (K̄_t - R*) / R*                 (relative violation)
    β_{t+1} = clamp(β_t · exp(η ν_t), β_min, β_max)

Too much rate raises β, too little lowers it; the multiplicative form keeps β > 0 without a
projection. During the first T steps β is held at its initial value and only the EMA is tracked,
so GECO does not react to the warm-up transient. State (β, EMA) is a ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Any

from rd_train.config import RateConfig


class FixedBeta:
    def __init__(self, config: RateConfig) -> None:
        self.beta, self.warmup = config.beta, config.warmup_steps

    def value(self, step: int) -> float:
        if self.warmup <= 0 or step >= self.warmup:
            return self.beta
        return self.beta * math.sin(0.5 * math.pi * step / self.warmup)

    def update(self, step: int, kl: float) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class GECO:
    def __init__(self, config: RateConfig) -> None:
        assert config.target is not None
        self.target = config.target
        self.step_size = config.geco_step_size
        self.decay = config.geco_ema_decay
        self.beta_min, self.beta_max = config.beta_min, config.beta_max
        self.warmup = config.warmup_steps
        self.beta = config.beta
        self._ema_sum = 0.0
        self._ema_weight = 0.0

    @property
    def kl_ema(self) -> float:
        return self._ema_sum / self._ema_weight if self._ema_weight else float("nan")

    def value(self, step: int) -> float:
        return self.beta

    def update(self, step: int, kl: float) -> None:
        if not math.isfinite(kl):
            raise FloatingPointError(f"GECO got a non-finite KL ({kl}) at step {step}")
        self._ema_sum = self.decay * self._ema_sum + kl
        self._ema_weight = self.decay * self._ema_weight + 1.0
        if step < self.warmup:
            return
        violation = (self.kl_ema - self.target) / self.target
        self.beta = min(self.beta_max, max(self.beta_min, self.beta * math.exp(self.step_size * violation)))

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "ema_sum": self._ema_sum, "ema_weight": self._ema_weight}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self._ema_sum = float(state["ema_sum"])
        self._ema_weight = float(state["ema_weight"])


def build_rate_controller(config: RateConfig) -> FixedBeta | GECO:
    return GECO(config) if config.mode == "geco" else FixedBeta(config)
