"""Training checkpoints through Orbax: the train state plus a JSON record of the run's data position and seed.

Orbax writes each step to a temporary directory and renames it when complete, so a kill mid-save never leaves a
half-written checkpoint that looks finished. Restores always name the target shardings, so a checkpoint written on one
mesh restores onto another.
"""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp


def manager(directory, every_steps: int | None = None, keep: int = 3) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, record: dict) -> None:
    """Saves `state` (step, params, opt_state) and `record` (data position, seed, ...) under `step`; blocks."""
    if step in mngr.all_steps():
        return
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))
    mngr.wait_until_finished()


def latest_record(mngr: ocp.CheckpointManager) -> dict | None:
    step = mngr.latest_step()
    if step is None:
        return None
    return mngr.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, shardings):
    """The latest state, placed onto `shardings` (a tree like `abstract_state`)."""
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)
    step = mngr.latest_step()
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
