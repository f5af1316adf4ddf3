"""A/B of XLA:CPU compiler options on flaxbert's compiled train and predict steps (bert_tiny by default).

Each option set compiles flaxbert's train step (`Lowered.compile(compiler_options=...)`) and its predict step (a
fresh `jax.jit(steps.predict_step, compiler_options=...)`, so `{}` means XLA's defaults, not the options flaxbert
gives its own inference programs) and times them on device-resident batches: best of 3 passes.

    python benchmarks/cpu_compile_options.py                                   # default vs no YNNPACK fusions
    python benchmarks/cpu_compile_options.py --model bert_small --steps predict
    python benchmarks/cpu_compile_options.py --options '{}' \
        --options '{"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}'
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import numpy as np
import peers

from flaxbert.parallel import batch_sharding
from flaxbert.training import programs, steps

CANDIDATES = ({}, {"xla_cpu_experimental_ynn_fusion_type": ""})


def best_seconds(run, passes: int = 3) -> float:
    run()  # warm-up
    times = []
    for _ in range(passes):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def measure(model: str, options: dict, which: str, train_batch: int, predict_batch: int, seq: int) -> dict:
    classifier = peers.flaxbert_classifier(model, "float32")
    sharding = batch_sharding(classifier.mesh)
    x, y = peers.random_inputs(model, max(train_batch, predict_batch), seq)
    result = {}
    if which in ("both", "train"):
        (train_fn, create_state), _, _ = classifier._steps("train", True)
        batch = jax.device_put({"inputs": {k: v[:train_batch] for k, v in x.items()}, "label": y[:train_batch],
                                "weight": np.ones(train_batch, np.float32), "mask": np.ones(train_batch, np.float32)},
                               sharding)  # fmt: skip
        state, sums = create_state(classifier.params), programs.zero_totals(classifier.mesh)
        seed = programs.seed_array(0, classifier.mesh)
        compiled = train_fn.lower(state, sums, batch, seed).compile(compiler_options=options)
        carry = [state, sums]

        def train():
            for _ in range(5):
                carry[0], carry[1] = compiled(carry[0], carry[1], batch, seed)
            jax.block_until_ready(carry[1])

        result["train_examples_per_s"] = 5 * train_batch / best_seconds(train)
    if which in ("both", "predict"):
        predict_fn = jax.jit(functools.partial(steps.predict_step, model=classifier.model), compiler_options=options)
        params = classifier.params
        inputs = jax.device_put({k: v[:predict_batch] for k, v in x.items()}, sharding)
        compiled = predict_fn.lower(params, inputs).compile()
        result["predict_examples_per_s"] = (
            4
            * predict_batch
            / best_seconds(lambda: jax.block_until_ready([compiled(params, inputs) for _ in range(4)]))
        )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bert_tiny", choices=sorted(peers.MODELS))
    parser.add_argument("--steps", default="both", choices=("both", "train", "predict"))
    parser.add_argument("--options", action="append", help="a JSON dict of options; repeatable (default: A/B above)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the option sets")
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    candidates = [json.loads(o) for o in args.options] if args.options else list(CANDIDATES)
    print("| round | options | train ex/s (batch 32) | predict ex/s (batch 256) |\n|---|---|---:|---:|")
    for round_ in range(args.rounds):
        for options in candidates:
            row = measure(args.model, options, args.steps, 32, 256, args.seq)
            train, predict = row.get("train_examples_per_s"), row.get("predict_examples_per_s")
            print(f"| {round_ + 1} | `{json.dumps(options)}` | {f'{train:,.1f}' if train else ''} | "
                  f"{f'{predict:,.1f}' if predict else ''} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
