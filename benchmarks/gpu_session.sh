#!/usr/bin/env bash
# Issue 7's GPU measurements as one device call of under 9.5 minutes (a session has 15 minutes of device time, machine
# start included, so there is no second try): most important first, each step time-boxed, every result under $OUT.
#
#   here:   bash benchmarks/gpu_wheels.sh
#   device: run(command="OUT=$OUT bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=600)
#
# 1. attention_kernels.py: the XLA path, cuDNN's fused attention and the Pallas kernels, attention alone (bf16,
#    bert_base heads, batch 256 then 32): do they compile, agree with XLA, and how fast are they.
# 2. throughput.py, flaxbert beside keras-hub and transformers in the same run with a cold persistent compile cache:
#    a. bert_base batch 256 (the train and predict targets); b. bert_base and distil_bert_base at batch 32. Each
#    shape gets its own subprocess and time box, so a slow compile costs its own row only (bert_base's cold train
#    step compiled in 30-35 s in session 2, and its first step took 70-85 s).
# 3. Time to first step: a. flaxbert bert_base batch 32 with the cache from 2b warm; b. cold with scan_layers (XLA
#    compiles one layer), whose step rate is in the same row.
# 4. With the time left (if 90 s or more), the whole-step A/B of the attention kernels at $BIG: flaxbert_cudnn and
#    flaxbert_pallas beside step 2a's flaxbert row (same machine, same run).
# Overrides for a CPU smoke test of the script itself (about 8 minutes; step 4 runs the Pallas kernels in their
# interpreter there and times out, as it should; END_S=300 skips it):
#   DEVICE=cpu BIG=bert_tiny:16:float32 SMALL=bert_tiny:8:float32 FIRST=bert_tiny:8:float32 \
#     ATTENTION="--shapes 2:24:2:16 --dtype float32 --steps 2 --configs 0:0" OUT=/tmp/o bash benchmarks/gpu_session.sh
# Files: session.log, attention_kernels.json, throughput_gpu_b256.json, throughput_gpu_b32.json,
# throughput_gpu_warm.json, throughput_gpu_scan.json, throughput_gpu_kernels.json: 7, and the device tool returns at
# most 8 files, so the charts the benchmarks write beside their JSON are moved out of $OUT (draw them here:
# python benchmarks/plot.py FILES_AT/throughput_gpu_b256.json ...).
set -uo pipefail
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"  # the device tool makes it; a smoke test here may name a new one
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
CHARTS=/tmp/charts  # the PNGs, kept off $OUT (see Files above)
END_S="${END_S:-570}"  # seconds since the start by which the script ends: the device call stops at 600
mkdir -p "$CHARTS"
charts_out() { mv "$OUT"/*.png "$CHARTS"/ 2>/dev/null; true; }  # after every step, so a cut-off run returns its JSON
BIG="${BIG:-bert_base:256:bfloat16}"
SMALL="${SMALL:-bert_base:32:bfloat16,distil_bert_base:32:bfloat16}"
FIRST="${FIRST:-bert_base:32:bfloat16}"  # the shape whose time to first step step 3 takes (one of SMALL)
ATTENTION="${ATTENTION:---shapes 256:128:12:64,32:128:12:64 --configs 0:0,32:4}"
DEVICE="${DEVICE:-gpu}"
PEERS=flaxbert,keras_hub,transformers
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import jax, flax, optax, torch, transformers; print('jax', jax.__version__, jax.devices(), 'flax',
flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
  echo "== 1. attention kernels"
  # shellcheck disable=SC2086  # ATTENTION is a list of arguments
  timeout 75 python3 benchmarks/attention_kernels.py $ATTENTION --json "$OUT/attention_kernels.json"
  echo "attention_kernels.py exit status $?"
  echo "== 2a. throughput, $BIG"
  timeout 180 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$BIG" --steps 20 --repeats 1 \
    --frameworks "$PEERS" --budget-s 170 --timeout-s 110 --compilation-cache "$CACHE" \
    --json "$OUT/throughput_gpu_b256.json"
  echo "throughput.py exit status $?"; charts_out
  echo "== 2b. throughput, $SMALL"
  timeout 190 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$SMALL" --steps 20 --repeats 1 \
    --frameworks "$PEERS" --budget-s 180 --timeout-s 100 --compilation-cache "$CACHE" \
    --json "$OUT/throughput_gpu_b32.json"
  echo "throughput.py exit status $?"; charts_out
  echo "== 3a. time to first step, warm cache"
  timeout 40 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$FIRST" --steps 5 --repeats 1 \
    --frameworks flaxbert --compilation-cache "$CACHE" --json "$OUT/throughput_gpu_warm.json"
  charts_out
  echo "== 3b. time to first step, cold, scan_layers"
  timeout 70 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$FIRST" --steps 10 --repeats 1 \
    --frameworks flaxbert_scan --compilation-cache "$SCAN_CACHE" --json "$OUT/throughput_gpu_scan.json"
  charts_out
  LEFT=$((END_S - SECONDS))
  if ((LEFT >= 90)); then
    echo "== 4. whole-step attention kernels, $BIG, $LEFT s left"
    timeout "$LEFT" python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$BIG" --steps 20 --repeats 1 \
      --frameworks flaxbert_cudnn,flaxbert_pallas --budget-s $((LEFT - 10)) --timeout-s $((LEFT / 2)) \
      --compilation-cache "$CACHE" --json "$OUT/throughput_gpu_kernels.json"
    echo "throughput.py exit status $?"; charts_out
  else
    echo "== 4. skipped: $LEFT s left"
  fi
  ls -l "$OUT"
  date -u
} 2>&1 | tee "$OUT/session.log"
