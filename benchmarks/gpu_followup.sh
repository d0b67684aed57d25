#!/usr/bin/env bash
# A second, short GPU call: the training-step benchmark timed inside the fit (after warm-up; the first
# session's two-fit difference counted CUDA start-up and compilation), and where a fused call's time goes.
set -u
OUT=${OUT:-/tmp/gpu-followup}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/packages/rd-theory/src:$PWD/packages/rd-kernels/src:$PWD/packages/rd-train/src:$PWD/.gpu/site"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TRITON_INTERPRET=0
timeout 60 python3 benchmarks/dispatch_overhead.py --out "$OUT/dispatch.json" > "$OUT/dispatch.txt" 2>&1
echo "dispatch: exit $?"; cat "$OUT/dispatch.txt" | grep " us "
BASELINE=()
[ -d .gpu/baseline ] && BASELINE=(--baseline-src .gpu/baseline)
timeout 150 python3 benchmarks/training_step.py --out "$OUT/training.json" "${BASELINE[@]}" > "$OUT/training.txt" 2>&1
echo "training: exit $?"; grep "ms/step" "$OUT/training.txt"
