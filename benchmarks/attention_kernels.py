"""Attention alone: flaxbert's Pallas kernels and cuDNN's vs the XLA path, forward and forward + backward, checked.

For each shape: the largest difference between each path's outputs and q/k/v gradients and the XLA path's (same
inputs, same dropout mask), then the best time of each path. cuDNN's kernel (`attention_kernel="cudnn"`) runs only
where no dropout applies, so it has rows at dropout 0 only; where it does not apply (CPU, float32) its row is the
XLA path again. Run on the GPU before trusting a throughput A/B: it shows whether Triton compiles the kernels,
whether they agree with XLA there, and what attention alone gains.

    python benchmarks/attention_kernels.py      # GPU: bert_base heads, batch 32 and 256, 5 kernel configurations
    python benchmarks/attention_kernels.py --shapes 2:24:2:16 --dtype float32 --steps 2 --configs 0:0:0,16:0:1  # CPU
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
from flaxbert.models.layers import attention_with_dropout, attention_without_dropout


def xla_attention(q, k, v, padding_mask, keep, scale):
    """The encoder's XLA path (`layers.SelfAttention`) with a given keep mask, `scale` = `keep_scale(rate)`."""
    if keep is None:
        return attention_without_dropout(q, k, v, padding_mask)
    return attention_with_dropout(q, k, v, padding_mask, keep, 1.0 - 1.0 / scale, q.shape[-1])


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


def cudnn_attention(q, k, v, padding_mask, keep, scale):
    assert keep is None, "cuDNN's path runs without dropout"
    return attention_without_dropout(q, k, v, padding_mask, cudnn=True)


def paths(configs: list[tuple[int, int, int]], rate: float):
    """(label, attention function) for the XLA path, cuDNN's (without dropout) and the Pallas kernels at each
    (block rows, warps, backward kernels: 1 or 2); 0: the default."""
    yield "xla", xla_attention
    if not rate:
        yield "cudnn", cudnn_attention
    for rows, warps, backward in configs:  # attention(q, k, v, padding_mask, keep, keep_scale): positional as XLA's
        one = {0: None, 1: True, 2: False}[backward]
        kernels = functools.partial(fused_attention.attention, block_rows=rows or None, warps=warps or None,
                                    one_backward_kernel=one)  # fmt: skip
        label = f"pallas, block_rows={rows or 'default'}, warps={warps or 'default'}, backward={backward or 'default'}"
        yield label, kernels


def measure(batch, length, heads, head_dim, dtype, rate, steps, configs) -> list[dict]:
    """One row per path: forward and forward + backward ms, and the largest differences from the XLA path."""
    rng = np.random.default_rng(0)
    q, k, v, cotangent = (jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), dtype) for _ in range(4))
    padding_mask = jnp.asarray(np.arange(length)[None, :] < rng.integers(length // 2, length + 1, (batch, 1)))
    keep = keep_mask(jax.random.key(0), (batch, heads, length, length), rate) if rate else None
    rows, reference = [], None
    for label, attention in paths(configs, rate):
        # Every array is an argument (a closed-over one would be compiled into the program as a constant).
        forward = jax.jit(lambda q, k, v, m, keep, f=attention: f(q, k, v, m, keep, keep_scale(rate)))

        def loss(q, k, v, m, keep, cotangent, forward=forward):
            return jnp.sum(forward(q, k, v, m, keep).astype(jnp.float32) * cotangent.astype(jnp.float32))

        grads = jax.jit(jax.grad(loss, (0, 1, 2)))
        row = {"path": label, "batch": batch, "length": length, "heads": heads, "head_dim": head_dim, "dtype": dtype,
               "dropout": rate}  # fmt: skip
        try:
            outputs = [forward(q, k, v, padding_mask, keep), *grads(q, k, v, padding_mask, keep, cotangent)]
            row["forward_ms"] = 1e3 * best_time(forward, (q, k, v, padding_mask, keep), steps)
            row["forward_backward_ms"] = 1e3 * best_time(grads, (q, k, v, padding_mask, keep, cotangent), steps)
        except Exception as error:  # a kernel Triton cannot compile: show it and go on
            rows.append(dict(row, error=f"{type(error).__name__}: {str(error)[:300]}"))
            continue
        reference = reference or outputs
        pairs = zip(("context", "dq", "dk", "dv"), outputs, reference, strict=True)
        row["max_abs_diff_vs_xla"] = {n: float(jnp.max(jnp.abs(jnp.float32(a) - jnp.float32(b)))) for n, a, b in pairs}
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="32:128:12:64,256:128:12:64", help="batch:length:heads:head_dim,...")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.1, 0.0])
    parser.add_argument("--configs", default="0:0:0,0:0:2,32:8:1,32:4:1,0:8:2",
                        help="block_rows:warps:backward kernels (1 or 2),... (0: the default; block_rows and warps "
                             "apply to every kernel)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print("| batch | length | heads | dropout | path | fwd ms | fwd+bwd ms | max abs diff vs xla (out/dq/dk/dv) |")
    print("|---:|---:|---:|---:|---|---:|---:|---|")
    rows = []
    for shape in args.shapes.split(","):
        batch, length, heads, head_dim = (int(x) for x in shape.split(":"))
        for rate in args.dropout:
            configs = [tuple(int(x) for x in f"{c}:0:0".split(":")[:3]) for c in args.configs.split(",")]
            for row in measure(batch, length, heads, head_dim, args.dtype, rate, args.steps, configs):
                rows.append(row)
                if "error" in row:
                    times, diffs = "failed |", row["error"][:120]
                else:
                    times = f"{row['forward_ms']:.3f} | {row['forward_backward_ms']:.3f}"
                    diffs = " / ".join(f"{d:.1e}" for d in row["max_abs_diff_vs_xla"].values())
                print(f"| {batch} | {length} | {heads} | {rate} | {row['path']} | {times} | {diffs} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "jax": jax.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
