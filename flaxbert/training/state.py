"""The training state: a pytree of (step, params, opt_state, compute_params); the optimizer itself is static."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from flaxbert.models.compute_params import cast_dtype, compute_copies, with_copies


@struct.dataclass
class TrainState:
    """`compute_params`: the params the model multiplies by in its compute dtype (`compute_dtype`, None for float32),
    cast by the update that wrote the params (`models/compute_params.py`); None where nothing is cast. Derived from
    the params, so checkpoints leave them out (`saved`) and a restored state casts them again (`restored`)."""

    step: jax.Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    compute_params: Any = None
    compute_dtype: Any = struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation, opt_state=None, compute_dtype=None) -> TrainState:
        """A state at step 0 with a fresh optimizer state, or with `opt_state` (an earlier run's, continued);
        `compute_dtype`: the model's (`cfg.dtype`), whose casts of the params the state keeps."""
        opt_state = tx.init(params) if opt_state is None else opt_state
        dtype = cast_dtype(compute_dtype)
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, tx=tx,
                   compute_params=compute_copies(params, dtype), compute_dtype=dtype)  # fmt: skip

    @property
    def model_params(self):
        """The params as the model reads them: the compute dtype's casts in the places of the params they cast."""
        return with_copies(self.params, self.compute_params)

    def saved(self) -> dict:
        """What a checkpoint holds: `{"step", "params", "opt_state"}`, without the casts of the params (`restored`
        redoes them), under the names checkpoints had before the state kept them."""
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state}

    def restored(self, saved: dict) -> TrainState:
        """This state's kind (an abstract state will do) holding `saved`'s arrays (`saved`'s tree), the casts of its
        params made again."""
        return self.replace(**saved, compute_params=compute_copies(saved["params"], self.compute_dtype))

    def apply_gradients(self, grads, value=None) -> TrainState:
        """One optimizer update. `value`, the loss `grads` are the gradient of, goes to optimizers that take extra
        arguments (`optax.GradientTransformationExtraArgs`), as `value=` (what `optax.contrib.reduce_on_plateau`
        and `optax.polyak_sgd` read; the others ignore it)."""
        updates, opt_state = optimizer_update(self.tx, grads, self.opt_state, self.params, value)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state,
                            compute_params=compute_copies(params, self.compute_dtype))  # fmt: skip


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
