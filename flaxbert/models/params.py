"""Declaring a module's float32 params: `module.param`, without flax's trace of the initializer on every apply.

When a param already exists, flax's `Module.param` still evaluates its initializer abstractly (`jax.eval_shape`) to
compare shapes: a trace of a truncated-normal draw (3-4 ms) for every kernel, on every trace of every step, 41 of
them in a BERT train step. Here an existing param's shape is compared directly, with an error that
names the param; init, and a param not there yet, go through flax as before.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def param(module: nn.Module, name: str, init, shape: tuple[int, ...]) -> jax.Array:
    """`module.param(name, init, shape, jnp.float32)`, the existing value checked against `shape` without `init`."""
    if module.is_initializing() or not module.has_variable("params", name):
        return module.param(name, init, shape, jnp.float32)
    value = nn.unbox(module.get_variable("params", name))
    if tuple(value.shape) != tuple(shape):
        path = "/".join((*module.scope.path, name))
        raise ValueError(
            f"the param {path} has shape {tuple(value.shape)}, but this model's config makes it {tuple(shape)}: "
            "the params were made for another config (load them with the config they were saved with)."
        )
    return value
