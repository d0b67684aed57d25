import os

# Triton's interpreter must be chosen before any @triton.jit runs; the kernels are imported lazily,
# so setting it here (before the tests import rd_kernels' Triton modules) is enough.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

# RD_KERNELS_TEST_DEVICE=cuda runs the same grids on CUDA tensors (compiled kernels; pair it with
# TRITON_INTERPRET=0). The default, cpu, runs the Triton code through the interpreter.
DEVICE = os.environ.get("RD_KERNELS_TEST_DEVICE", "cpu")
if DEVICE != "cpu" and not torch.cuda.is_available():
    raise pytest.UsageError(f"RD_KERNELS_TEST_DEVICE={DEVICE} but no CUDA device is visible")
