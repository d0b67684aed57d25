"""Counting what a piece of code asks of the device, without a GPU (used by the tests).

`DispatchLog` records every ATen op (and custom op) dispatched while it is active, except those
dispatched from inside Triton's interpreter: on a GPU those are the kernel launch itself (the
interpreter copies tensors to and from NumPy around each kernel), so what remains is what the code
would dispatch besides its kernels.

`host_syncs` counts reads of device values on the host: ``_local_scalar_dense`` (``.item()``,
``float()``, ``bool()``, ``if tensor:``), ``.tolist()`` / ``.numpy()``, and copies to the CPU from
another device. On CPU tensors these are not synchronisations, but the same calls are on a GPU,
so a count of zero on CPU means none on a GPU. (On a GPU, ``torch.cuda.set_sync_debug_mode`` checks
the same thing directly.)

`copy_bandwidth_gbps` measures, on a GPU, the ceiling the benchmarks report the kernels against.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

VIEWS_AND_ALLOCATIONS = frozenset(
    {
        "aten.empty.memory_format",
        "aten.empty_strided.default",
        "aten.empty_like.default",
        "aten.view.default",
        "aten._unsafe_view.default",
        "aten.detach.default",
        "aten.alias.default",
        "aten.select.int",
        "aten.slice.Tensor",
        "aten.as_strided.default",
        "aten.expand.default",
        "aten.reshape.default",
        "aten.squeeze.dim",
        "aten.unsqueeze.default",
        "aten.t.default",
    }
)
HOST_READS = frozenset({"aten._local_scalar_dense.default", "aten.item.default"})


def _inside_triton_interpreter(frame: FrameType | None) -> bool:
    while frame is not None:
        if "triton/runtime/interpreter" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class DispatchLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.host_reads: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not _inside_triton_interpreter(sys._getframe(1)):
            name = str(func)
            self.ops.append(name)
            if name in HOST_READS or _is_copy_to_host(name, args, kwargs or {}):
                self.host_reads.append(name)
        return func(*args, **(kwargs or {}))

    def compute_ops(self) -> list[str]:
        """Dispatched ops that are neither allocations nor views, custom ops excluded."""
        return [op for op in self.ops if op.startswith("aten.") and op not in VIEWS_AND_ALLOCATIONS]


def _is_copy_to_host(name: str, args: Any, kwargs: dict[str, Any]) -> bool:
    if name == "aten._to_copy.default":
        source, target = args[0], kwargs.get("device")
        return target is not None and torch.device(target).type == "cpu" and source.device.type != "cpu"
    if name == "aten.copy_.default":
        target, source = args[0], args[1]
        return target.device.type == "cpu" and source.device.type != "cpu"
    return False


@contextmanager
def host_syncs() -> Iterator[list[str]]:
    """Yield a list that fills with every host read of a device value made inside the block."""
    found: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy", "item")}

    def watching(name: str) -> Any:
        original = originals[name]

        def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not _inside_triton_interpreter(sys._getframe(1)):
                found.append(f"Tensor.{name}")
            return original(self, *args, **kwargs)

        return wrapper

    for name in originals:
        setattr(torch.Tensor, name, watching(name))
    try:
        with DispatchLog() as log:
            yield found
        found.extend(log.host_reads)
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def copy_bandwidth_gbps(device: str | torch.device = "cuda") -> float:
    """Device-to-device copy of 1 GiB: bytes read plus written per second, in GB/s (do_bench median)."""
    import triton.testing

    src = torch.randn(256 * 2**20, device=device)
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9
