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
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from flaxbert.models import layer_norm_kernel
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
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = param(self, "scale", self.scale_init, (features,))
        bias = param(self, "bias", self.bias_init, (features,))
        return layer_norm(x, scale, bias, self.epsilon, jnp.dtype(self.dtype))


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
