"""Which implementation runs: the Triton kernels or the PyTorch reference.

``auto`` (the default) runs Triton on CUDA tensors and the reference on CPU. ``RD_KERNELS_BACKEND``
(or a call's ``backend=`` argument) forces either; forcing Triton on CPU tensors needs Triton's
interpreter (``TRITON_INTERPRET=1`` set before Triton is imported), which is how CI tests kernels.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

Backend = Literal["auto", "triton", "reference"]
ENV_VAR = "RD_KERNELS_BACKEND"
_CHOICES = ("auto", "triton", "reference")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(backend: str | None, tensor: torch.Tensor) -> Literal["triton", "reference"]:
    choice = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    if choice not in _CHOICES:
        source = "backend argument" if backend is not None else ENV_VAR
        raise ValueError(f"{source} must be one of {_CHOICES}, got {choice!r}")
    if choice == "reference":
        return "reference"
    if choice == "auto":
        return "triton" if tensor.is_cuda and triton_available() else "reference"
    if not triton_available():
        raise RuntimeError("backend 'triton' requested but triton is not installed (pip install triton)")
    if not tensor.is_cuda and not interpreter_enabled():
        raise RuntimeError(
            "backend 'triton' on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
            "before importing triton, or move the tensors to a CUDA device"
        )
    return "triton"


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_floating(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (fp16, bf16, fp32, fp64), got {tensor.dtype}")
