"""What the parts of the bert_tiny CPU train step cost on their own: its matmul shapes under jax (XLA:CPU with its
default, no-YNNPACK-fusion and oneDNN options), torch and numpy, the AdamW update of its 4.4M params, one layer's
feed-forward block with its dense layers on 3-D and on flattened operands, and one layer's attention block in predict
(batch 256) and training (batch 32, dropout 0.1, forward and backward): flaxbert's as it runs against torch's
`scaled_dot_product_attention` (what transformers' BERT calls) and torch's unfused math, and whether XLA spreads one
batched product over the cores (the same product pinned to one core, and two at once from two threads, beside torch's
`bmm` on one thread and on all).

The step (batch 32, seq 128) does 11.9 GFLOP: 9.7 in dense [4096, 128|512] matmuls (forward, input gradient as
"NT", weight gradient as "TN"), 1.6 in the attention's 64 batched [128, 64] x [64, 128] products per layer.

    python benchmarks/cpu_step_parts.py

Under `flaxbert.reuse_host_memory()`, as flaxbert's CPU runs (without it the AdamW update re-faults its temporary
buffers' pages every call).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import peers
import torch
from attention_kernels import xla_attention
from jax import lax

import flaxbert
from flaxbert.compilation import inference_compiler_options
from flaxbert.models.dropout import keep_mask, keep_scale
from flaxbert.models.layers import Projection
from flaxbert.parallel import make_mesh

OPTIONS = {
    "default": None,
    "no YNN fusions": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "oneDNN": {"xla_cpu_use_onednn": True},
}
# (label, lhs shape, rhs shape, (lhs contracting, rhs contracting), (lhs batch, rhs batch))
MATMULS = [
    ("FFN in, forward [4096,128]x[128,512]", (4096, 128), (128, 512), ((1,), (0,)), ((), ())),
    ("FFN out, forward [4096,512]x[512,128]", (4096, 512), (512, 128), ((1,), (0,)), ((), ())),
    ("FFN in, input grad (NT) [4096,512]x[128,512]^T", (4096, 512), (128, 512), ((1,), (1,)), ((), ())),
    ("FFN in, weight grad (TN) [4096,128]^T x[4096,512]", (4096, 128), (4096, 512), ((0,), (0,)), ((), ())),
    ("projection [4096,128]x[128,128]", (4096, 128), (128, 128), ((1,), (0,)), ((), ())),
    ("attention scores, 64 x [128,64]x[64,128]", (64, 128, 64), (64, 128, 64), ((2,), (2,)), ((0,), (0,))),
    ("attention context, 64 x [128,128]x[128,64]", (64, 128, 128), (64, 128, 64), ((2,), (1,)), ((0,), (0,))),
]


def best_ms(fn, repeats: int = 5, number: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(number):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - began) / number)
    return best * 1e3


def matmul_rates() -> None:
    rng = np.random.default_rng(0)
    print("| matmul | MFLOP | " + " | ".join(f"jax {o}" for o in OPTIONS) + " | torch | numpy |")
    print("|---|---:|" + "---:|" * (len(OPTIONS) + 2))
    for label, lhs_shape, rhs_shape, contracting, batch in MATMULS:
        a, b = (rng.standard_normal(s).astype(np.float32) for s in (lhs_shape, rhs_shape))
        mflop, rates = _rates(a, b, (contracting, batch))
        print(f"| {label} | {mflop:.0f} | " + " | ".join(f"{r:.0f}" for r in rates) + " |", flush=True)
    print("(GFLOP/s, best of 5 x 20 calls)")


def _rates(a, b, dimensions) -> tuple[float, list[float]]:
    """MFLOP of the product and its GFLOP/s under each jax option set, torch and numpy."""
    contracting = dimensions[0]
    mflop = 2 * lax.dot_general(a, b, dimensions).size * np.prod([a.shape[d] for d in contracting[0]]) / 1e6
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    rates = []
    for options in OPTIONS.values():
        fn = jax.jit(lambda x, y: lax.dot_general(x, y, dimensions), compiler_options=options)
        rates.append(mflop / best_ms(lambda fn=fn: fn(ja, jb)))
    spec = _einsum_spec(a.ndim, *dimensions)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    rates.append(mflop / best_ms(lambda: torch.einsum(spec, ta, tb)))
    rates.append(mflop / best_ms(lambda: np.einsum(spec, a, b, optimize=True)))
    return mflop, rates


def _einsum_spec(rank: int, contracting, batch) -> str:
    if rank == 2:
        lhs = "mk" if contracting[0] == (1,) else "km"
        rhs = "kn" if contracting[1] == (0,) else "nk"
        return f"{lhs},{rhs}->mn"
    return "bmk,bnk->bmn" if contracting[1] == (2,) else "bmk,bkn->bmn"


def adamw_update() -> None:
    classifier = peers.flaxbert_classifier("bert_tiny", "float32")
    params = jax.tree.map(jnp.asarray, classifier.params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    tx = optax.adamw(peers.LEARNING_RATE, weight_decay=peers.WEIGHT_DECAY)

    def update(params, state):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(update, donate_argnums=(0, 1))
    carry = [params, tx.init(params)]

    def run():
        carry[:] = step(*carry)
        return carry[0]

    count = sum(p.size for p in jax.tree.leaves(params))
    print(f"\nAdamW update of bert_tiny's {count / 1e6:.1f}M params (jitted, donated): {best_ms(run):.1f} ms")


def dense_layouts(batch: int = 32, seq: int = 128, hidden: int = 128, inter: int = 512) -> None:
    """ms per forward + backward of bert_tiny's feed-forward block (dense, tanh GELU, dense; input and weight
    gradients) as flax's `nn.Dense` computes it on [B, L, D] and as flaxbert's `Projection` does, on the arrays
    flattened to [B * L, D] (what `BertBackbone` runs since session 14)."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, seq, hidden)), jnp.float32)
    print(f"\n| feed-forward block [{batch}, {seq}, {hidden}] -> {inter} -> {hidden}, fwd + bwd | ms |\n|---|---:|")
    blocks = {
        "flax nn.Dense, 3-D operands": lambda n, name: nn.Dense(n, name=name),
        "flaxbert Projection, flattened to 2-D": lambda n, name: Projection(
            (n,), ("embed", "mlp"), jnp.float32, name=name
        ),
    }
    for label, layer in blocks.items():
        block = _FeedForward(inter, hidden, layer)
        params = block.init(jax.random.key(0), x)
        grad = jax.jit(jax.grad(lambda p, x, block=block: (block.apply(p, x) ** 2).sum(), argnums=(0, 1)))
        print(f"| {label} | {best_ms(lambda grad=grad, params=params: grad(params, x), number=10):.1f} |", flush=True)


class _FeedForward(nn.Module):
    inter: int
    hidden: int
    layer: object  # (features, name) -> a dense module

    @nn.compact
    def __call__(self, x):
        return self.layer(self.hidden, "out")(jax.nn.gelu(self.layer(self.inter, "in")(x), approximate=True))


def attention_blocks(heads: int = 2, head_dim: int = 64, seq: int = 128) -> None:
    """ms per call of one layer's attention (scores, key mask, softmax, context) on random [B, L, H, K] inputs."""
    rng = np.random.default_rng(0)
    print(f"\n| attention block, {heads} heads of {head_dim}, seq {seq} | flaxbert (jax) | torch SDPA | torch unfused |"
          "\n|---|---:|---:|---:|")  # fmt: skip
    for batch, train in ((256, False), (32, True)):
        q, k, v = (rng.standard_normal((batch, seq, heads, head_dim)).astype(np.float32) for _ in range(3))
        mask = np.ones((batch, seq), np.int32)
        jax_ms = best_ms(_jax_attention(train, head_dim, q, k, v, mask), number=10)
        sdpa_ms, math_ms = (best_ms(_torch_attention(train, fused, q, k, v), number=10) for fused in (True, False))
        what = f"predict, batch {batch}" if not train else f"train, batch {batch}, dropout {peers.DROPOUT}, fwd + bwd"
        print(f"| {what} | {jax_ms:.1f} | {sdpa_ms:.1f} | {math_ms:.1f} |", flush=True)
    print("(ms, best of 5 x 10 calls; flaxbert's predict path is `jax.nn.dot_product_attention` under its inference "
          "compile options, its training path `attention_with_dropout`)")  # fmt: skip


def _jax_attention(train: bool, head_dim: int, q, k, v, mask):
    """flaxbert's attention as its predict step or train step runs it: the XLA path of `attention_kernels.py`, the
    dropout mask drawn inside the program as the model draws it. Every array is an argument (a closed-over one
    would be compiled in as a constant, and an all-true mask folded away)."""
    q, k, v, mask = map(jnp.asarray, (q, k, v, mask))
    if not train:
        fn = jax.jit(xla_attention, static_argnums=(4, 5), compiler_options=inference_compiler_options(make_mesh()))
        return lambda: fn(q, k, v, mask, None, 1.0)

    def loss(q, k, v, mask, key):
        keep = keep_mask(key, (q.shape[0], q.shape[2], q.shape[1], q.shape[1]), peers.DROPOUT)  # [B, H, L, L]
        return xla_attention(q, k, v, mask, keep, keep_scale(peers.DROPOUT)).sum()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    key = jax.random.key(0)
    return lambda: grad(q, k, v, mask, key)


def _torch_attention(train: bool, fused: bool, q, k, v):
    q, k, v = (torch.from_numpy(x).transpose(1, 2).contiguous().requires_grad_(train) for x in (q, k, v))  # [B,H,L,K]
    mask = torch.ones(q.shape[0], 1, 1, q.shape[2], dtype=torch.bool)
    p = peers.DROPOUT if train else 0.0

    def forward():
        if fused:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        scores = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~mask, torch.finfo(q.dtype).min)
        return torch.nn.functional.dropout(scores.softmax(-1), p) @ v

    if not train:
        return lambda: _no_grad(forward)
    return lambda: torch.autograd.grad(forward().sum(), (q, k, v))


def _no_grad(fn):
    with torch.inference_mode():
        return fn()


# The attention scores of a batch-256 predict step: 256 rows x 2 heads of [128, 64] x [64, 128].
BATCHED = ((512, 128, 64), (512, 128, 64), ((2,), (2,)), ((0,), (0,)))
_GFLOP = 2 * 512 * 128 * 128 * 64 / 1e9


def _batched_operands():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for shape in BATCHED[:2]]


def _xla_batched(calls_at_once: int = 1) -> float:
    """GFLOP/s of XLA's batched product (inference compile options), `calls_at_once` calls from as many threads."""
    a, b = map(jnp.asarray, _batched_operands())
    dims = BATCHED[2:]
    fn = jax.jit(lambda x, y: lax.dot_general(x, y, dims), compiler_options=inference_compiler_options(make_mesh()))
    if calls_at_once == 1:
        return _GFLOP * 1e3 / best_ms(lambda: fn(a, b))
    with ThreadPoolExecutor(calls_at_once) as pool:
        run = lambda: list(pool.map(lambda _: jax.block_until_ready(fn(a, b)), range(calls_at_once)))  # noqa: E731
        return calls_at_once * _GFLOP * 1e3 / best_ms(run, number=10)


def batched_matmul_cores() -> None:
    """Whether XLA:CPU spreads one batched product over the cores: its rate on all of them, pinned to one (a child
    process), and two calls at once from two threads (what `flaxbert.training.concurrent_steps` does with whole
    predict steps), beside torch's `bmm` on one thread and on all."""
    cores = len(os.sched_getaffinity(0))
    child = [sys.executable, __file__, "--xla-batched-rate"]
    pinned = subprocess.run(child, capture_output=True, text=True, check=True)
    rows = {f"XLA, {cores} cores": _xla_batched(), "XLA, pinned to 1 core": float(pinned.stdout.split()[-1]),
            "XLA, 2 calls at once from 2 threads, together": _xla_batched(2)}  # fmt: skip
    a, b = map(torch.from_numpy, _batched_operands())
    for threads in (1, cores):
        torch.set_num_threads(threads)
        rows[f"torch bmm, {threads} thread(s)"] = _GFLOP * 1e3 / best_ms(lambda: torch.bmm(a, b.transpose(1, 2)))
    print("\n| attention scores at predict batch 256: 512 x [128,64]x[64,128] | GFLOP/s |\n|---|---:|")
    for label, rate in rows.items():
        print(f"| {label} | {rate:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--xla-batched-rate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    flaxbert.reuse_host_memory()  # before jax computes anything
    if args.xla_batched_rate:  # the child of batched_matmul_cores: one core, before jax starts
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print(_xla_batched())
        raise SystemExit(0)
    print(f"jax {jax.__version__}, torch {torch.__version__}, numpy {np.__version__}; {jax.devices()[0]}")
    matmul_rates()
    adamw_update()
    dense_layouts()
    attention_blocks()
    batched_matmul_cores()
