"""Which precision a run trains in when its config says ``precision: auto``.

bf16 mixed precision pays only where the hardware runs bf16 arithmetic natively: a CUDA GPU that
supports it (Ampere and newer), or an x86 CPU with AVX-512 BF16 or AMX-BF16 instructions, where
oneDNN runs bf16 convolutions and matrix products on them. Elsewhere oneDNN emulates bf16 with fp32
arithmetic plus conversions, which is slower than fp32 itself, so ``auto`` trains in fp32 there.
PyTorch's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) answers yes on any AVX-512
CPU, emulation included, so the CPU's instruction flags decide here.

Only training runs in the resolved precision: every evaluation (the validation history the
convergence rules read, and the final metrics) runs in fp32 (module.py). A run's ``metrics.json``
records the precision that trained it and why (``precision``, ``precision_reason``).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Resolved:
    precision: str  # what Lightning's Trainer gets
    reason: str  # one line for metrics.json and the README's "what to expect"


def cpu_bf16_flags(cpuinfo: Path = CPUINFO) -> list[str]:
    """The native-bf16 instruction flags this CPU reports (Linux /proc/cpuinfo; none elsewhere)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def resolve(requested: str, device: torch.device, cpuinfo: Path = CPUINFO) -> Resolved:
    """The Trainer precision for ``requested`` on ``device``: explicit values pass through."""
    if requested != "auto":
        return Resolved(requested, "set in the config")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Resolved("bf16-mixed", f"auto: {torch.cuda.get_device_name(device)} supports bf16")
        return Resolved("32-true", f"auto: {torch.cuda.get_device_name(device)} has no native bf16")
    if device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64"):
        flags = cpu_bf16_flags(cpuinfo)
        if flags:
            return Resolved("bf16-mixed", f"auto: the CPU has {' and '.join(flags)}")
    return Resolved("32-true", "auto: no native bf16 on this CPU (bf16 would be emulated, slower)")
