"""Host time to trace a train step with Python's garbage collector running and paused (`flaxbert/gc_pause.py`).

One process: a classifier is built, then its train step is traced and lowered afresh (jax's and flaxbert's trace
caches cleared) in interleaved rounds, with the collector as Python runs it and inside `gc_pause.paused()`, and the
abstract params (`jax.eval_shape` of the model's init) the same way. Prints one table.

    python benchmarks/trace_gc.py                                  # bert_base bf16 batch 8, 4 rounds (CPU: ~1 min)
    python benchmarks/trace_gc.py --shape bert_tiny:32:float32 --rounds 6
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time

import jax
import peers

from flaxbert import gc_pause
from flaxbert.models import abstract, layers


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="bert_base:8:bfloat16", help="model:batch:precision (benchmarks/peers.py)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    shape = peers.Shape.parse(args.shape)
    classifier = peers.flaxbert_classifier(shape.model, shape.precision)
    x, y = peers.random_inputs(shape.model, shape.batch, 128)
    train_fn, state, sums, batch, seed = peers.flaxbert_train_step(classifier, x, y)
    model, cfg = classifier.model, classifier.backbone.config
    print(f"{args.shape}: {len(gc.get_objects()):,} objects tracked by the collector after the build\n")
    times = {(part, mode): [] for part in ("abstract params", "train step trace", "train step lower")
             for mode in ("running", "paused")}  # fmt: skip
    for _ in range(args.rounds):
        for mode in ("running", "paused"):
            layers._layer_apply.cache_clear()
            jax.clear_caches()
            with gc_pause.paused() if mode == "paused" else contextlib.nullcontext():
                times["abstract params", mode].append(_timed(lambda: abstract._trace_abstract_params(model, cfg)))
                began = time.perf_counter()
                traced = train_fn.trace(state, sums, batch, seed)
                times["train step trace", mode].append(time.perf_counter() - began)
                times["train step lower", mode].append(_timed(traced.lower))
    print("| part | collector running s | paused s | running / paused (medians) |")
    print("|---|---:|---:|---:|")
    for part in ("abstract params", "train step trace", "train step lower"):
        running, paused = times[part, "running"], times[part, "paused"]
        ratio = statistics.median(running) / statistics.median(paused)
        print(f"| {part} | {_spread(running)} | {_spread(paused)} | {ratio:.2f} |")


def _spread(values) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


if __name__ == "__main__":
    main()
