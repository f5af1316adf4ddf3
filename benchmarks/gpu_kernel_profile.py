"""GPU kernel profile of the bert_base batch-256 bf16 train step.

Step time for variants (baseline, dropout 0, rbg PRNG, one layer), then a perfetto trace of the baseline summed per
kernel name: `python3 benchmarks/gpu_kernel_profile.py variants` (output: benchmarks/results/profile_step_gpu.txt).
"""

import glob
import gzip
import json
import os
import sys
import time
from collections import defaultdict

import jax
import numpy as np
import optax

import flaxbert
from flaxbert.parallel import batch_sharding
from flaxbert.training import loops

SEQ = 128
OUT = os.environ.get("OUT", "/tmp/out")


def batch(b, rng):
    ids = rng.integers(1000, 30000, (b, SEQ)).astype(np.int32)
    return {
        "inputs": {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)},
        "label": rng.integers(0, 2, (b,)).astype(np.int32),
        "weight": np.ones((b,), np.float32),
        "mask": np.ones((b,), np.float32),
    }


def build(b, dropout, layers=12):
    bb = flaxbert.BertBackbone(30522, layers, 12, 768, 3072, dropout=dropout, dtype="bfloat16")
    clf = flaxbert.BertTextClassifier(bb, num_classes=2, preprocessor=None, dropout=dropout)
    tx = optax.adamw(5e-5)
    clf.compile(optimizer=tx)
    _, sh = loops.state_shardings(clf.model, bb.config, tx, clf.mesh)
    state = loops.create_state(clf.params, tx, sh)
    train = loops.jit_train_step(clf.model, clf.mesh, sh, loss_fn=clf.loss)
    data = jax.device_put(batch(b, np.random.default_rng(0)), batch_sharding(clf.mesh))
    return train, state, loops.zero_totals(clf.mesh), data, loops.seed_array(0, clf.mesh)


def timed(name, b, dropout, steps=20, trace=False, layers=12):
    train, state, sums, data, seed = build(b, dropout, layers)
    t0 = time.perf_counter()
    train = train.lower(state, sums, data, seed).compile()
    tc = time.perf_counter() - t0
    for _ in range(3):
        state, m = train(state, sums, data, seed)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = train(state, sums, data, seed)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / steps
    print(f"{name}: layers {layers} b{b} compile {tc:.1f}s step {dt * 1e3:.1f} ms = {b / dt:,.0f} ex/s", flush=True)
    if trace:
        tdir = "/tmp/trace"
        with jax.profiler.trace(tdir, create_perfetto_trace=True):
            for _ in range(5):
                state, m = train(state, sums, data, seed)
            jax.block_until_ready(m)
        path = glob.glob(f"{tdir}/**/perfetto_trace.json.gz", recursive=True)[0]
        with gzip.open(path) as f:
            events = json.load(f)
        events = events["traceEvents"] if isinstance(events, dict) else events
        threads = {}
        for e in events:
            if e.get("ph") == "M" and e.get("name") == "thread_name":
                threads[(e["pid"], e["tid"])] = e["args"]["name"]
        per = defaultdict(float)
        count = defaultdict(int)
        total = 0.0
        for e in events:
            if e.get("ph") != "X":
                continue
            tname = threads.get((e["pid"], e["tid"]), "")
            if "Stream" not in tname and "stream" not in tname:
                continue
            per[e["name"]] += e["dur"]
            count[e["name"]] += 1
            total += e["dur"]
        print(f"GPU kernel time per step: {total / 5 / 1e3:.1f} ms over {sum(count.values()) / 5:.0f} kernels")
        for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:40]:
            print(f"{v / 5 / 1e3:8.2f} ms {count[k] // 5:4d}x  {k[:110]}")
        os.system(f"cp {path} {OUT}/")


mode = sys.argv[1]
if mode == "variants":
    timed("baseline", 256, 0.1, trace=True)
    timed("dropout0", 256, 0.0)
    jax.config.update("jax_default_prng_impl", "rbg")
    timed("rbg", 256, 0.1)
    timed("rbg-1layer", 256, 0.1, layers=1)
if mode == "smoke":
    timed("smoke", 4, 0.1, steps=2, trace=True, layers=1)
