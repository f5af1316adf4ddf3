"""Attention alone: flaxbert's Pallas kernels vs the XLA path, forward and forward + backward, with a correctness check.

For each shape: the largest difference between the two paths' outputs and q/k/v gradients (same inputs, same dropout
mask), then the best time of each path. Run on the GPU before trusting a throughput A/B: it shows whether Triton
compiles the kernels, whether they agree with XLA there, and what attention alone gains.

    python benchmarks/attention_kernels.py                                  # GPU: bert_base heads, batch 32 and 256
    python benchmarks/attention_kernels.py --shapes 2:24:2:16 --dtype float32 --steps 2     # CPU smoke (interpreted)
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from flaxbert.models import fused_attention
from flaxbert.models.dropout import keep_mask, keep_scale
from flaxbert.models.layers import _attention_with_dropout


def xla_attention(q, k, v, padding_mask, keep, scale):
    """The encoder's XLA path (`layers.SelfAttention`) with a given mask in place of its Dropout submodule."""
    if keep is None:
        return jax.nn.dot_product_attention(
            q, k, v, mask=padding_mask[:, None, None, :].astype(bool), scale=1.0 / np.sqrt(q.shape[-1])
        )

    def given_mask(probs, deterministic):
        return jnp.where(keep, probs * scale, 0.0)

    return _attention_with_dropout(q, k, v, padding_mask[:, None, None, :].astype(bool), given_mask, q.shape[-1])


def best_time(fn, args, steps: int, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(steps):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - began) / steps)
    return best


def measure(batch, length, heads, head_dim, dtype, rate, steps) -> dict:
    rng = np.random.default_rng(0)
    q, k, v, cotangent = (jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), dtype) for _ in range(4))
    padding_mask = jnp.asarray(np.arange(length)[None, :] < rng.integers(length // 2, length + 1, (batch, 1)))
    keep = keep_mask(jax.random.key(0), (batch, heads, length, length), rate) if rate else None
    row = {"batch": batch, "length": length, "heads": heads, "head_dim": head_dim, "dtype": dtype, "dropout": rate}
    for name, attention in (("xla", xla_attention), ("pallas", fused_attention.attention)):
        forward = jax.jit(functools.partial(attention, keep=keep, scale=keep_scale(rate)) if name == "xla" else
                          functools.partial(attention, keep=keep, keep_scale=keep_scale(rate)))  # fmt: skip

        def loss(q, k, v, forward=forward):
            return jnp.sum(forward(q, k, v, padding_mask).astype(jnp.float32) * cotangent.astype(jnp.float32))

        grads = jax.jit(jax.grad(loss, (0, 1, 2)))
        row[f"{name}_outputs"] = [forward(q, k, v, padding_mask), *grads(q, k, v)]
        row[f"{name}_forward_ms"] = 1e3 * best_time(forward, (q, k, v, padding_mask), steps)
        row[f"{name}_forward_backward_ms"] = 1e3 * best_time(grads, (q, k, v), steps)
    pairs = zip(("context", "dq", "dk", "dv"), row.pop("pallas_outputs"), row.pop("xla_outputs"), strict=True)
    row["max_abs_diff"] = {n: float(jnp.max(jnp.abs(jnp.float32(a) - jnp.float32(b)))) for n, a, b in pairs}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="32:128:12:64,256:128:12:64", help="batch:length:heads:head_dim,...")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.1, 0.0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    rows = []
    print("| batch | length | heads | dropout | fwd xla ms | fwd pallas ms | fwd+bwd xla ms | fwd+bwd pallas ms | "
          "max |diff| context / dq / dk / dv |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|")  # fmt: skip
    for shape in args.shapes.split(","):
        batch, length, heads, head_dim = (int(x) for x in shape.split(":"))
        for rate in args.dropout:
            row = measure(batch, length, heads, head_dim, args.dtype, rate, args.steps)
            rows.append(row)
            diffs = " / ".join(f"{d:.2e}" for d in row["max_abs_diff"].values())
            print(f"| {batch} | {length} | {heads} | {rate} | {row['xla_forward_ms']:.3f} | "
                  f"{row['pallas_forward_ms']:.3f} | {row['xla_forward_backward_ms']:.3f} | "
                  f"{row['pallas_forward_backward_ms']:.3f} | {diffs} |", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "jax": jax.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
