import os

# Triton's interpreter must be chosen before any @triton.jit runs; the kernels are imported lazily,
# so setting it here (before the tests import rd_kernels' Triton modules) is enough.
os.environ.setdefault("TRITON_INTERPRET", "1")
