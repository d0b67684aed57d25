"""PyTorch reference (and CPU path) for the balancer's two multi-tensor steps."""

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


def weighted_sum(grads: Sequence[torch.Tensor], scales: Sequence[float]) -> torch.Tensor:
    """Σ_k s_k g_k, accumulated in fp32 and returned in the gradients' dtype."""
    total = torch.zeros_like(grads[0], dtype=torch.float32)
    for g, s in zip(grads, scales, strict=True):
        total.add_(g.float(), alpha=float(s))
    return total.to(grads[0].dtype)
