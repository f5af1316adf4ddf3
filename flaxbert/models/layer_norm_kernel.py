"""LayerNorm's backward pass as one Pallas kernel on NVIDIA GPUs: the input gradient and the scale and bias
gradients' partial sums from one read of the input and the output gradient.

XLA compiles `layer_norm._backward` into six kernels a LayerNorm: it writes `dy * normalized` out in float32 (twice
the bytes of the bfloat16 input) for the scale gradient's column sum, sums it and `dy` over the rows in two stages
each, and computes the input gradient in a Triton normalization kernel of its own. The column sums cannot join the
row-wise kernels, whose programs each hold whole rows. Here each program takes a block of rows: it recomputes their
statistics, writes their input gradient, and adds their `dy * normalized` and `dy` into two partial sums, one row of
`[programs, 2, features]`, which one small reduction adds up. A BERT-base bf16 train step compiled for an H200 makes
~4 fewer kernels a LayerNorm and moves ~0.33 GB less a LayerNorm at batch 256 (`benchmarks/gpu_offline.py`,
RESULTS.md session 33).

The values are `layer_norm._backward`'s formulas, in float32, with the sums taken in another order: equal to float32
rounding. Triton's arrays are powers of two, so a row of `features` is handled as `features / chunk` chunks of the
largest power of two dividing it (768 as 3 x 256). Pallas's interpreter (CPU, for the tests) computes what Triton does.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from flaxbert.models.target_device import mesh_devices, runs_triton_kernels

_PROGRAMS = 1024  # programs a call aims for: ~8 per SM of an H100 / H200, and small partial sums
_ROWS_PER_STEP = 4  # rows a program loads at once (a 768-wide bfloat16 row is 1.5 KB)
_MAX_CHUNKS = 8


def applies(device, shape: tuple[int, ...]) -> bool:
    """Whether the kernel computes the backward pass of a LayerNorm over the last axis of an array of `shape` in a
    program for `device` traced under the current mesh: an NVIDIA GPU of compute capability 8.0 or later, a last axis
    of at most 8 chunks of a power of two of 16 or more (every BERT's hidden size), and on a multi-device mesh a first
    axis (the batch, which flaxbert splits over every mesh axis) that the devices divide."""
    if not runs_triton_kernels(device) or len(shape) < 2 or math.prod(shape) == 0:
        return False
    features = shape[-1]
    chunk = features & -features
    return chunk >= 16 and features // chunk <= _MAX_CHUNKS and shape[0] % mesh_devices() == 0


def backward(x: jax.Array, dy: jax.Array, scale: jax.Array, epsilon: float, *, interpret: bool = False):
    """`(dx, d_scale, d_bias)` of `layer_norm.layer_norm(x, scale, bias, epsilon, dtype)` over the last axis, for the
    output gradient `dy`: dx in x's dtype, the others in scale's. `interpret`: run in Pallas's interpreter (CPU).
    Traced under a multi-device mesh, each device computes its own rows (`applies`) and the partial sums add up
    over all of them."""
    mesh, devices = jax.sharding.get_abstract_mesh(), mesh_devices()

    def local(x, dy, scale):
        features = x.shape[-1]
        dx, partial = _backward_rows(x.reshape(-1, features), dy.reshape(-1, features), scale, epsilon, interpret)
        return dx.reshape(x.shape), partial

    if devices == 1:
        dx, partial = local(x, dy, scale)
    else:
        rows = jax.sharding.PartitionSpec(mesh.axis_names)
        everywhere = jax.sharding.PartitionSpec()
        dx, partial = jax.shard_map(local, mesh=mesh, in_specs=(rows, rows, everywhere), out_specs=(rows, rows),
                                    check_vma=False)(x, dy, scale)  # fmt: skip
    sums = partial.sum(0)  # [2, features]: every program's, every device's
    return dx, sums[0].astype(scale.dtype), sums[1].astype(scale.dtype)


def _backward_rows(x, dy, scale, epsilon: float, interpret: bool):
    """`(dx, partial sums)` of [rows, features] `x` and `dy`: the sums `[programs, 2, features]` of `dy * normalized`
    (the scale's gradient) and `dy` (the bias's), one row a program."""
    rows, features = x.shape
    step = min(_ROWS_PER_STEP, rows & -rows)  # a power of two dividing the rows
    per_program = step
    while rows // (per_program * 2) >= _PROGRAMS and rows % (per_program * 2) == 0:
        per_program *= 2
    programs = rows // per_program
    chunk = features & -features
    kernel = functools.partial(_layer_norm_backward_kernel, chunk=chunk, chunks=features // chunk, step=step,
                               steps=per_program // step, epsilon=epsilon)  # fmt: skip
    block = pl.BlockSpec((per_program, features), lambda i: (i, 0))
    return pl.pallas_call(
        kernel,
        grid=(programs,),
        in_specs=[block, block, pl.BlockSpec((features,), lambda i: (0,))],
        out_specs=[block, pl.BlockSpec((1, 2, features), lambda i: (i, 0, 0))],
        out_shape=[jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct((programs, 2, features), jnp.float32)],
        compiler_params=None if interpret else _triton_params(),
        interpret=interpret,
    )(x, dy, scale)


def _triton_params():
    from jax.experimental.pallas import triton as pl_triton

    return pl_triton.CompilerParams(num_warps=4, num_stages=1)


def _layer_norm_backward_kernel(x_ref, dy_ref, scale_ref, dx_ref, partial_ref, *, chunk, chunks, step, steps,
                                epsilon):  # fmt: skip
    """One program: its `steps` blocks of `step` rows in turn, each row's gradient as `layer_norm._backward` computes
    it (the row's statistics recomputed from `x`), the blocks' `dy * normalized` and `dy` summed over their rows."""
    features = chunk * chunks
    columns = [pl.ds(j * chunk, chunk) for j in range(chunks)]
    scales = [scale_ref[c].astype(jnp.float32) for c in columns]

    def block(i, sums):
        here = pl.ds(i * step, step)
        xs = [x_ref[here, c].astype(jnp.float32) for c in columns]
        mean = sum(jnp.sum(x, axis=1) for x in xs)[:, None] / features
        var = sum(jnp.sum(jnp.square(x - mean), axis=1) for x in xs)[:, None] / features
        inv_std = lax.rsqrt(var + epsilon)
        normalized = [(x - mean) * inv_std for x in xs]
        dys = [dy_ref[here, c].astype(jnp.float32) for c in columns]
        gs = [dy * s[None, :] for dy, s in zip(dys, scales, strict=True)]
        mean_g = sum(jnp.sum(g, axis=1) for g in gs)[:, None] / features
        mean_gn = sum(jnp.sum(g * n, axis=1) for g, n in zip(gs, normalized, strict=True))[:, None] / features
        for c, g, n in zip(columns, gs, normalized, strict=True):
            dx_ref[here, c] = (inv_std * (g - mean_g - n * mean_gn)).astype(dx_ref.dtype)
        scale_sums = [s + jnp.sum(dy * n, axis=0) for s, dy, n in zip(sums[0], dys, normalized, strict=True)]
        bias_sums = [s + jnp.sum(dy, axis=0) for s, dy in zip(sums[1], dys, strict=True)]
        return scale_sums, bias_sums

    zeros = [jnp.zeros((chunk,), jnp.float32) for _ in columns]
    scale_sums, bias_sums = lax.fori_loop(0, steps, block, (zeros, zeros))
    for c, s, b in zip(columns, scale_sums, bias_sums, strict=True):
        partial_ref[0, 0, c] = s
        partial_ref[0, 1, c] = b
