"""What one train step's dropout masks cost: `flax.linen.Dropout`'s draws (`jax.random.bernoulli`) vs flaxbert's
(`flaxbert.models.dropout.keep_mask`, four 16-bit draws per threefry block, their keep bits written as bytes, packed
elementwise or, as the models draw them on CPU, by a reduction), on the shapes a model's step masks, with the threefry
cipher written out (flaxbert's) or as jax's `threefry2x32_p` primitive (which jax lowers to a loop on CPU).

    python benchmarks/dropout_masks.py                         # bert_tiny, batch 32, seq 128, on the default device
    python benchmarks/dropout_masks.py --model bert_base --batch 256

Each variant is one jitted program that masks and scales every dropout site's activations of a train step (embeddings,
attention probabilities, attention output and FFN output per layer, the head); best of 5 passes of 10 calls. A second
table times compiling the model's whole train step (at batch 8) with each cipher, the share of time to first step
that the masks' code takes.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import peers
from jax.extend.random import threefry2x32_p

from flaxbert.models import dropout, layers
from flaxbert.models.dropout import keep_mask
from flaxbert.training import programs


def _primitive_cipher(k1, k2, x0, x1):
    return tuple(threefry2x32_p.bind(k1, k2, x0, x1))


def with_cipher(cipher, fn, *args):
    """`fn(*args)` with flaxbert's masks drawn by `cipher` while it runs (so while it traces, for a jitted `fn`)."""
    written_out = dropout.threefry2x32
    dropout.threefry2x32 = cipher
    try:
        return fn(*args)
    finally:
        dropout.threefry2x32 = written_out


CIPHERS = {"written out (flaxbert)": dropout.threefry2x32, "jax's threefry2x32_p": _primitive_cipher}


def site_shapes(model: str, batch: int, seq: int) -> list[tuple[int, ...]]:
    _, layers, heads, hidden, _ = peers.MODELS[model]
    per_layer = [(batch, heads, seq, seq), (batch, seq, hidden), (batch, seq, hidden)]
    return [(batch, seq, hidden), *per_layer * layers, (batch, hidden)]


def masks_from(draw):
    @jax.jit
    def apply(key, xs):
        keys = jax.random.split(key, len(xs))
        return [jnp.where(draw(k, x.shape), x / (1 - peers.DROPOUT), 0) for k, x in zip(keys, xs, strict=True)]

    return apply


VARIANTS = {
    "flax.linen.Dropout (jax.random.bernoulli)": masks_from(
        lambda key, shape: jax.random.bernoulli(key, 1 - peers.DROPOUT, shape)
    ),
    "flaxbert keep_mask": masks_from(lambda key, shape: keep_mask(key, shape, peers.DROPOUT)),
    "flaxbert keep_mask, packed by a reduction (as the models pack theirs on CPU)": masks_from(
        lambda key, shape: dropout.keep_bytes_together(key, [(shape, None)], peers.DROPOUT, True)[0] != 0
    ),
    "flaxbert keep_mask, jax's threefry2x32_p": masks_from(
        lambda key, shape: with_cipher(_primitive_cipher, keep_mask, key, shape, peers.DROPOUT)
    ),
}


def best_ms(apply, xs, passes: int = 5, calls: int = 10) -> float:
    key = jax.random.key(0)
    jax.block_until_ready(apply(key, xs))
    best = float("inf")
    for _ in range(passes):
        began = time.perf_counter()
        outs = [apply(jax.random.fold_in(key, i), xs) for i in range(calls)]
        jax.block_until_ready(outs)
        best = min(best, (time.perf_counter() - began) / calls)
    return best * 1e3


def train_step_compile_s(model: str, seq: int, cipher, batch: int = 8) -> tuple[float, float]:
    """(Seconds to lower, seconds to compile) flaxbert's train step for `model`, its masks drawn by `cipher`."""
    x, y = peers.random_inputs(model, batch, seq)
    data = {"inputs": x, "label": y, "weight": np.ones(batch, np.float32), "mask": np.ones(batch, np.float32)}
    classifier = peers.flaxbert_classifier(model, "float32")
    (train_fn, create_state), _, _ = classifier._steps("train", True)
    state, sums = create_state(classifier.params), programs.zero_totals(classifier.mesh)
    jax.clear_caches()  # trace again: the jitted layer function and the step are cached per function
    layers._layer_apply.cache_clear()
    began = time.perf_counter()
    lowered = with_cipher(cipher, train_fn.lower, state, sums, data, programs.seed_array(0, classifier.mesh))
    lowered_at = time.perf_counter()
    lowered.compile()
    return lowered_at - began, time.perf_counter() - lowered_at


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bert_tiny", choices=sorted(peers.MODELS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the variants")
    args = parser.parse_args()
    xs = [jnp.ones(shape, jnp.float32) for shape in site_shapes(args.model, args.batch, args.seq)]
    elements = sum(x.size for x in xs)
    print(f"{args.model}, batch {args.batch}, seq {args.seq}: {len(xs)} dropout sites, {elements / 1e6:.1f}M "
          f"elements, on {jax.devices()[0].device_kind}\n")  # fmt: skip
    print("| round | masks drawn by | ms per step |\n|---|---|---:|")
    for round_ in range(args.rounds):
        for name, apply in VARIANTS.items():
            print(f"| {round_ + 1} | {name} | {best_ms(apply, xs):.1f} |", flush=True)
    print(f"\n{args.model}'s train step (batch 8, seq {args.seq}) traced, lowered and compiled, by cipher\n")
    print("| round | cipher | lower s | compile s |\n|---|---|---:|---:|")
    for round_ in range(args.rounds):
        for name, cipher in CIPHERS.items():
            lower_s, compile_s = train_step_compile_s(args.model, args.seq, cipher)
            print(f"| {round_ + 1} | {name} | {lower_s:.2f} | {compile_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
