"""The mean over DDP workers, on the device: how a training step's scalars become the global batch's."""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean over DDP workers (equal batch shares), on device; identity in one process."""
    if distributed():
        value = value.clone()
        dist.all_reduce(value)
        return value / dist.get_world_size()
    return value
