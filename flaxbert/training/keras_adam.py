"""Keras 3's Adam as an optax transformation: the same updates as `keras.optimizers.Adam`, to float32 rounding.

Keras puts epsilon on the moments before bias correction ("epsilon hat", Kingma and Ba, just before section 2.1):

    alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
    m += (g - m) * (1 - b1);  v += (g^2 - v) * (1 - b2)
    var -= m * alpha / (sqrt(v) + eps)

optax's `adam` divides by `sqrt(v_hat) + eps` after bias correction instead, so its effective epsilon is
sqrt(1 - b2^t) times Keras': 31.6x smaller at step 1, 7x at step 20. BERT's gradients are ~1e-5, near Keras'
1e-7 / sqrt(1 - b2^t) = 3.2e-6 at step 1, so there the first updates differ by ~58% (`tests/test_optimizers.py`).
Here the operations and their order are Keras' (`keras/src/optimizers/adam.py`, amsgrad=False), each in the
moments' dtype (the params'): eagerly the updates are Keras' bit for bit, jitted within an ulp per fused op.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class KerasAdamState(NamedTuple):
    """The step count (updates done so far) and Keras' two moments (`m`, `v`), one array per param."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def keras_adam(
    learning_rate: float | optax.Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> optax.GradientTransformation:
    """`keras.optimizers.Adam(learning_rate, beta_1=b1, beta_2=b2, epsilon=eps)` (no weight decay or clipping).

    Args:
        learning_rate: a float, or an optax schedule of the step count (0 at the first update, as Keras' schedules
            are called with `optimizer.iterations`).
        b1, b2: the moments' decay rates (Keras' `beta_1`, `beta_2`).
        eps: Keras' epsilon, added to sqrt(v) before bias correction.

    Returns:
        A transformation whose updates, added to the params (`optax.apply_updates`), move them as Keras does.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_adam(5e-5)
        >>> state = tx.init({"w": jnp.zeros(3)})
        >>> updates, state = tx.update({"w": jnp.array([1e-5, -1e-5, 0.0])}, state)
    """
    # Checked where they are numbers: `optax.inject_hyperparams` calls this again with traced arrays.
    for name, value in (("b1", b1), ("b2", b2)):
        if isinstance(value, int | float) and not 0.0 <= value < 1.0:
            raise ValueError(f"keras_adam's {name} must be in [0, 1), got {value!r}.")
    if isinstance(eps, int | float) and not eps > 0.0:
        raise ValueError(f"keras_adam's eps must be positive, got {eps!r}.")

    def init(params) -> KerasAdamState:
        # Keras' moments take each variable's dtype. Two trees, not one twice: a donated state must not alias.
        mu, nu = jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params)
        return KerasAdamState(count=jnp.zeros((), jnp.int32), mu=mu, nu=nu)

    # Traced with numeric hyperparameters (the usual case), each variable's update is one jitted function, traced
    # once per shape and dtype: BERT-base's 201 variables have 13 shapes, and tracing its ~10 operations for each
    # variable took 0.11-0.14 s of the train step's trace on a 2-core CPU (0.04-0.08 s so). Left a call, not inlined
    # into the step's jaxpr, it is also lowered once per shape: the bf16 step lowers in 0.19-0.21 s instead of
    # 0.28-0.42 s, and XLA, inlining the calls, compiles the same kernels to the same numbers. Run eagerly, it stays
    # op by op (one fused program would round differently from Keras), and traced hyperparameters
    # (`inject_hyperparams`) cannot be closed over by a function kept across traces.
    plain = functools.partial(_moved, b1=b1, b2=b2, eps=eps)
    numeric = all(isinstance(value, int | float) for value in (b1, b2, eps))
    traced_once = jax.jit(plain) if numeric else plain

    def update(grads, state: KerasAdamState, params=None):
        del params  # Keras' Adam reads only the gradients and its moments
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        alphas = {}  # the step size, computed once per dtype: traced once, not once per variable (0.1 s of BERT-base's)
        decay = 1 - b1  # the factor m moves by: with m and g it sets the moved m's dtype (traced b1: one op, not 201)

        def one(g, m, v):
            dtype = jnp.result_type(m, g, decay)  # the moved m's, in which Keras computes the step size
            if dtype not in alphas:
                alphas[dtype] = _alpha(lr, state.count, b1, b2, dtype)
            return (traced_once if isinstance(g, jax.core.Tracer) else plain)(g, m, v, alphas[dtype])

        tree = jax.tree.structure(grads)
        moves = tree.flatten_up_to(jax.tree.map(one, grads, state.mu, state.nu))  # (update, m, v) per variable
        updates, mu, nu = (tree.unflatten([move[i] for move in moves]) for i in range(3))
        return updates, KerasAdamState(count=optax.safe_increment(state.count), mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def _moved(g, m, v, alpha, *, b1, b2, eps):
    """One variable's Keras update from its gradient `g` and moments `m`, `v`: `(how far it moves, new m, new v)`,
    m * alpha / (sqrt(v) + eps) down, in the moments' dtype."""
    m = m + (g - m) * (1 - b1)
    v = v + (jnp.square(g) - v) * (1 - b2)
    return -((m * alpha) / (jnp.sqrt(v) + jnp.asarray(eps, m.dtype))), m, v


def _alpha(lr, count: jax.Array, b1: float, b2: float, dtype) -> jax.Array:
    """Keras' bias-corrected step size at update `count + 1`, lr * sqrt(1 - b2^t) / (1 - b1^t), in `dtype`."""
    t = (count + 1).astype(dtype)
    b1_power = jnp.power(jnp.asarray(b1, dtype), t)
    b2_power = jnp.power(jnp.asarray(b2, dtype), t)
    return jnp.asarray(lr, dtype) * jnp.sqrt(1 - b2_power) / (1 - b1_power)
