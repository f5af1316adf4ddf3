"""The checks of what a user passes to `compile`, `fit`, `evaluate` and `predict` besides the data (`tasks/data.py`).

Each refusal is a ValueError that names the argument, what it got and what to pass. They all run before any device
work or change to the classifier, so a rejected call leaves it as it was.
"""

from __future__ import annotations

import difflib
import inspect
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from flaxbert import gc_pause
from flaxbert.parallel import make_mesh
from flaxbert.training.state import optimizer_update


def is_int(value) -> bool:
    """An int or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value, alternatives: str = "") -> int:
    """`value` as an int (numpy integers too), or a ValueError naming the argument."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be {alternatives}a positive integer, got {value!r}.")
    return int(value)


def non_negative_int(name: str, value) -> int:
    """`value` as an int (numpy integers too), 0 included, or a ValueError naming the argument."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def batch_size(value) -> int:
    """fit / evaluate / predict's `batch_size`: a positive integer, or None for Keras' default, 32."""
    return 32 if value is None else positive_int("batch_size", value, "None (32) or ")


def validation_split(value) -> float:
    """fit's `validation_split` (Keras'): the fraction of the examples, the last ones, held out for validation."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (number and 0 <= value < 1):
        raise ValueError(
            f"validation_split must be a number in [0, 1), the fraction of x held out (its last rows), got {value!r}."
        )
    return float(value)


def flag(name: str, value) -> bool:
    """`value` as a bool (numpy's too), or a ValueError naming the argument."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def verbosity(value) -> int:
    """fit / evaluate / predict's `verbose`, as Keras takes it: 0 (silent), 1 (a progress bar), 2 (one line: per
    epoch in fit, at the end in evaluate and predict) or "auto": 1 where a bar redraws in place (stderr a terminal,
    or a notebook), else 2, as Keras' bar prints only its last line where output is not interactive (a service's or a
    batch job's log got every redraw of every call's bar)."""
    if isinstance(value, str) and value == "auto":
        return 1 if interactive_output() else 2
    if isinstance(value, (bool, np.bool_)) or (is_int(value) and 0 <= value <= 2):
        return int(value)
    raise ValueError(f"verbose must be 0 (silent), 1 (a progress bar), 2 (one line) or 'auto', got {value!r}.")


def interactive_output() -> bool:
    """Whether a progress bar on stderr redraws in place: a terminal, or a Jupyter / Colab kernel (tqdm's widget)."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


def mesh(value) -> Mesh:
    """compile's `mesh`: None (every device, data parallel), a `(data, fsdp)` pair of ints, or a Mesh with the axes
    ("data", "fsdp"). A Mesh's axes are taken as Auto ones (the compiler propagates the shardings): `jax.make_mesh`
    makes Explicit axes by default, under which flaxbert's programs failed inside jax (sharding-in-types errors)."""
    if value is None:
        return make_mesh()
    if isinstance(value, Mesh):
        if tuple(value.axis_names) != ("data", "fsdp"):
            raise ValueError(f"a Mesh for compile must have the axes ('data', 'fsdp'), got {value.axis_names}.")
        auto = (jax.sharding.AxisType.Auto,) * len(value.axis_names)
        return value if tuple(value.axis_types) == auto else Mesh(value.devices, value.axis_names, axis_types=auto)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(n) for n in value):
        return make_mesh(*(int(n) for n in value))
    raise ValueError(
        f"mesh must be None (every device, data parallel), a (data, fsdp) pair of ints such as (1, 8), or a "
        f"jax.sharding.Mesh with axes ('data', 'fsdp'); got {value!r}."
    )


def is_keras_object(value) -> bool:
    """Whether `value` is an object of Keras' (a loss or optimizer a Keras user passes to compile)."""
    return type(value).__module__.split(".")[0] == "keras"


def check_loss(loss, num_classes: int) -> None:
    """A loss of the form fit and evaluate call, `loss(outputs [B, C], labels [B]) -> [B]`, on abstract arrays."""
    if is_keras_object(loss):
        raise ValueError(
            f"loss is a Keras loss ({type(loss).__name__}), which takes (y_true, y_pred) and reduces the batch; "
            "flaxbert calls loss(outputs, labels) for one loss per example: use loss='auto' (sparse categorical "
            "cross-entropy) or such a function."
        )
    rows = num_classes + 3  # a batch size no class count can be mistaken for
    outputs = jax.ShapeDtypeStruct((rows, num_classes), np.float32)
    labels = jax.ShapeDtypeStruct((rows,), np.int32)
    try:
        out = jax.eval_shape(loss, outputs, labels)
        shape, dtype = out.shape, out.dtype
    except Exception as error:  # whatever the user's function raises, said in the terms of the call
        raise ValueError(
            f"loss(outputs [B, {num_classes}] float32, labels [B] int32) failed ({type(error).__name__}: "
            f"{str(error)[:200]}); a loss takes (outputs, labels) and returns one loss per example, shape [B]."
        ) from None
    if shape != (rows,):
        raise ValueError(
            f"loss must return one loss per example (shape [B]); for outputs [{rows}, {num_classes}] it returned "
            f"shape {list(shape)}: do not reduce or reshape it (fit weights and averages over the real rows itself)."
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"loss must return real floating-point losses, for gradients to follow; it returned {dtype} (a count "
            "or a 0/1 error has no gradient: return a float function of outputs, e.g. a cross-entropy)."
        )


def check_optimizer(tx, boxed_params) -> None:
    """An optax optimizer that fit can drive: `init` and `update(grads, state, params, value=loss)` (the extra
    argument where it takes extra arguments) traced on the model's abstract params, so that one needing more (the
    line search of `optax.lbfgs` wants `grad` and `value_fn`) is refused here, not inside the first step."""

    def one_update(params, value):
        return optimizer_update(tx, params, tx.init(params), params, value)

    try:
        with gc_pause.paused():
            jax.eval_shape(one_update, nn.unbox(boxed_params), jax.ShapeDtypeStruct((), np.float32))
    except Exception as error:  # whatever the optimizer raises, said in the terms of the call
        raise ValueError(
            f"optimizer.update(grads, state, params, value=loss) failed on this model's params "
            f"({type(error).__name__}: {str(error)[:200]}): fit passes each step's gradients, the optimizer "
            "state, the params and (to optimizers taking extra arguments) the batch's loss as value=; an optimizer "
            "that needs other arguments (optax.lbfgs: grad, value_fn) cannot drive fit."
        ) from None


# The metrics compile takes: keras-hub's default, SparseCategoricalAccuracy, by any of its Keras names.
_ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy")


def check_metrics(metrics) -> None:
    """Accepts "auto", or a list or tuple of accuracy metrics (Keras' names, or Keras' SparseCategoricalAccuracy
    object): fit and evaluate always report the loss and the accuracy."""
    if isinstance(metrics, str) and metrics == "auto":
        return

    def accuracy(metric) -> bool:
        if isinstance(metric, str):
            return metric in _ACCURACY_NAMES
        return type(metric).__name__ == "SparseCategoricalAccuracy" and type(metric).__module__.startswith("keras")

    if not (isinstance(metrics, list | tuple) and metrics and all(accuracy(m) for m in metrics)):
        raise ValueError(
            f"metrics must be 'auto' or a list of accuracy metrics ({', '.join(map(repr, _ACCURACY_NAMES))} or "
            f"keras.metrics.SparseCategoricalAccuracy()), got {metrics!r}: fit and evaluate report the loss and the "
            "accuracy, as 'loss' and 'accuracy', and no other metric."
        )


# Keras' fit / evaluate / predict / compile keywords that flaxbert has no use for: the values that ask for nothing
# (taken, so Keras code that spells out its defaults runs) and what to do instead of any other.
_KERAS_KEYWORDS = {
    "callbacks": ((None, []), "fit(on_log=fn) gets every logged row of training metrics and each validation's, and "
                  "fit(checkpoint_dir=...) saves checkpoints; Keras callbacks do not run here"),
    "initial_epoch": ((0,), "fit(checkpoint_dir=...) resumes an interrupted run exactly where it stopped"),
    "steps_per_epoch": ((None,), "each epoch is one pass over x: pass fewer rows for fewer steps"),
    "validation_steps": ((None,), "validation covers all of validation_data: pass fewer rows for fewer steps"),
    "validation_freq": ((1,), "validation runs after every epoch"),
    "steps": ((None,), "it covers all of x: pass fewer rows for fewer steps"),
    "run_eagerly": ((False, None), "every step runs under jax.jit"),
    "steps_per_execution": ((1,), "each step is one jitted call, dispatched while the one before runs"),
    "weighted_metrics": ((None, []), "the loss is weighted by sample_weight and the accuracy is not, as Keras' "
                         "compile metrics are not"),
    "loss_weights": ((None,), "a classifier has one output and one loss"),
}  # fmt: skip
_KERAS_KEYWORDS_OF = {
    "fit": ("callbacks", "initial_epoch", "steps_per_epoch", "validation_steps", "validation_freq"),
    "evaluate": ("callbacks", "steps"),
    "predict": ("callbacks", "steps"),
    "compile": ("run_eagerly", "steps_per_execution", "weighted_metrics", "loss_weights"),
}  # fmt: skip


def keras_keywords(method, given: dict) -> None:
    """Takes Keras-only keywords passed to `method` (a classifier's fit, evaluate, predict or compile) where their
    value asks for nothing; refuses any other value saying what to do instead, and any other keyword as Python
    would, with the closest names."""
    name = method.__name__
    for keyword, value in given.items():
        if keyword not in _KERAS_KEYWORDS_OF[name]:
            known = [p for p in inspect.signature(method).parameters if p != "keras_options"]
            close = difflib.get_close_matches(keyword, known + list(_KERAS_KEYWORDS_OF[name]), n=3)
            raise TypeError(f"{name}() got an unexpected keyword argument {keyword!r}"
                            + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "."))  # fmt: skip
        nothing, instead = _KERAS_KEYWORDS[keyword]
        number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
        empty = isinstance(value, list | tuple) and not value and [] in nothing
        if not (empty or any(value is v or (number and value == v) for v in nothing)):
            raise ValueError(f"{name}({keyword}={value!r}): flaxbert's {name} has no {keyword}; {instead}.")


def check_seed(seed) -> None:
    if seed is not None and (not is_int(seed) or not 0 <= seed < 2**31):
        raise ValueError(f"seed must be None or an integer in [0, 2**31), got {seed!r}.")


def check_checkpoint_dir(checkpoint_dir) -> None:
    """None, or a path whose existing parts are directories, and whose integer-named folders (where Orbax keeps a
    step each) are not all something else: someone's own "1/" and "2/" were taken for damaged steps, and the fix
    named was to delete them. (Beside real steps, such a folder is a damaged step, which the resume names.)"""
    if checkpoint_dir is None:
        return
    if not isinstance(checkpoint_dir, str | pathlib.PurePath) or not str(checkpoint_dir):
        raise ValueError(f"checkpoint_dir must be a directory path or None, got {checkpoint_dir!r}.")
    path = pathlib.Path(checkpoint_dir)
    for place in (path, *path.absolute().parents):
        if place.exists() and not place.is_dir():
            raise ValueError(f"checkpoint_dir {str(checkpoint_dir)!r}: {str(place)!r} is a file; pass a directory.")
    steps = sorted(p for p in path.iterdir() if p.is_dir() and p.name.isdigit()) if path.is_dir() else []
    foreign = [p.name for p in steps if not (p / "_CHECKPOINT_METADATA").is_file()]
    if foreign and len(foreign) == len(steps):
        raise ValueError(
            f"checkpoint_dir {str(checkpoint_dir)!r} holds folders named as checkpoint steps that are no checkpoints "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}: without Orbax's _CHECKPOINT_METADATA). "
            "fit keeps each step in a folder named by its number: pass a new or empty checkpoint_dir."
        )


def unpack_validation(validation_data):
    """fit's `validation_data` as `(x, y, sample_weight or None)`; a list of two or three is taken as Keras does."""
    if isinstance(validation_data, tuple | list) and len(validation_data) in (2, 3):
        x, y, *weight = validation_data
        return x, y, weight[0] if weight else None
    raise ValueError("validation_data must be a tuple (x, y) or (x, y, sample_weight).")
