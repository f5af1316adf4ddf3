#!/usr/bin/env bash
# Issue 7's GPU measurements as one device call of under 10 minutes (a session has 15 minutes of device time, machine
# start included, so there is no second try): most important first, each step time-boxed, every result under $OUT.
# Sessions 2 and 22 measured the bf16 rows of bert_base at batch 256 and 32 and distil_bert_base at batch 32 beside
# the peers (benchmarks/RESULTS.md); this plan measures what they left open.
#
#   here:   bash benchmarks/gpu_wheels.sh
#   device: run(command="OUT=$OUT bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=600)
#
# 1. gpu_kernel_profile.py with the library's default attention ("auto": the Pallas kernels on this GPU), bert_base
#    bf16 batch 256: the step timed and its kernels summed from a trace, by name and by kind (the evidence of what
#    limits the missed targets).
# 2. XLA's GPU options, A/B, each in a fresh process with no persistent cache (so each first step is a cold compile):
#    the same profile of bert_base bf16 batch 32 (is it launch-bound? how many kernels, how much idle time?) with the
#    default options, with Triton GEMM fusions off (cuBLAS alone: fewer autotuning candidates to compile) and with
#    autotuning off. Does either cut the cold compile (target 10 s) at the same step time?
# 3. throughput.py, flaxbert beside keras-hub and transformers in the same run: bert_base fp32 (TF32) at batch 256 and
#    32 (never measured on GPU). Each shape gets its own subprocess and time box.
# 4. Time to first step, flaxbert bert_base fp32 batch 32, with the cache from 3 warm (every program cached now, the
#    small ones too: session 22's warm 5.0 s had jax's 1 s threshold).
# 5. throughput.py, distil_bert_base bf16 batch 256, then fp32 at batch 256 and 32, while the budget lasts.
# Overrides for a CPU smoke test of the script itself (the A/B's XLA_FLAGS are GPU flags: XLA:CPU rejects them):
#   DEVICE=cpu PROFILE=bert_tiny:4:float32:xla AB=bert_tiny:4:float32:xla FP32=bert_tiny:16:float32,bert_tiny:8:float32 \
#     FIRST=bert_tiny:16:float32 DISTIL=bert_tiny:8:float32 OUT=/tmp/o bash benchmarks/gpu_session.sh
# Files: session.log, profile_gpu.txt, profile_gpu_flags.txt, throughput_gpu_fp32.json, throughput_gpu_warm.json,
# throughput_gpu_distil.json: 6, and the device tool returns at most 8, so the charts the benchmarks write beside
# their JSON are moved out of $OUT (draw them here: python benchmarks/plot.py FILES_AT/throughput_gpu_fp32.json ...).
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
CACHE=/tmp/jaxcache  # fresh on a fresh machine: the cold steps fill it
CHARTS=/tmp/charts  # the PNGs, kept off $OUT (see Files above)
END_S="${END_S:-580}"  # seconds since the start by which the script ends: the device call stops at 600
mkdir -p "$CHARTS"
charts_out() { mv "$OUT"/*.png "$CHARTS"/ 2>/dev/null; true; }  # after every step, so a cut-off run returns its JSON
left() { echo $((END_S - SECONDS)); }
PROFILE="${PROFILE:-bert_base:256:bfloat16:auto}"
AB="${AB:-bert_base:32:bfloat16:auto}"
FP32="${FP32:-bert_base:256:float32,bert_base:32:float32}"
FIRST="${FIRST:-bert_base:32:float32}"  # the shape whose warm time to first step step 4 takes (one of FP32)
DISTIL="${DISTIL:-distil_bert_base:256:bfloat16,distil_bert_base:256:float32,distil_bert_base:32:float32}"
DEVICE="${DEVICE:-gpu}"
PEERS=flaxbert,keras_hub,transformers
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import jax, flax, optax, torch, transformers; print('jax', jax.__version__, jax.devices(), 'flax',
flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
  echo "== 1. kernel profile, $PROFILE"
  timeout 70 python3 benchmarks/gpu_kernel_profile.py --variants "$PROFILE" --compilation-cache "$CACHE" \
    --out "$OUT/profile_gpu.txt"
  echo "gpu_kernel_profile.py exit status $?"
  echo "== 2. XLA options A/B, $AB, cold compiles"
  : >"$OUT/profile_gpu_flags.txt"
  for flags in "" "--xla_gpu_enable_triton_gemm=false" "--xla_gpu_autotune_level=0"; do
    XLA_FLAGS="$flags" timeout 50 python3 benchmarks/gpu_kernel_profile.py --variants "$AB" --out /tmp/ab.txt
    echo "gpu_kernel_profile.py ($flags) exit status $?"
    cat /tmp/ab.txt >>"$OUT/profile_gpu_flags.txt"; rm -f /tmp/ab.txt
  done
  echo "== 3. throughput, $FP32, $(left) s left"
  timeout 250 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$FP32" --steps 10 --repeats 1 \
    --frameworks "$PEERS" --budget-s 240 --timeout-s 120 --compilation-cache "$CACHE" \
    --json "$OUT/throughput_gpu_fp32.json"
  echo "throughput.py exit status $?"; charts_out
  echo "== 4. time to first step, warm cache, $FIRST"
  timeout 35 python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$FIRST" --steps 5 --repeats 1 \
    --frameworks flaxbert --compilation-cache "$CACHE" --json "$OUT/throughput_gpu_warm.json"
  charts_out
  LEFT=$(left)
  if ((LEFT >= 60)); then
    echo "== 5. throughput, $DISTIL, $LEFT s left"
    timeout "$LEFT" python3 benchmarks/throughput.py --device "$DEVICE" --shapes "$DISTIL" --steps 10 --repeats 1 \
      --frameworks "$PEERS" --budget-s $((LEFT - 5)) --timeout-s 80 --compilation-cache "$CACHE" \
      --json "$OUT/throughput_gpu_distil.json"
    echo "throughput.py exit status $?"; charts_out
  else
    echo "== 5. skipped: $LEFT s left"
  fi
  ls -l "$OUT"
  date -u
} 2>&1 | tee "$OUT/session.log"
