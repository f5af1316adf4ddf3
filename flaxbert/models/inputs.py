"""Checks a batch of model inputs at the boundary, so bad input fails in the user's words, not deep inside jax."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from flaxbert.models.config import BertConfig
from flaxbert.parallel.mesh import warning_stacklevel


def input_keys(cfg) -> tuple[str, ...]:
    return (
        ("token_ids", "segment_ids", "padding_mask") if isinstance(cfg, BertConfig) else ("token_ids", "padding_mask")
    )


def as_array(value, name: str, fix: str, dtype=None) -> np.ndarray:
    """`np.asarray(value, dtype)`, or a ValueError that names `name` and says how to `fix` it where numpy cannot make
    one array of `value` (rows of different lengths, or items that are not numbers when `dtype` asks for them)."""
    try:
        return np.asarray(value, dtype=dtype)
    except (ValueError, TypeError) as error:
        reason = str(error).split(". ")[0]  # numpy's first sentence, e.g. "setting an array element with a sequence"
        raise ValueError(f"{name} is not one rectangular array of numbers (numpy: {reason}); {fix}") from None


def check_inputs(inputs, cfg, warn_level: int = 3) -> dict[str, np.ndarray]:
    """Validates a dict of [B, L] integer arrays for a backbone config on the host, values included, and returns
    them as numpy int32 (the given arrays themselves where they are int32 numpy arrays already).

    Warns about rows whose padding_mask marks no token, naming the frame `warn_level` up (the user's call: 3 for a
    method that calls this directly).

    Raises:
        ValueError: what `check_traced` refuses (keys, ranks, shapes, dtypes, an empty batch, the length), an input
            that is not one rectangular array, or an id outside the vocabulary / segment range.
    """
    keys = _check_keys(inputs, cfg)
    pad = "pad every example to one length (the preprocessor does) and mark the padding with 0 in padding_mask."
    arrays = {k: as_array(inputs[k], f"inputs[{k!r}]", pad) for k in keys}
    _check_arrays(arrays, cfg)
    empty = np.flatnonzero(~arrays["padding_mask"].astype(bool).any(axis=1))
    if empty.size:
        warnings.warn(
            f"inputs['padding_mask'] marks no token in {empty.size} row(s) (the first: row {empty[0]}): such a row "
            "has nothing to attend to, so what the model gives for it means nothing, and the references disagree "
            "(transformers attends evenly over its padding, as flaxbert does; keras-hub with dropout gives its "
            "attention's bias alone). Drop those rows, or mark at least their [CLS] token.",
            stacklevel=warning_stacklevel(warn_level),
        )
    _check_range(arrays["token_ids"], cfg.vocabulary_size, "token_ids", "vocabulary_size")
    if "segment_ids" in arrays:
        _check_range(arrays["segment_ids"], cfg.num_segments, "segment_ids", "num_segments")
    return {k: a.astype(np.int32, copy=False) for k, a in arrays.items()}  # int32 already (a preprocessor's): no copy


def check_traced(inputs, cfg) -> None:
    """Checks what an encoder's `__call__` can see of its inputs while it is traced: the keys, and each array's rank,
    shape and dtype (static under jit, so this costs nothing per step). The values (ids in range) are not visible
    there: `check_inputs` checks them on the host, and the embedding lookups read an out-of-range id as NaN.

    Raises:
        ValueError: `inputs` is not a dict of arrays with exactly `input_keys(cfg)`, an array is not [batch, length]
            like token_ids, an id array is not integer or padding_mask not integer or bool, the batch is empty, or
            the length exceeds `max_sequence_length`.
    """
    keys = _check_keys(inputs, cfg)
    for key in keys:
        if not (hasattr(inputs[key], "shape") and hasattr(inputs[key], "dtype")):
            raise ValueError(f"inputs[{key!r}] is a {type(inputs[key]).__name__}; pass an array (np.asarray(...)).")
    _check_arrays({key: inputs[key] for key in keys}, cfg)


def _check_range(array: np.ndarray, size: int, key: str, field: str) -> None:
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= size:
        raise ValueError(f"{key} must be in [0, {size}) ({field}={size}); found values from {low} to {high}.")


# transformers' names for the inputs, for the hint when a batch made for transformers reaches a flaxbert model
_TRANSFORMERS_NAMES = {"input_ids": "token_ids", "attention_mask": "padding_mask", "token_type_ids": "segment_ids"}


def _check_keys(inputs, cfg) -> tuple[str, ...]:
    """`input_keys(cfg)`, once `inputs` is found to be a dict with exactly those keys."""
    keys = input_keys(cfg)
    arrays = f"[batch, length] integer arrays with the keys {list(keys)}, as a preprocessor returns them"
    if not isinstance(inputs, Mapping):
        raise ValueError(f"the model takes a dict of {arrays}; got {type(inputs).__name__}.")
    missing = [k for k in keys if k not in inputs]
    extra = [k for k in inputs if k not in keys]
    if missing or extra:
        renamed = {theirs: ours for theirs, ours in _TRANSFORMERS_NAMES.items() if theirs in extra}
        raise ValueError(
            f"the model takes a dict of {arrays}; missing {missing}, unexpected {extra}."
            + (f" transformers' names are flaxbert's {renamed}." if renamed else "")
            + (" DistilBERT takes no segment_ids." if "segment_ids" in extra and "segment_ids" not in keys else "")
        )
    return keys


def _check_arrays(arrays: dict, cfg) -> None:
    """Ranks, shapes, dtypes, an empty batch and the length of `arrays` (numpy or jax arrays, or tracers)."""
    shape = tuple(arrays["token_ids"].shape)
    for key, array in arrays.items():
        if len(array.shape) != 2:
            fix = ("one example is a batch of one: add a leading axis, e.g. np.asarray(ids)[None]"
                   if len(array.shape) < 2
                   else "drop the extra axes, e.g. ids.reshape(-1, ids.shape[-1]) for rows of one length")  # fmt: skip
            raise ValueError(
                f"inputs[{key!r}] has shape {tuple(array.shape)}; every input must be 2-D, [batch, length] ({fix})."
            )
        if tuple(array.shape) != shape:  # broadcasting would apply one row's mask or segments to every row
            raise ValueError(
                f"inputs[{key!r}] has shape {tuple(array.shape)}; every input must be [batch, length] like token_ids "
                f"{shape}."
            )
        dtype = np.dtype(array.dtype)
        if not (np.issubdtype(dtype, np.integer) or (key == "padding_mask" and dtype.kind == "b")):
            cast = " (1 for tokens, 0 for padding; bool is taken too): pass mask.astype(int)" if (
                key == "padding_mask" and dtype.kind == "f") else ""  # fmt: skip
            raise ValueError(f"inputs[{key!r}] must hold integers{cast}, got dtype {dtype}.")
    if 0 in shape:
        raise ValueError(f"inputs are empty (shape {shape}); pass at least one token in one example.")
    if shape[1] > cfg.max_sequence_length:
        raise ValueError(
            f"token_ids has length {shape[1]}, longer than max_sequence_length={cfg.max_sequence_length}; "
            f"truncate the input (e.g. the preprocessor's sequence_length) to at most {cfg.max_sequence_length}."
        )
