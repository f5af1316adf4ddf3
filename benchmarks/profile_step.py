"""Where flaxbert's compiled train and predict steps spend their time: XLA's cost and memory analysis, then the
slowest ops of a `jax.profiler` trace (summed over the traced steps, per step).

    python benchmarks/profile_step.py                           # bert_tiny, train batch 32, predict batch 256
    python benchmarks/profile_step.py --shape bert_base:256:bfloat16 --top 25
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import tempfile

import jax
import peers

import flaxbert
from flaxbert.parallel import batch_sharding


def top_ops(run, steps: int, top: int) -> list[tuple[str, float]]:
    """(op name, milliseconds per step) of the `top` slowest trace events while `run()` runs `steps` steps."""
    with tempfile.TemporaryDirectory() as directory:
        jax.profiler.start_trace(directory, create_perfetto_trace=True)
        run()
        jax.profiler.stop_trace()
        trace = next(pathlib.Path(directory).rglob("*.trace.json.gz"))
        with gzip.open(trace) as f:
            events = json.load(f)["traceEvents"]
    total = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith("$"):  # "$..." are Python frames
            total[event["name"]] += event.get("dur", 0) / 1000 / steps
    return total.most_common(top)


def report(name, compiled, run, steps, top):
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    print(f"\n## {name}: {cost.get('flops', 0) / 1e9:,.1f} GFLOP, {cost.get('bytes accessed', 0) / 2**20:,.0f} MiB "
          f"accessed per step (XLA cost analysis)")  # fmt: skip
    print(compiled.memory_analysis())
    run()  # warm-up
    print("\n| op | ms per step |\n|---|---:|")
    for op, ms in top_ops(run, steps, top):
        print(f"| {op} | {ms:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="bert_tiny:32:float32")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    shape = peers.Shape.parse(args.shape)
    classifier = peers.flaxbert_classifier(shape.model, shape.precision)
    sharding = batch_sharding(classifier.mesh)
    x, y = peers.random_inputs(shape.model, max(256, shape.batch), args.seq)

    first = {k: v[: shape.batch] for k, v in x.items()}
    train_fn, state, sums, batch, seed = peers.flaxbert_train_step(classifier, first, y[: shape.batch])
    state, sums = [state], [sums]  # boxes the step loop below reassigns

    def train():
        for _ in range(args.steps):
            state[0], sums[0] = train_fn(state[0], sums[0], batch, seed)
        jax.block_until_ready(sums[0])

    compiled = train_fn.lower(state[0], sums[0], batch, seed).compile()
    report(f"train step, batch {shape.batch}", compiled, train, args.steps, args.top)

    predict_fn, params = classifier._inference_step("predict")[:2]  # the params as `predict` gives them
    inputs = jax.device_put(x, sharding)

    def predict():
        jax.block_until_ready([predict_fn(params, inputs) for _ in range(args.steps)])

    report(f"predict step, batch {len(y)}", predict_fn.lower(params, inputs).compile(), predict, args.steps, args.top)


if __name__ == "__main__":
    flaxbert.reuse_host_memory()  # as flaxbert runs on CPU (a no-op elsewhere); before jax computes anything
    main()
