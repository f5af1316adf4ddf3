"""The feed-forward activations by config name; the GELUs' backward passes keep only their input.

Forward, each GELU is `jax.nn.gelu` itself (bit for bit). Differentiated automatically, it saves several arrays of
the feed-forward width for its backward pass (the tanh form four besides its input in a traced BERT layer: x^3's
product, the tanh, 1 - tanh^2's parts), each written in the forward pass and read in the backward one: at BERT-base's
[B, L, 3072] the widest arrays of the step. Here the backward pass saves the input alone and recomputes the derivative
from it, in float32, in the fusion that multiplies it into the incoming gradient. The gradients are the same function
(`tests/test_activations.py` checks them against automatic differentiation of `jax.nn.gelu`), in bfloat16 closer to a
float32 reference than bfloat16 autodiff's. A `jax.custom_vjp` function has no forward-mode derivative: `jax.jvp` and
`jax.jacfwd` through the model raise (nothing in flaxbert uses them; reverse mode, grad of grad included, works).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715  # the tanh form's coefficient (jax.nn.gelu's, keras', Google BERT's)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gelu(x: jax.Array, approximate: bool) -> jax.Array:
    """`jax.nn.gelu(x, approximate=approximate)`, differentiated from its input alone (the module docstring)."""
    return jax.nn.gelu(x, approximate=approximate)


def _forward(x, approximate):
    return jax.nn.gelu(x, approximate=approximate), x


def _backward(approximate, x, dy):
    wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if approximate:  # d/dx [x/2 (1 + tanh(u))], u = sqrt(2/pi) (x + c x^3)
        t = jnp.tanh(_SQRT_2_OVER_PI * (wide + _CUBIC * wide**3))
        slope = 0.5 * (1.0 + t) + 0.5 * wide * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3.0 * _CUBIC * wide * wide)
    else:  # d/dx [x Phi(x)] = Phi(x) + x phi(x)
        cdf = 0.5 * lax.erfc(-wide * math.sqrt(0.5))
        slope = cdf + wide * jnp.exp(-0.5 * wide * wide) / math.sqrt(2.0 * math.pi)
    return ((dy.astype(wide.dtype) * slope).astype(dy.dtype),)


gelu.defvjp(_forward, _backward)

ACTIVATION_FNS = {
    "gelu": functools.partial(gelu, approximate=False),  # erf form: HF BERT, all DistilBERT
    "gelu_approximate": functools.partial(gelu, approximate=True),  # tanh form: keras-hub BERT presets
    "relu": jax.nn.relu,
}
