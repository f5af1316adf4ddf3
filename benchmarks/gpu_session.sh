#!/usr/bin/env bash
# Issue 7's GPU measurements as one device call of under 9 minutes (a session has 15 minutes of device time, machine
# start included, so there is no second try): most important first, each step time-boxed, every result under $OUT.
#
#   here:   bash benchmarks/gpu_wheels.sh
#   device: run(command="OUT=$OUT bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=600)
#
# 1. attention_kernels.py: do the Pallas kernels compile with Triton, agree with XLA there, and how fast are they.
# 2. throughput.py on the target shapes (bf16; bert_base batch 32 and 256, distil_bert_base batch 32) for flaxbert,
#    flaxbert with the Pallas kernels, keras-hub and transformers, in one run, with a cold persistent compile cache.
# 3. Time to first step with that cache warm (flaxbert, bert_base batch 32), and with scan_layers cold and warm
#    (scanned, XLA compiles one layer; since session 10 the host traces one layer either way).
# SHAPES and FIRST override the shapes (a CPU smoke test: DEVICE=cpu SHAPES=bert_tiny:8:float32 FIRST=bert_tiny:8:float32).
# Files: session.log, attention_kernels.json, throughput_gpu.json, throughput_gpu_warm.json,
# throughput_gpu_scan.json, throughput_gpu_scan_warm.json (and their charts where the image has matplotlib; otherwise
# here: python benchmarks/plot.py FILES_AT/throughput_gpu.json).
set -uo pipefail
: "${OUT:?set OUT to the output folder}"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=".:/tmp/site"
else
  echo "no .whl/: the keras-hub peer will fail (run benchmarks/gpu_wheels.sh here and carry .whl)"
  export PYTHONPATH="."
fi
CACHE=/tmp/jaxcache SCAN_CACHE=/tmp/jaxcache_scan  # fresh on a fresh machine: the cold steps fill them
SHAPES="${SHAPES:-bert_base:32:bfloat16,bert_base:256:bfloat16,distil_bert_base:32:bfloat16}"
FIRST="${FIRST:-bert_base:32:bfloat16}"  # the shape whose time to first step steps 3a-3c take
DEVICE="${DEVICE:-gpu}"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import jax, flax, optax, torch, transformers; print('jax', jax.__version__, jax.devices(), 'flax',
flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
  echo "== 1. attention kernels"
  timeout 70 python3 benchmarks/attention_kernels.py --json "$OUT/attention_kernels.json"
  echo "attention_kernels.py exit status $?"
  echo "== 2. throughput, target shapes"
  timeout 300 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$SHAPES" --steps 20 --repeats 1 \
    --frameworks flaxbert,flaxbert_pallas,keras_hub,transformers --budget-s 280 --timeout-s 120 \
    --compilation-cache "$CACHE" --json "$OUT/throughput_gpu.json"
  echo "throughput.py exit status $?"
  echo "== 3a. time to first step, warm cache"
  timeout 50 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$FIRST" --steps 5 --repeats 1 \
    --frameworks flaxbert --compilation-cache "$CACHE" --json "$OUT/throughput_gpu_warm.json"
  echo "== 3b. time to first step, cold, scan_layers"
  timeout 80 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$FIRST" --steps 10 --repeats 1 \
    --frameworks flaxbert_scan --compilation-cache "$SCAN_CACHE" --json "$OUT/throughput_gpu_scan.json"
  echo "== 3c. time to first step, warm cache, scan_layers"
  timeout 45 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$FIRST" --steps 5 --repeats 1 \
    --frameworks flaxbert_scan --compilation-cache "$SCAN_CACHE" --json "$OUT/throughput_gpu_scan_warm.json"
  date -u
} 2>&1 | tee "$OUT/session.log"
