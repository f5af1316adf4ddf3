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
        takes_extras = value is not None and isinstance(self.tx, optax.GradientTransformationExtraArgs)
        extras = {"value": value} if takes_extras else {}
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params, **extras)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state)
