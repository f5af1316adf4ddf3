"""The params a model multiplies by in its compute dtype, cast once per optimizer update, not in every forward pass.

A `Projection` (`layers.py`) casts its float32 kernel and bias to the compute dtype before its matmul. In a bfloat16
train step each of those casts is a kernel of its own, reading every weight in float32 and writing it in bfloat16
(cuBLAS takes no float32 operand to convert on the fly): ~77 of a BERT-base step's 738 kernels on an H200, 0.3 GB of
its memory traffic at batch 32. A train state keeps the casts (`TrainState.compute_params`) and the optimizer update
writes them, as one more output of the fusion that writes each param, so the forward pass reads them as they are.

The numbers do not change: the forward pass multiplies by the same bfloat16 values (the cast of the same float32
params), and the gradient of a float32 param through a cast is the gradient of its cast, cast up, which is what the
train step takes (`steps.train_step`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PROJECTION_PARAMS = frozenset({"kernel", "bias"})  # a Projection's params, and no other module's


def cast_dtype(dtype):
    """The dtype a model computing in `dtype` casts its Projections' params to, or None for float32 (or None): nothing
    to cast."""
    return None if dtype is None or jnp.dtype(dtype) == jnp.float32 else jnp.dtype(dtype)


def compute_copies(params, dtype):
    """Every Projection's kernel and bias in `params` cast to the compute `dtype`, as a tree of those alone (the
    Projections' dicts under their paths); None for float32, where nothing is cast. `params` may hold boxed leaves
    (flax's logical-axis boxes): the copies keep the boxes, so they take the params' shardings."""
    dtype = cast_dtype(dtype)
    if dtype is None:
        return None
    found = projections(params)
    return None if found is None else jax.tree.map(lambda a: a.astype(dtype), found)


def projections(tree):
    """The Projections' dicts of `tree` (params, or a tree shaped like them: their shardings) under their paths, as
    they are, or None where it has none: the part of it `compute_copies` casts."""
    if not isinstance(tree, dict):
        return None
    if set(tree) == PROJECTION_PARAMS:
        return {name: tree[name] for name in sorted(tree)}
    found = {key: projections(value) for key, value in tree.items()}
    return {key: value for key, value in found.items() if value is not None} or None


def with_copies(params, copies):
    """`params` with each array that `copies` holds (`compute_copies`') in its place: what the model reads."""
    if copies is None:
        return params
    if set(copies) == PROJECTION_PARAMS:
        return copies
    return {key: with_copies(value, copies.get(key)) for key, value in params.items()}
