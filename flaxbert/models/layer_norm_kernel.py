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

`residual_backward` is the same kernel for a post-norm block's LayerNorm(x + dropout(branch)) (`layer_norm.
residual_layer_norm`): it adds the input up from x, the branch and its dropout mask, writes the branch's gradient (the
input gradient where the mask keeps, times the keep scale) beside the input's, and adds it into a third row of
partial sums, the gradient of the branch's bias.

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
# With a residual branch, half as many: at 4 its arrays took 212 registers a thread for BERT-base's rows (2 programs
# an SM; ptxas for sm_90a, `benchmarks/kernel_registers.py`), at 2 126, near the plain kernel's 110 at 4.
_RESIDUAL_ROWS_PER_STEP = 2
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
    (dx,), sums = _backward(x, None, None, dy, scale, epsilon, None, interpret)
    return dx, sums[0].astype(scale.dtype), sums[1].astype(scale.dtype)


def residual_backward(x: jax.Array, branch: jax.Array, keep: jax.Array | None, dy: jax.Array, scale: jax.Array,
                      epsilon: float, keep_scale: float, *, interpret: bool = False):  # fmt: skip
    """The backward pass of `layer_norm.residual_layer_norm`, LayerNorm(s) of `s = x + dropped(branch, keep)`, from
    x and the branch (with its bias), which it adds up again as the forward pass did: `(ds, dh, d_scale, d_bias,
    d_h_bias)`. ds is the gradient of s (and of x); dh, the branch's, is ds where `keep` is nonzero times
    `keep_scale` (what the forward pass multiplied by: in the branch's dtype) and 0 elsewhere (ds itself where
    `keep` is None: no dropout), in x's dtype; d_h_bias (the branch bias's), dh summed over the rows, in scale's
    dtype as d_scale and d_bias."""
    outputs, sums = _backward(x, branch, keep, dy, scale, epsilon, keep_scale, interpret)
    ds, dh = outputs if keep is not None else (outputs[0], outputs[0])
    return (ds, dh, *(sums[i].astype(scale.dtype) for i in range(3)))


def _backward(x, branch, keep, dy, scale, epsilon: float, keep_scale, interpret: bool):
    """The kernel over the rows of its arrays on the current mesh: `([dx] or [dx, dh], sums)`, the sums
    `[2 or 3, features]` over every program of every device."""
    mesh, devices = jax.sharding.get_abstract_mesh(), mesh_devices()
    given = [a for a in (branch, keep) if a is not None]  # a mask comes with a branch: (), (branch,), (branch, keep)

    def local(x, dy, scale, *given):
        features = x.shape[-1]
        branch, keep = [a.reshape(-1, features) for a in given] + [None] * (2 - len(given))
        outputs, partial = _backward_rows(x.reshape(-1, features), branch, keep, dy.reshape(-1, features), scale,
                                          epsilon, keep_scale, interpret)  # fmt: skip
        return [out.reshape(x.shape) for out in outputs], partial

    if devices == 1:
        outputs, partial = local(x, dy, scale, *given)
    else:
        rows = jax.sharding.PartitionSpec(mesh.axis_names)
        in_specs = (rows, rows, jax.sharding.PartitionSpec(), *[rows] * len(given))
        outputs, partial = jax.shard_map(local, mesh=mesh, in_specs=in_specs,
                                         out_specs=([rows] * (1 + (keep is not None)), rows),
                                         check_vma=False)(x, dy, scale, *given)  # fmt: skip
    return outputs, partial.sum(0)  # every program's, every device's


def _backward_rows(x, branch, keep, dy, scale, epsilon: float, keep_scale, interpret: bool):
    """`([dx] or [dx, dh], partial sums)` of [rows, features] arrays: the sums `[programs, 2 or 3, features]` of
    `dy * normalized` (the scale's gradient), `dy` (the bias's) and, with a `branch`, dh (the branch bias's), one row
    a program. With a `branch`, the LayerNorm's input is `x + dropped(branch, keep)`, added up here."""
    rows, features = x.shape
    step = min(_RESIDUAL_ROWS_PER_STEP if branch is not None else _ROWS_PER_STEP, rows & -rows)  # a power of two
    per_program = step
    while rows // (per_program * 2) >= _PROGRAMS and rows % (per_program * 2) == 0:
        per_program *= 2
    programs = rows // per_program
    chunk = features & -features
    residual, masked = branch is not None, keep is not None
    sums = 2 + residual
    kernel = functools.partial(_layer_norm_backward_kernel, chunk=chunk, chunks=features // chunk, step=step,
                               steps=per_program // step, epsilon=epsilon, keep_scale=keep_scale,
                               residual=residual, masked=masked)  # fmt: skip
    block = pl.BlockSpec((per_program, features), lambda i: (i, 0))
    given = [a for a in (x, branch, keep, dy) if a is not None]
    out_shape = [jax.ShapeDtypeStruct(x.shape, x.dtype)] * (1 + masked)
    out_shape.append(jax.ShapeDtypeStruct((programs, sums, features), jnp.float32))
    *outputs, partial = pl.pallas_call(
        kernel,
        grid=(programs,),
        in_specs=[*[block] * len(given), pl.BlockSpec((features,), lambda i: (0,))],
        out_specs=[*[block] * (1 + masked), pl.BlockSpec((1, sums, features), lambda i: (i, 0, 0))],
        out_shape=out_shape,
        compiler_params=None if interpret else _triton_params(),
        interpret=interpret,
    )(*given, scale)
    return outputs, partial


def _triton_params():
    from jax.experimental.pallas import triton as pl_triton

    return pl_triton.CompilerParams(num_warps=4, num_stages=1)


def _layer_norm_backward_kernel(*refs, chunk, chunks, step, steps, epsilon, keep_scale, residual, masked):
    """One program: its `steps` blocks of `step` rows in turn, each row's gradient as `layer_norm._backward` computes
    it (the row's statistics recomputed from its input: `x`, or with a `residual` branch, `x + dropped(branch,
    keep)` rounded as the forward pass's operations round it), the blocks' `dy * normalized` and `dy` (and with a
    branch, dh: dx where `keep` is nonzero times `keep_scale`, written out where `masked`) summed over their rows."""
    refs = list(refs)
    x_ref = refs.pop(0)
    branch_ref = refs.pop(0) if residual else None
    keep_ref = refs.pop(0) if masked else None
    dy_ref, scale_ref, dx_ref = refs.pop(0), refs.pop(0), refs.pop(0)
    dh_ref = refs.pop(0) if masked else None
    (partial_ref,) = refs
    dtype = x_ref.dtype
    features = chunk * chunks
    columns = [pl.ds(j * chunk, chunk) for j in range(chunks)]
    scales = [scale_ref[c].astype(jnp.float32) for c in columns]

    def rounded(a):  # to the input's dtype and back: what a forward operation in that dtype wrote
        return a.astype(dtype).astype(jnp.float32)

    def block(i, sums):
        here = pl.ds(i * step, step)
        xs = [x_ref[here, c].astype(jnp.float32) for c in columns]
        if residual:
            branches = [branch_ref[here, c].astype(jnp.float32) for c in columns]
            if masked:
                branches = [jnp.where(keep_ref[here, c] != 0, rounded(b * keep_scale), 0.0)
                            for b, c in zip(branches, columns, strict=True)]  # fmt: skip
            xs = [rounded(x + b) for x, b in zip(xs, branches, strict=True)]
        mean = sum(jnp.sum(x, axis=1) for x in xs)[:, None] / features
        var = sum(jnp.sum(jnp.square(x - mean), axis=1) for x in xs)[:, None] / features
        inv_std = lax.rsqrt(var + epsilon)
        normalized = [(x - mean) * inv_std for x in xs]
        dys = [dy_ref[here, c].astype(jnp.float32) for c in columns]
        gs = [dy * s[None, :] for dy, s in zip(dys, scales, strict=True)]
        mean_g = sum(jnp.sum(g, axis=1) for g in gs)[:, None] / features
        mean_gn = sum(jnp.sum(g * n, axis=1) for g, n in zip(gs, normalized, strict=True))[:, None] / features
        dhs = []
        for c, g, n in zip(columns, gs, normalized, strict=True):
            dx = inv_std * (g - mean_g - n * mean_gn)
            dx_ref[here, c] = dx.astype(dx_ref.dtype)
            if masked:
                dx = jnp.where(keep_ref[here, c] != 0, dx * keep_scale, 0.0)
                dh_ref[here, c] = dx.astype(dh_ref.dtype)
            dhs.append(dx)
        moved = [[s + jnp.sum(dy * n, axis=0) for s, dy, n in zip(sums[0], dys, normalized, strict=True)],
                 [s + jnp.sum(dy, axis=0) for s, dy in zip(sums[1], dys, strict=True)]]  # fmt: skip
        if residual:
            moved.append([s + jnp.sum(d, axis=0) for s, d in zip(sums[2], dhs, strict=True)])
        return moved

    zeros = [[jnp.zeros((chunk,), jnp.float32) for _ in columns] for _ in range(2 + residual)]
    totals = lax.fori_loop(0, steps, block, zeros)
    for row, parts in enumerate(totals):
        for c, part in zip(columns, parts, strict=True):
            partial_ref[0, row, c] = part
