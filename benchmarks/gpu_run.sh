#!/usr/bin/env bash
# The GPU throughput matrix, in under 8 minutes: bert_base and distil_bert_base, batch 32 and 256, bfloat16 and
# float32, for flaxbert, keras-hub and transformers (12 subprocesses). Run from the repository root on the GPU machine:
#
#     OUT=/path/to/out PYTHONPATH=/tmp/site bash benchmarks/gpu_run.sh      # /tmp/site: keras + keras-hub wheels
#
# FRAMEWORKS=flaxbert,flaxbert_scan compares unrolled and scanned encoder layers (time to first step, step rate);
# FRAMEWORKS=flaxbert,flaxbert_pallas compares XLA attention with flaxbert's Pallas kernels.
# Writes $OUT/throughput_gpu.json and $OUT/throughput_gpu.log. No new subprocess starts after BUDGET_S seconds (a
# skipped shape shows as "skipped: out of time budget"); one subprocess may run for at most GROUP_TIMEOUT_S.
set -uo pipefail
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
BUDGET_S="${BUDGET_S:-400}"
GROUP_TIMEOUT_S="${GROUP_TIMEOUT_S:-150}"
FRAMEWORKS="${FRAMEWORKS:-flaxbert,keras_hub,transformers}"
LOG="$OUT/throughput_gpu.log"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())" || true
  timeout 470 python3 benchmarks/throughput.py --device gpu --frameworks "$FRAMEWORKS" --steps 20 --repeats 1 \
    --budget-s "$BUDGET_S" --timeout-s "$GROUP_TIMEOUT_S" --json "$OUT/throughput_gpu.json"
  echo "throughput.py exit status $?"
  date -u
} 2>&1 | tee "$LOG"
