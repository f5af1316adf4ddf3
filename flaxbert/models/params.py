"""Declaring a module's float32 params: `module.param`, without flax's trace of the initializer on every apply.

When a param already exists, flax's `Module.param` still evaluates its initializer abstractly (`jax.eval_shape`) to
compare shapes: a trace of a truncated-normal draw (3-4 ms) for every kernel, on every trace of every step, 41 of
them in a BERT train step. Here an existing param's shape is compared directly, with an error that names the param
(`ParamShapeError`); init, and a param not there yet, go through flax as before.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ParamShapeError(ValueError):
    """A param that is not an array of the shape the model's config makes: params made for another config."""

    def __init__(self, path: tuple[str, ...], found: str, expected: tuple[int, ...], reason: str = ""):
        """`found`: what the param is, "has shape (17,)" or "is a NoneType, not an array"."""
        self.path, self.found, self.expected = tuple(path), found, tuple(expected)
        self.reason = reason or f"this model's config makes it {self.expected}"
        super().__init__(
            f"the param {'/'.join(self.path)} {found}, but {self.reason}: the params were made for another config "
            "(load them with the config they were saved with)."
        )

    def within(self, *prefix: str) -> ParamShapeError:
        """The same error for the param seen from a module `prefix` above (a layer applied on its own)."""
        return ParamShapeError((*prefix, *self.path), self.found, self.expected, self.reason)


def param(module: nn.Module, name: str, init, shape: tuple[int, ...]) -> jax.Array:
    """`module.param(name, init, shape, jnp.float32)`, the existing value checked against `shape` without `init`.
    An existing value that is not an array (a nested list) is taken as `jnp.asarray` takes it."""
    if module.is_initializing() or not module.has_variable("params", name):
        return module.param(name, init, shape, jnp.float32)
    value = nn.unbox(module.get_variable("params", name))
    path = (*module.scope.path, name)
    if not hasattr(value, "shape"):
        try:
            value = jnp.asarray(value)
        except (TypeError, ValueError):
            raise ParamShapeError(path, f"is a {type(value).__name__}, not an array", tuple(shape)) from None
    if tuple(value.shape) != tuple(shape):
        raise ParamShapeError(path, f"has shape {tuple(value.shape)}", tuple(shape))
    return value
