"""LayerNorm whose backward pass keeps only its input and two per-row statistics.

The forward pass is `flax.linen.LayerNorm`'s with `use_fast_variance=False`, op for op (float32 statistics, the exact
two-pass variance, the output cast to the compute dtype), so outputs are bit for bit the same. What changes is what
the train step keeps for the backward pass: differentiated automatically, the normalisation saves three float32
arrays of the input's shape (x - mean, rsqrt(var + eps) * scale broadcast to every row, and their product), each
written in the forward pass and read in the backward one. Here it saves the input (in its own dtype, bfloat16 inside
a bfloat16 encoder) and the float32 mean and 1 / std of each row, and the backward pass recomputes the normalised
input from them in the fusion that uses it: for a [B, L, 768] activation in bfloat16, one 2-byte array where there
were three 4-byte ones. The gradients are the same function (`tests/test_layer_norm.py` checks them against automatic
differentiation of the flax layer), computed in float32 and rounded once; on NVIDIA GPUs by one Pallas kernel
(`layer_norm_kernel.py`), which recomputes the statistics itself. Being a `jax.custom_vjp` function, it has no
forward-mode derivative (`jax.jvp`, `jax.jacfwd` raise; nothing in flaxbert uses them).

A post-norm block's LayerNorm takes its residual branch too (`Branch`: LayerNorm(x + dropout(h + bias)), h the
branch's last matmul). Where the kernel applies, `residual_layer_norm`'s backward pass is one kernel call that also
writes the branch's gradient (the dropout's backward) and sums the branch bias's, which autodiff computes in two more
passes over the activation; and it adds the LayerNorm's input up again from x and the branch instead of keeping it,
so XLA fuses the forward pass's residual add and dropout into the LayerNorm's kernel. A BERT-base bf16 train step
compiled for an H100 at batch 32 launches 443 kernels instead of 537, and for an H200 at batch 256 moves 64.2 GB
instead of 66.2 (`benchmarks/gpu_offline.py`, RESULTS.md session 36). Elsewhere it is those operations, differentiated
automatically, so the CPU's programs are what they were.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from flaxbert.models import layer_norm_kernel
from flaxbert.models.dropout import dropped, keep_scale
from flaxbert.models.params import param
from flaxbert.models.target_device import target_device


class LayerNorm(nn.Module):
    """`nn.LayerNorm(epsilon, dtype, param_dtype=float32, use_fast_variance=False)` over the last axis, with the same
    params ("scale", "bias") and the same outputs; its backward pass saves less (the module docstring)."""

    epsilon: float
    dtype: object
    scale_init: object = nn.initializers.ones_init()
    bias_init: object = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array, branch: Branch | None = None) -> jax.Array:
        """LayerNorm(x), or with `branch`, the post-norm residual LayerNorm(x + dropout(h + h_bias)) (its backward
        pass is `residual_layer_norm`'s)."""
        features = x.shape[-1]
        scale = param(self, "scale", self.scale_init, (features,))
        bias = param(self, "bias", self.bias_init, (features,))
        if branch is None:
            return layer_norm(x, scale, bias, self.epsilon, jnp.dtype(self.dtype))
        return residual_layer_norm(x, branch.h, branch.h_bias, branch.keep, scale, bias, branch.rate, self.epsilon,
                                   jnp.dtype(self.dtype))  # fmt: skip


class Branch(NamedTuple):
    """The residual branch a post-norm block adds to its input before its LayerNorm: `dropout(h + h_bias)`, `h` the
    branch's last projection without its bias, as its matmul gives it ([rows, D], the input's elements, in h_bias's
    dtype), `keep` its dropout mask (`dropout.dropped`'s, the input's shape; None: no dropout) at `rate`."""

    h: jax.Array
    h_bias: jax.Array
    keep: jax.Array | None
    rate: float


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float, dtype) -> jax.Array:
    """(x - mean) / sqrt(var + epsilon) * scale + bias over the last axis, statistics in float32, cast to `dtype`."""
    return _forward(x, scale, bias, epsilon, dtype)[0]


def _statistics(x: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = wide.mean(-1, keepdims=True)
    var = lax.square(wide - mean).mean(-1, keepdims=True)
    return wide, mean, lax.rsqrt(var + epsilon)


def _forward(x, scale, bias, epsilon, dtype):
    wide, mean, inv_std = _statistics(x, epsilon)
    y = (wide - mean) * (inv_std * scale) + bias  # flax's order: (x - mean) * (rsqrt(var + eps) * scale) + bias
    return y.astype(dtype), (x, mean, inv_std, scale)


def _backward(epsilon, dtype, saved, dy):
    del dtype
    x, mean, inv_std, scale = saved
    if layer_norm_kernel.applies(target_device(), x.shape):  # one kernel on NVIDIA GPUs: the same function
        return layer_norm_kernel.backward(x, dy, scale, epsilon)
    normalized = (x.astype(mean.dtype) - mean) * inv_std
    dy = dy.astype(mean.dtype)
    rows = tuple(range(dy.ndim - 1))
    d_bias = dy.sum(rows)
    d_scale = (dy * normalized).sum(rows)
    g = dy * scale
    # d/dx of (x - mean) * inv_std for each row: inv_std * (g - mean(g) - normalized * mean(g * normalized)).
    dx = inv_std * (g - g.mean(-1, keepdims=True) - normalized * (g * normalized).mean(-1, keepdims=True))
    return dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


layer_norm.defvjp(_forward, _backward)


def residual_kernel_applies(shape: tuple[int, ...]) -> bool:
    """Whether a block's residual LayerNorm of an input of `shape` takes the kernel path in the program being traced
    (`residual_layer_norm`): where the LayerNorm backward kernel applies. Its layer's dropout masks are then written
    as bytes, which its forward fusion reads (`layers.layer_keep_masks`). The one place both are decided."""
    return layer_norm_kernel.applies(target_device(), shape)


def residual_input(x, h, h_bias, keep, rate: float) -> jax.Array:
    """A post-norm block's LayerNorm input, `x + dropped(h + h_bias, keep, rate)` (`Branch` says what h is): the bias
    added to the matmul's rows, as `Projection` adds it."""
    return x + dropped((h + h_bias).reshape(x.shape), keep, rate)


def residual_layer_norm(x, h, h_bias, keep, scale, bias, rate: float, epsilon: float, dtype) -> jax.Array:
    """`layer_norm(residual_input(x, h, h_bias, keep, rate), scale, bias, epsilon, dtype)`: a post-norm block's
    residual add and LayerNorm. Where `residual_kernel_applies` (NVIDIA GPUs), its backward pass is one kernel call
    that also gives the branch's gradients (`_residual_backward`); elsewhere these operations, differentiated
    automatically (also for a branch in another dtype than x: the kernel rounds in x's)."""
    if residual_kernel_applies(x.shape) and x.dtype == h.dtype == h_bias.dtype:
        return _residual_layer_norm(x, h, h_bias, keep, scale, bias, rate, epsilon, dtype)
    return layer_norm(residual_input(x, h, h_bias, keep, rate), scale, bias, epsilon, dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _residual_layer_norm(x, h, h_bias, keep, scale, bias, rate: float, epsilon: float, dtype) -> jax.Array:
    return _residual_forward(x, h, h_bias, keep, scale, bias, rate, epsilon, dtype)[0]


def _residual_forward(x, h, h_bias, keep, scale, bias, rate, epsilon, dtype):
    branch = (h + h_bias).reshape(x.shape)  # `residual_input`'s, kept for the kernel
    y = _forward(x + dropped(branch, keep, rate), scale, bias, epsilon, dtype)[0]
    # The sum is not kept: the kernel adds it up again from x and the branch (kept anyway, for the layers' weight
    # gradients and for this one), so XLA computes it inside the LayerNorm's fusion instead of writing it out.
    return y, (x, branch, keep, scale)


def _residual_backward(rate, epsilon, dtype, saved, dy):
    """What autodiff of the operations of `residual_layer_norm` gives (the forward's dropout and bias add transposed),
    from one kernel call: the LayerNorm's input gradient (x's), the branch's (h's: that dropped as the forward pass
    dropped h), the bias's (h_bias's: that summed over the rows), and the scale's and bias's."""
    del dtype
    x, branch, keep, scale = saved
    scaled = float(np.asarray(keep_scale(rate), branch.dtype))  # what `dropped` multiplied the branch by
    ds, dh, d_scale, d_bias, d_h_bias = layer_norm_kernel.residual_backward(x, branch, keep, dy, scale, epsilon,
                                                                            scaled)  # fmt: skip
    dh = dh.reshape(-1, branch.shape[-1])  # h's rows; in h's dtype, which is x's (`residual_layer_norm`)
    return ds, dh, d_h_bias.astype(branch.dtype), None, d_scale, d_bias


_residual_layer_norm.defvjp(_residual_forward, _residual_backward)
