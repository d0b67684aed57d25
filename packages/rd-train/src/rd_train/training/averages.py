r"""Averages over training steps of quantities a run reports but does not control, kept on the device.

* ``combined_gradient_norm``: mean_b ||G_b||₂ of the balanced reconstruction gradient G (module.py),
  before any norm matching, in units of the balancer's total norm. Each term alone has mean per-sample
  norm ≈ 1 after balancing, so pixel SSE alone gives ≈ 1; a neural term whose gradient disagrees with
  the pixel term's makes the sum shorter (orthogonal terms at λ = 5: √(1² + 5²) / 6 ≈ 0.85). A shorter
  G is a weaker reconstruction pressure against the same β: part of a lower rate at fixed β could be
  that, not the distortion's shape (the norm-matched control tests it).
* ``discriminator_hinge``: the PatchGAN discriminator's hinge loss mean relu(1 − D(x)) + mean
  relu(1 + D(x̂)): 2 when it cannot tell real from reconstructed (D ≡ 0), 0 when it separates them with
  margin. A value that stays away from 0 says the discriminator still learns rather than winning.

Each is averaged over two windows: every step after the rate warm-up, and the second half of training.
Device tensors only (no host synchronisation in a step); checkpointed, so a resumed run reports what an
uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import torch

NAMES = ("combined_gradient_norm", "discriminator_hinge")
WINDOWS = ("after_warmup", "second_half")


class TrainingAverages:
    def __init__(self, warmup_steps: int, max_steps: int) -> None:
        self.starts = (warmup_steps, max_steps // 2)
        self._sums = torch.zeros(len(WINDOWS), len(NAMES), 2, dtype=torch.float64)  # (Σ value, count)

    def add(self, step: int, name: str, value: torch.Tensor) -> None:
        """Fold one step's value of ``name`` (a 0-dim tensor) into every window that contains ``step``."""
        if self._sums.device != value.device:
            self._sums = self._sums.to(value.device)
        k = NAMES.index(name)
        for w, start in enumerate(self.starts):
            if step >= start:
                pair = torch.stack([value.detach().double(), value.new_ones((), dtype=torch.float64)])
                self._sums[w, k] += torch.where(torch.isfinite(pair[0]), pair, torch.zeros_like(pair))

    def summary(self) -> dict[str, dict[str, float | None]]:
        sums = self._sums.tolist()
        return {name: {window: (sums[w][k][0] / sums[w][k][1] if sums[w][k][1] else None)
                       for w, window in enumerate(WINDOWS)} for k, name in enumerate(NAMES)}

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self._sums.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sums = torch.tensor(state["sums"], dtype=torch.float64, device=self._sums.device)
