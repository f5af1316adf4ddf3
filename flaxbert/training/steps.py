"""Pure, jittable steps. A batch is `{"inputs": {...}, "label": [B], "weight": [B], "mask": [B]}`.

`mask` is 1 for real rows and 0 for padding rows, and `weight` is the sample weight (0 on padding rows), so a padded
last batch is exact: metrics are sums plus counts, reduced over the whole global batch by the compiler. The loss is
weighted (Keras' "sum over batch size"); accuracy is not: it is the fraction of real rows classified correctly, as
Keras reports the metrics of `compile(metrics=...)`, which ignore `sample_weight` (only `weighted_metrics` use it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxbert.models.compute_params import cast_dtype


def sparse_categorical_crossentropy(outputs: jax.Array, labels: jax.Array, from_logits: bool = True) -> jax.Array:
    """Per-example cross-entropy in float32; on probabilities it clips to [1e-7, 1 - 1e-7] like Keras. A label outside
    [0, num_classes) gives NaN (jit cannot raise on values; the classifiers refuse such labels on the host): the
    lookups read label -1 as the last class, a finite loss of the wrong class."""
    outputs = outputs.astype(jnp.float32)
    if from_logits:
        loss = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
    else:
        probs = jnp.clip(outputs, 1e-7, 1.0 - 1e-7)
        loss = -jnp.log(jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0])
    return jnp.where((labels >= 0) & (labels < outputs.shape[-1]), loss, jnp.nan)


def _metrics(loss: jax.Array, outputs: jax.Array, batch) -> dict[str, jax.Array]:
    real = batch["mask"]
    correct = (jnp.argmax(outputs, -1) == batch["label"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss * batch["weight"]),
        "count": jnp.sum(real),
        "correct": jnp.sum(correct * real),
    }


def train_step(state, batch, *, model, seed, loss_fn):
    """One optimizer step. Dropout keys come from `fold_in(seed, step)`, so a resumed run draws the same masks.

    `seed`: an int, or a traced integer scalar (one compiled step for every seed). `loss_fn(outputs, labels)` gets
    what the model returns: with a softmax head (`activation="softmax"`) that is probabilities, so pass
    `functools.partial(sparse_categorical_crossentropy, from_logits=False)`, as the classifier objects do."""
    _check_compute_dtype(state, model)
    key = jax.random.fold_in(jax.random.key(seed), state.step)

    def objective(params):
        outputs = model.apply({"params": params}, batch["inputs"], train=True, rngs={"dropout": key})
        loss = loss_fn(outputs, batch["label"])
        # Keras' "sum over batch size": the weighted sum divided by the number of real examples.
        real = jnp.maximum(jnp.sum(batch["mask"]), 1.0)
        return jnp.sum(loss * batch["weight"]) / real, (loss, outputs)

    # The model reads the params' casts to its compute dtype where the state keeps them: their gradients are those
    # of the float32 params through the cast, less the cast back up, done here.
    (value, (loss, outputs)), grads = jax.value_and_grad(objective, has_aux=True)(state.model_params)
    grads = jax.tree.map(lambda grad, param: grad.astype(param.dtype), grads, state.params)
    return state.apply_gradients(grads, value), _metrics(loss, outputs, batch)


def _check_compute_dtype(state, model) -> None:
    """A state keeping casts to another compute dtype than the model's fed it params cast to that dtype (a float32
    model ran on bfloat16-rounded weights), without an error: checked as the step is traced. A state that keeps no
    casts is right for any model (the model casts its float32 params itself)."""
    cfg = getattr(model, "backbone", getattr(model, "cfg", None))
    dtype = getattr(cfg, "dtype", None)
    if dtype is not None and state.compute_dtype is not None and cast_dtype(dtype) != state.compute_dtype:
        made = state.compute_dtype.name
        raise ValueError(
            f"the train state was made for compute dtype {made}, the model computes in {dtype}: make the state with "
            f"TrainState.create(params, tx, compute_dtype=cfg.dtype) of the model's config (here {dtype!r})."
        )


def train_step_summed(state, sums: dict, batch, **step_args):
    """`train_step`, with its metrics added into every running total of `sums` (`{name: metric sums}`).

    The loop keeps its totals this way so that it runs no jax arithmetic of its own: each add outside the step is one
    more dispatch per step, paid on the host while the device waits. Same float32 adds, same order: same numbers.
    """
    state, metrics = train_step(state, batch, **step_args)
    return state, {name: jax.tree.map(jnp.add, total, metrics) for name, total in sums.items()}


def zero_sums() -> dict[str, np.ndarray]:
    """Running metric totals before any step: zeros shaped like a step's metrics (all float32 scalars)."""
    return dict.fromkeys(("loss_sum", "count", "correct"), np.zeros((), np.float32))


def eval_step(params, batch, *, model, loss_fn) -> dict[str, jax.Array]:
    outputs = model.apply({"params": params}, batch["inputs"])
    return _metrics(loss_fn(outputs, batch["label"]), outputs, batch)


def eval_step_summed(params, sums: dict, batch, **step_args) -> dict[str, jax.Array]:
    """`eval_step`'s metrics added into the running total `sums`, for the same reason as `train_step_summed`."""
    return jax.tree.map(jnp.add, sums, eval_step(params, batch, **step_args))


def predict_step(params, inputs, *, model) -> jax.Array:
    return model.apply({"params": params}, inputs)


def summarize(sums: dict) -> dict[str, float]:
    """Per-example loss and accuracy from summed metrics (host numbers): both over the real rows."""
    count = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / count, "accuracy": float(sums["correct"]) / count}
