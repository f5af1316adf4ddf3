"""The jitted programs the loops run (train, eval and predict steps, and the train state's creation), their shardings
over the mesh, and the specs they compile for before their arguments exist."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxbert import gc_pause
from flaxbert.compilation import inference_compiler_options, train_compiler_options
from flaxbert.models.abstract import abstract_params
from flaxbert.models.compute_params import cast_dtype, compute_copies, projections, with_copies
from flaxbert.parallel import RULES, batch_sharding, check_hidden_dim, replicated
from flaxbert.training import steps
from flaxbert.training.state import TrainState


def state_shardings(model, cfg, tx, mesh):
    """The abstract train state and its shardings, derived from the params' logical axes and the rules table.

    An optimizer state leaf shaped otherwise than the param it follows carries that param's logical axes, which may
    not fit it: Adafactor's factored second moments are a row and a column vector per matrix, and placeholders of
    shape (1,) for a vector. A leaf its sharding does not fit (more axes than dims, or a dim the mesh axes do not
    divide) is replicated instead."""
    check_hidden_dim(mesh, cfg.hidden_dim)
    params = abstract_params(model, cfg)
    with gc_pause.paused():
        boxed = jax.eval_shape(lambda p: TrainState.create(p, tx, compute_dtype=cfg.dtype), params)
    abstract = nn.unbox(boxed)
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, RULES)

    def fitting(sharding, leaf):
        return replicated(mesh) if isinstance(leaf, jax.ShapeDtypeStruct) and not _fits(sharding, leaf) else sharding

    return abstract, jax.tree.map(fitting, shardings, abstract)


def _fits(sharding, leaf) -> bool:
    """Whether `sharding` can split an array of `leaf`'s shape: no more axes than dims, each split dim divisible."""
    if len(sharding.spec) > leaf.ndim:
        return False
    try:
        sharding.shard_shape(leaf.shape)
    except ValueError:  # jax's IndivisibleError
        return False
    return True


def jit_create_state(tx, shardings):
    """A function `(params, opt_state=None) -> TrainState` at step 0: the params copied onto their shardings, and a
    fresh optimizer state built there, or `opt_state` continued (an earlier fit's state for the same `tx` and
    shardings; it is consumed: donated to the new state, which takes its buffers without a copy).

    Build it once per (optimizer, mesh) and reuse it: each call of this factory is a new program to compile.
    """

    def build(params, opt_state):
        # The params are copied: train steps donate the state, and the caller's params must survive a failed or
        # interrupted fit. Copied inside the program that builds the optimizer state, not by a separate
        # `device_put(may_alias=False)`: one dispatch, and on CPU ~4x less time per fit (bert_tiny 45 -> 12 ms).
        return TrainState.create(jax.tree.map(jnp.copy, params), tx, opt_state, shardings.compute_dtype)

    create = jax.jit(build, out_shardings=shardings, donate_argnums=1)

    def create_state(params, opt_state=None) -> TrainState:
        return create(jax.device_put(params, shardings.params), opt_state)  # moves only the params not in place

    return create_state


def create_state(params, tx, shardings) -> TrainState:
    """One-off `jit_create_state(tx, shardings)(params)`."""
    return jit_create_state(tx, shardings)(params)


def restored_state(abstract, saved: dict, shardings) -> TrainState:
    """The train state of `abstract`'s kind holding `saved` (what `TrainState.saved` wrote to a checkpoint, read
    back), with the casts of its params made again on their shardings. `saved` is consumed: its arrays move into the
    returned state."""
    restore = jax.jit(abstract.restored, out_shardings=shardings, donate_argnums=0)
    return restore(saved) if abstract.compute_dtype is not None else abstract.restored(saved)


def _traced_on(mesh, step):
    """`step`, traced with `mesh` as the abstract mesh: model code that maps kernels over the mesh's shards (the
    fused attention) reads it there."""

    def traced(*args):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return step(*args)

    name = getattr(step, "func", step).__name__  # a partial's function's
    traced.__name__ = traced.__qualname__ = name  # the program's name in profiles and logs
    return traced


def jit_train_step(model, mesh, shardings, *, loss_fn):
    """The jitted `(state, sums, batch, seed) -> (state, sums)` of `steps.train_step_summed`; the state is donated.

    `seed` (the dropout seed, `seed_array(seed, mesh)`) is an argument, not a constant: one program for every seed.
    """

    def train_step_summed(state, sums, batch, seed):
        return steps.train_step_summed(state, sums, batch, model=model, seed=seed, loss_fn=loss_fn)

    return jax.jit(
        _traced_on(mesh, train_step_summed),
        donate_argnums=0,  # not the sums: fit passes the same zeros again whenever a total restarts
        in_shardings=(shardings, replicated(mesh), batch_sharding(mesh), replicated(mesh)),
        out_shardings=(shardings, replicated(mesh)),
        compiler_options=train_compiler_options(mesh),
    )


def seed_array(seed: int, mesh) -> jax.Array:
    """A train step's `seed` argument: the same dropout keys as `jax.random.key(seed)` for seeds in [0, 2**31)."""
    return jax.device_put(np.uint32(seed), replicated(mesh))


def device_zero_sums(mesh) -> dict:
    return jax.device_put(steps.zero_sums(), replicated(mesh))


def zero_totals(mesh) -> dict:
    """The running metric totals the train step adds into, before any step: the epoch's and the on_log window's."""
    zeros = device_zero_sums(mesh)
    return {"epoch": zeros, "window": zeros}


def jit_eval_step(model, mesh, param_shardings, *, loss_fn):
    """The jitted `(params, sums, batch) -> sums` of `steps.eval_step_summed`."""
    step = functools.partial(steps.eval_step_summed, model=model, loss_fn=loss_fn)
    return jax.jit(_traced_on(mesh, step), in_shardings=(param_shardings, replicated(mesh), batch_sharding(mesh)),
                   out_shardings=replicated(mesh), compiler_options=inference_compiler_options(mesh))  # fmt: skip


def jit_predict_step(model, mesh, param_shardings):
    step = functools.partial(steps.predict_step, model=model)
    return jax.jit(_traced_on(mesh, step), in_shardings=(param_shardings, batch_sharding(mesh)),
                   out_shardings=batch_sharding(mesh), compiler_options=inference_compiler_options(mesh))  # fmt: skip


def model_params(params, dtype):
    """`params` as the model reads them in the compute `dtype`: each Projection's kernel and bias cast to it by one
    program, on the param's sharding, the other params as they are (`compute_params.py`). What `evaluate` and
    `predict` give their steps, as a fit gives its validation its train state's `model_params`: in a 16-bit predict
    step each cast was a kernel of its own, in every step (81 of a BERT-base bf16 predict step's 203 kernels, compiled
    for an H100). The same values: the same casts of the same params. Float32 params are returned as they are."""
    dtype = cast_dtype(dtype)
    if dtype is None:
        return params
    shardings = projections(jax.tree.map(lambda a: a.sharding, params))  # the state's casts have these too
    return with_copies(params, jax.device_put(_cast_copies(params, dtype), shardings))


_cast_copies = jax.jit(compute_copies, static_argnums=1)


def state_spec(abstract, shardings):
    """A train state's spec (`compile_ahead.spec`) from `state_shardings`' abstract state and shardings: what the
    state's programs compile for, before the state exists. (The shardings hold a leaf where a frozen backbone's
    optimizer state holds an empty `MaskedNode`: that stays as it is.)"""

    def one(sharding, a):
        if not isinstance(a, jax.ShapeDtypeStruct):
            return a
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding, weak_type=a.weak_type)

    return jax.tree.map(one, shardings, abstract)
