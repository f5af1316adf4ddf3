"""What one train step's dropout masks cost: `flax.linen.Dropout`'s draws (`jax.random.bernoulli`) vs flaxbert's
(`flaxbert.models.dropout.keep_mask`, four 16-bit draws per threefry block), on the shapes a model's step masks.

    python benchmarks/dropout_masks.py                         # bert_tiny, batch 32, seq 128, on the default device
    python benchmarks/dropout_masks.py --model bert_base --batch 256

Each variant is one jitted program that masks and scales every dropout site's activations of a train step (embeddings,
attention probabilities, attention output and FFN output per layer, the head); best of 5 passes of 10 calls.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import peers

from flaxbert.models.dropout import keep_mask


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    main()
