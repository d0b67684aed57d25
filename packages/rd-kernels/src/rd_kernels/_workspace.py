"""Per-device arrival counters for kernels that finish a reduction inside the same launch.

A row split across several programs is finished by the program that arrives last: each program
writes its partial sums, then increments the row's counter (an acquire-release atomic); the one that
sees ``n - 1`` reads all partials in a fixed order (a deterministic two-stage reduction) and resets
the counter to 0. So the counters are zero between launches without a memset kernel, and one
zero-filled buffer per device serves every launch on that device's streams in order.

Allocated once per (device, purpose) on first use (before any CUDA-graph capture: the warm-up call
does it), grown if a launch needs more rows. Launches that use the same buffer must not run
concurrently on two streams of one device.
"""

from __future__ import annotations

import torch

_MIN_SLOTS = 1 << 16
_counters: dict[tuple[str, torch.device], torch.Tensor] = {}


def counters(purpose: str, device: torch.device, slots: int) -> torch.Tensor:
    """A zero-initialised int32 buffer of at least ``slots`` counters for ``purpose`` on ``device``."""
    key = (purpose, device)
    buffer = _counters.get(key)
    if buffer is None or buffer.numel() < slots:
        buffer = torch.zeros(max(slots, _MIN_SLOTS), dtype=torch.int32, device=device)
        _counters[key] = buffer
    return buffer
