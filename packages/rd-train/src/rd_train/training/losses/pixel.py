"""Pixel SSE: Σ over pixels and channels of (x - x̂)², averaged over the batch (spec eq. 21)."""

import torch


def pixel_sse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return (x_hat.float() - x.float()).pow(2).flatten(1).sum(dim=1).mean()
