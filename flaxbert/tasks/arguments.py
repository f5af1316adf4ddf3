"""The checks of what a user passes to `compile`, `fit`, `evaluate` and `predict` besides the data (`tasks/data.py`).

Each refusal is a ValueError that names the argument, what it got and what to pass. They all run before any device
work or change to the classifier, so a rejected call leaves it as it was.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
from jax.sharding import Mesh

from flaxbert.parallel import make_mesh


def is_int(value) -> bool:
    """An int or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value, alternatives: str = "") -> int:
    """`value` as an int (numpy integers too), or a ValueError naming the argument."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be {alternatives}a positive integer, got {value!r}.")
    return int(value)


def batch_size(value) -> int:
    """fit / evaluate / predict's `batch_size`: a positive integer, or None for Keras' default, 32."""
    return 32 if value is None else positive_int("batch_size", value, "None (32) or ")


def flag(name: str, value) -> bool:
    """`value` as a bool (numpy's too), or a ValueError naming the argument."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def verbosity(value) -> int:
    """fit / evaluate / predict's `verbose`, as Keras takes it: 0 (silent), 1 (a progress bar), 2 (one line: per
    epoch in fit, at the end in evaluate and predict) or "auto" (1)."""
    if isinstance(value, str) and value == "auto":
        return 1
    if isinstance(value, (bool, np.bool_)) or (is_int(value) and 0 <= value <= 2):
        return int(value)
    raise ValueError(f"verbose must be 0 (silent), 1 (a progress bar), 2 (one line) or 'auto', got {value!r}.")


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


def check_loss(loss, num_classes: int) -> None:
    """A loss of the form fit and evaluate call, `loss(outputs [B, C], labels [B]) -> [B]`, on abstract arrays."""
    if type(loss).__module__.split(".")[0] == "keras":
        raise ValueError(
            f"loss is a Keras loss ({type(loss).__name__}), which takes (y_true, y_pred) and reduces the batch; "
            "flaxbert calls loss(outputs, labels) for one loss per example: use loss='auto' (sparse categorical "
            "cross-entropy) or such a function."
        )
    rows = num_classes + 3  # a batch size no class count can be mistaken for
    outputs = jax.ShapeDtypeStruct((rows, num_classes), np.float32)
    labels = jax.ShapeDtypeStruct((rows,), np.int32)
    try:
        shape = jax.eval_shape(loss, outputs, labels).shape
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


def check_seed(seed) -> None:
    if seed is not None and (not is_int(seed) or not 0 <= seed < 2**31):
        raise ValueError(f"seed must be None or an integer in [0, 2**31), got {seed!r}.")


def check_checkpoint_dir(checkpoint_dir) -> None:
    """None, or a path whose existing parts are directories."""
    if checkpoint_dir is None:
        return
    if not isinstance(checkpoint_dir, str | pathlib.PurePath) or not str(checkpoint_dir):
        raise ValueError(f"checkpoint_dir must be a directory path or None, got {checkpoint_dir!r}.")
    path = pathlib.Path(checkpoint_dir)
    for place in (path, *path.absolute().parents):
        if place.exists() and not place.is_dir():
            raise ValueError(f"checkpoint_dir {str(checkpoint_dir)!r}: {str(place)!r} is a file; pass a directory.")


def unpack_validation(validation_data):
    """fit's `validation_data` as `(x, y, sample_weight or None)`; a list of two or three is taken as Keras does."""
    if isinstance(validation_data, tuple | list) and len(validation_data) in (2, 3):
        x, y, *weight = validation_data
        return x, y, weight[0] if weight else None
    raise ValueError("validation_data must be a tuple (x, y) or (x, y, sample_weight).")
