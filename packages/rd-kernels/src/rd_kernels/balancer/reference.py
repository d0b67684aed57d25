"""PyTorch reference (and CPU path) for the balancer's steps, on device tensors, without host syncs."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def grad_norms(grads: Sequence[torch.Tensor], per_batch_item: bool) -> torch.Tensor:
    """(K,) fp32: the mean over the batch of per-item ℓ2 norms, or each gradient's global norm."""
    out = []
    for g in grads:
        g32 = g.float()
        out.append(g32.flatten(1).norm(dim=1).mean() if per_batch_item else g32.norm())
    return torch.stack(out)


def update_and_scale(
    norms: torch.Tensor,
    ema_sum: torch.Tensor,
    ema_weight: torch.Tensor,
    nonfinite: torch.Tensor,
    slots: torch.Tensor,
    factors: torch.Tensor,
    decay: float,
    epsilon: float,
    balance: bool,
) -> torch.Tensor:
    """Fold this step's norms into the EMA (in place, at ``slots``) and return the K scales.

    A non-finite norm leaves its EMA untouched and is counted in ``nonfinite``: the state never
    absorbs a NaN, and the caller reports it at its next synchronisation.
    """
    finite = torch.isfinite(norms)
    old_sum, old_weight = ema_sum[slots], ema_weight[slots]
    new_sum = torch.where(finite, decay * old_sum + torch.where(finite, norms, 0.0), old_sum)
    new_weight = torch.where(finite, decay * old_weight + 1.0, old_weight)
    ema_sum[slots] = new_sum
    ema_weight[slots] = new_weight
    nonfinite[slots] += (~finite).to(nonfinite.dtype)
    if not balance:
        return factors.clone()
    return factors / (epsilon + new_sum / new_weight)


def weighted_sum(grads: Sequence[torch.Tensor], scales: torch.Tensor) -> torch.Tensor:
    """Σ_k s_k g_k, accumulated in fp32 and returned in the gradients' dtype (``scales`` on device)."""
    total = torch.zeros_like(grads[0], dtype=torch.float32)
    for k, g in enumerate(grads):
        total.add_(g.float() * scales[k])
    return total.to(grads[0].dtype)
