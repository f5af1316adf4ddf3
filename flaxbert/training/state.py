"""The training state: a pytree of (step, params, opt_state); the optimizer itself is static."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation, opt_state=None) -> TrainState:
        """A state at step 0 with a fresh optimizer state, or with `opt_state` (an earlier run's, continued)."""
        opt_state = tx.init(params) if opt_state is None else opt_state
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, tx=tx)

    def apply_gradients(self, grads, value=None) -> TrainState:
        """One optimizer update. `value`, the loss `grads` are the gradient of, goes to optimizers that take extra
        arguments (`optax.GradientTransformationExtraArgs`), as `value=` (what `optax.contrib.reduce_on_plateau`
        and `optax.polyak_sgd` read; the others ignore it)."""
        updates, opt_state = optimizer_update(self.tx, grads, self.opt_state, self.params, value)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state)


def optimizer_update(tx: optax.GradientTransformation, grads, opt_state, params, value=None):
    """`tx.update(grads, opt_state, params)`, with `value=value` where `tx` takes extra arguments and accepts it (an
    extra-arguments transformation may not: `optax.contrib.sam` refuses the keyword, and gets none)."""
    if value is not None and isinstance(tx, optax.GradientTransformationExtraArgs):
        try:
            return tx.update(grads, opt_state, params, value=value)
        except TypeError as error:  # raised at the call, while tracing, before any update is computed
            if "unexpected keyword argument 'value'" not in str(error):
                raise
    return tx.update(grads, opt_state, params)
