r"""An exponential moving average of the autoencoder's weights: the model every evaluation reads.

    θ̄_t = ρ θ̄_{t-1} + (1 − ρ) θ_t,      θ̄_0 = θ_0

after every optimiser step (audiocraft's compression solver validates on EMA weights, decay 0.99;
StyleGAN evaluates G_ema). An evaluation of θ̄ averages the last ~1/(1 − ρ) steps of the trajectory, so
a run's numbers do not depend on the phase at which an oscillating run (a GAN's, GECO's) is stopped.

The average lives in its own copy of the autoencoder, never in the trained model: an evaluation never
swaps weights in and out of the model being trained, so no checkpoint can catch the swap. Only
parameters are averaged; the copy's BatchNorm statistics are recomputed at θ̄ before every evaluation
(module.py). Between evaluations GECO's held-out loop moves them (``rate.geco_tracks: heldout``), so the
checkpoint holds them too. One fused device op per step (``torch._foreach_lerp_``), no host
synchronisation; the average is part of the checkpoint, so a resumed run continues the same average bit
for bit.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """Not an ``nn.Module`` on purpose: the copy must not join the trained module's state_dict,
    optimiser or device moves (it follows the trained model's device by itself)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.module = copy.deepcopy(model).requires_grad_(False)
        # The two parameter lists, walked once: a step's update reads them, and walking a module tree at
        # every step cost more than the lerp itself (benchmarks/step_host_costs.py). Module.to moves a
        # parameter's data and keeps the Parameter, so the lists stay right after a device move.
        self._trained: list[torch.Tensor] = list(model.parameters())
        self._averaged: list[torch.Tensor] = list(self.module.parameters())

    def _follow_device(self) -> None:
        if self._averaged[0].device != self._trained[0].device:
            self.module.to(self._trained[0].device)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the trained model's current weights into the average (after each optimiser step)."""
        self._follow_device()
        torch._foreach_lerp_(self._averaged, self._trained, 1.0 - self.decay)

    def averaged_model(self) -> nn.Module:
        """The copy holding θ̄, on the trained model's device."""
        self._follow_device()
        return self.module

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "average": [p.detach().cpu().clone() for p in self.module.parameters()],
                "buffers": [b.detach().cpu().clone() for b in self.module.buffers()]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        average = state["average"]
        params = list(self.module.parameters())
        if not isinstance(average, list) or len(average) != len(params) or any(
                a.shape != p.shape for a, p in zip(average, params, strict=True)):
            raise ValueError("the checkpoint's weight average does not match the model's parameters")
        buffers = state.get("buffers")  # absent from checkpoints written before the held-out loop
        own = list(self.module.buffers())
        if buffers is not None and (not isinstance(buffers, list) or len(buffers) != len(own) or any(
                b.shape != o.shape for b, o in zip(buffers, own, strict=True))):
            raise ValueError("the checkpoint's weight-average buffers do not match the model's")
        with torch.no_grad():
            for p, a in zip(params, average, strict=True):
                p.copy_(a)
            for o, b in zip(own, buffers or [], strict=False):
                o.copy_(b)
