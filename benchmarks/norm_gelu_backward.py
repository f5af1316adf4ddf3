"""What flaxbert's LayerNorm and GELU save for the backward pass, against flax's and jax's differentiated automatically.

For each shape, the classifier's compiled train step twice: with flaxbert's LayerNorm and GELU (whose backward passes
keep only their inputs: `flaxbert/models/layer_norm.py`, `activations.py`) and with flax's `nn.LayerNorm` and
`jax.nn.gelu` (`peers.autodiff_norm_and_gelu`, flaxbert's before session 23). It prints XLA's temporary memory for
the step (`memory_analysis`: the activations kept for the backward pass are most of it) and, with `--steps`, the
step's time (best of 3 passes, the arms alternating).

    python benchmarks/norm_gelu_backward.py                                 # bert_base batch 32, bf16 and fp32
    python benchmarks/norm_gelu_backward.py --shapes bert_tiny:32:float32 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax
import peers

SEQ = 128
ARMS = {"flaxbert": contextlib.nullcontext, "autodiff": peers.autodiff_norm_and_gelu}


def build(shape, arm: str):
    """(step(n), temporary MiB): the arm's train step on one device-resident batch, and its compiled temp memory."""
    with ARMS[arm]():
        classifier = peers.flaxbert_classifier(shape.model, shape.precision)
        train, state, sums, batch, seed = peers.flaxbert_train_step(
            classifier, *peers.random_inputs(shape.model, shape.batch, SEQ)
        )
        compiled = train.lower(state, sums, batch, seed).compile()  # traced with the arm's layers
    temp_mib = compiled.memory_analysis().temp_size_in_bytes / 2**20
    return peers.step_loop(compiled, state, sums, batch, seed), temp_mib


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="bert_base:32:bfloat16,bert_base:32:float32")
    parser.add_argument("--steps", type=int, default=0, help="also time this many steps per pass (0: memory only)")
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, seq {SEQ}\n")
    print("| model | batch | precision | arm | temp MiB | step ms |")
    print("|---|---:|---|---|---:|---:|")
    for text in args.shapes.split(","):
        shape = peers.Shape.parse(text)
        built = {arm: build(shape, arm) for arm in ARMS}
        best = dict.fromkeys(ARMS, float("inf"))
        for _ in range(3 if args.steps else 0):
            for arm, (steps, _) in built.items():
                steps(1)
                began = time.perf_counter()
                steps(args.steps)
                best[arm] = min(best[arm], 1e3 * (time.perf_counter() - began) / args.steps)
        for arm, (_, temp) in built.items():
            step = f"{best[arm]:.1f}" if args.steps else ""
            print(f"| {shape.model} | {shape.batch} | {shape.precision} | {arm} | {temp:,.1f} | {step} |", flush=True)


if __name__ == "__main__":
    main()
