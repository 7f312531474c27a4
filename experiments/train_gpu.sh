#!/usr/bin/env bash
# The meta-model's GPU configuration, in two stages sized for a lent GPU
# machine's 10-minute calls (the README's "Meta-model" section gives the
# commands and the figures they produced):
#
#   experiments/train_gpu.sh data MINUTES    generate programs for MINUTES on every
#                                            core, read each model once (the cache),
#                                            time 300 steps of the GPU configuration
#   experiments/train_gpu.sh train MINUTES STEPS
#                                            train the GPU configuration (bf16 autocast
#                                            on CUDA) for STEPS or MINUTES, export it
#
# The distribution is the CPU checkpoint's (`--seed 0`, the same sampler flags),
# so the CPU checkpoint's 24,000 programs are the first of these. Environment:
# DATA (dataset, default data/gpu), RUN (training checkpoints, default runs),
# RESULTS (exported checkpoint, log and the packed cache, default runs/gpu-out).
# A packed cache under $RESULTS/cache.tar.xz.* is unpacked when DATA has none,
# so the train stage can run on another machine than the data stage.
# It needs the project's dependencies: on a machine that has torch, numpy and
# JAX but not the rest (the lent GPU machines), install wheels of tracr-pypi,
# dm-haiku, jmp and z3-solver first (`pip install --target DIR`, DIR on
# PYTHONPATH).
set -euo pipefail

DATA=${DATA:-data/gpu}
RUN=${RUN:-runs}
RESULTS=${RESULTS:-runs/gpu-out}
PY=${PY:-python}
CORES=$(nproc)
mkdir -p "$RUN" "$RESULTS"

# Width 256, 6 layers, 8 heads: 4.8M parameters (the CPU checkpoint: 0.7M).
GPU_MODEL=(--width 256 --layers 6 --heads 8 --batch-size 256 --lr 5e-4 --warmup 1000)

case "${1:-}" in
data)
    minutes=${2:?minutes of generation}
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    start=$(date +%s)
    $PY -m raspsynth.cli data generate --n 1000000 --out "$DATA" --workers "$CORES" --seed 0 \
        --max-ops 12 --vocab-size 3 10 --max-seq-len 4 10 --coefficients -3 -2 -1 1 2 3 \
        --max-minutes "$minutes" 2>&1 | tr '\r' '\n' | grep -v '^programs:' || true
    echo "generated in $(($(date +%s) - start)) s"
    start=$(date +%s)
    $PY -m raspsynth.cli train --data "$DATA" --out "$RUN/cache-only.pt" --steps 0 --workers "$CORES" \
        2>&1 | tr '\r' '\n' | grep -v '^reading' || true
    echo "read in $(($(date +%s) - start)) s"
    rm -f "$RUN/cache-only".*
    start=$(date +%s)
    $PY -m raspsynth.cli train --data "$DATA" --out "$RUN/probe.pt" --steps 300 --val-every 300 \
        "${GPU_MODEL[@]}" 2>&1 | tr '\r' '\n' | tail -2
    echo "300 steps (with one validation) in $(($(date +%s) - start)) s"
    rm -f "$RUN/probe".*
    tar -C "$DATA" -cf - manifest.json cache | xz -1 -T"$CORES" | split -b 15M - "$RESULTS/cache.tar.xz."
    ls -l "$RESULTS"
    ;;
train)
    minutes=${2:?minutes of training}
    steps=${3:?steps}
    if [ ! -d "$DATA/cache" ]; then
        mkdir -p "$DATA"
        cat "$RESULTS"/cache.tar.xz.* | xz -d | tar -C "$DATA" -xf -
    fi
    $PY -m raspsynth.cli train --data "$DATA" --out "$RUN/gpu.pt" --steps "$steps" --val-every 500 \
        --max-minutes "$minutes" "${GPU_MODEL[@]}" 2>&1 | tr '\r' '\n' | grep -v '^train:' || true
    $PY -m raspsynth.cli export-checkpoint "$RUN/gpu.best.pt" "$RESULTS/meta_model_gpu.pt"
    cp "$RUN/gpu.csv" "$RESULTS/train_gpu.csv"
    cat "$RESULTS/train_gpu.csv"
    ;;
*)
    echo "usage: $0 data MINUTES | train MINUTES STEPS" >&2
    exit 2
    ;;
esac
