"""Optimizer recipes: keras-hub's compile default, the recommended fine-tuning recipe, and what trains: the backbone
frozen, or its LoRA adapters alone."""

from __future__ import annotations

import functools
import numbers

import jax
import optax

from flaxbert.models import lora
from flaxbert.training.keras_adam import keras_adam


def keras_default(learning_rate: float = 5e-5) -> optax.GradientTransformation:
    """keras-hub's `compile()` default: `keras.optimizers.Adam(5e-5)` (REFERENCE §6.1), update for update.

    Keras adds its epsilon (1e-7) to sqrt(v) before bias correction, which `optax.adam` does not: on BERT's ~1e-5
    gradients their first updates differ by about half, so this is `keras_adam`, not `optax.adam(eps=1e-7)`.
    """
    return keras_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-7)


def weight_decay_mask(params):
    """Decay kernels, embeddings and LoRA adapters; never biases or LayerNorm scales (the standard BERT fine-tuning
    recipe)."""

    def decays(path, _):
        # The last dict key names the parameter (boxed abstract params add an attribute key after it).
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return names[-1] in ("kernel", "embedding", *lora.ADAPTER_PARAMS)

    return jax.tree_util.tree_map_with_path(decays, params)


def recommended(
    num_steps: int,
    learning_rate: float = 5e-5,
    warmup_fraction: float = 0.1,
    weight_decay: float = 0.01,
    clipnorm: float = 1.0,
) -> optax.GradientTransformation:
    """AdamW with decoupled weight decay (masked), linear warmup then linear decay to 0, and global-norm clipping.

    This is the recipe keras-hub's GLUE benchmark used (REFERENCE §6.1), with a warmup added.
    """
    schedule = warmup_linear_decay(num_steps, learning_rate, warmup_fraction)
    return optax.chain(
        optax.clip_by_global_norm(clipnorm),
        optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-6, weight_decay=weight_decay, mask=weight_decay_mask),
    )


def warmup_linear_decay(num_steps: int, learning_rate: float, warmup_fraction: float) -> optax.Schedule:
    """The recommended recipe's learning rate: linear from 0 to `learning_rate` over the warmup, then linear to 0.

    The warmup is `int(num_steps * warmup_fraction)` steps, the first at rate 0 (as transformers' linear warmup).
    With none (`warmup_fraction=0`, or too few steps for one) the first step runs at `learning_rate`.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer (the optimizer steps of the run), got {num_steps!r}.")
    if not 0.0 <= warmup_fraction <= 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1] (a share of num_steps), got {warmup_fraction!r}.")
    warmup = int(num_steps * warmup_fraction)
    decay = optax.linear_schedule(learning_rate, 0.0, max(1, num_steps - warmup))
    if warmup == 0:  # a 0-step warmup would still spend step 0 at rate 0
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup), decay], [warmup])


@functools.lru_cache(maxsize=16)
def freeze_backbone(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Applies `tx` to the head and zero updates to the `backbone` subtree (which keeps no optimizer state). One
    object per `tx` (kept for the last 16): the optimizer state a fit leaves is continued by the next fit with the
    same object, also after `compile(optimizer=classifier.optimizer)` rebuilt the steps."""

    def labels(params):
        label = {k: "frozen" if k == "backbone" else "train" for k in params}
        return {k: jax.tree.map(lambda _, name=label[k]: name, v) for k, v in params.items()}

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


@functools.lru_cache(maxsize=16)
def train_lora(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Applies `tx` to the head and to what `enable_lora` trains in the backbone (its adapters and the adapted
    layers' biases: `lora.trained_mask`), and zero updates to the rest of the backbone, which keeps no optimizer
    state. One object per `tx`, as `freeze_backbone`'s."""

    def labels(params):
        def label(trained):
            return "train" if trained else "frozen"

        backbone = jax.tree.map(label, lora.trained_mask(params["backbone"]))
        rest = {k: jax.tree.map(lambda _: "train", v) for k, v in params.items() if k != "backbone"}
        return {"backbone": backbone, **rest}

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
