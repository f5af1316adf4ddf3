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


class CheckpointError(ValueError):
    """A checkpoint directory whose latest checkpoint cannot be read, or does not fit the model resuming from it."""


def latest_record(mngr: ocp.CheckpointManager) -> dict | None:
    step = mngr.latest_step()
    if step is None:
        return None
    try:
        return mngr.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]
    except Exception as error:  # Orbax, JSON and file errors alike: a damaged or foreign step directory
        raise _unusable(mngr, step, "cannot be read", error) from None


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, shardings):
    """The latest state, placed onto `shardings` (a tree like `abstract_state`)."""
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)
    step = mngr.latest_step()
    try:
        return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    except Exception as error:  # another model size, head or optimizer than the one that saved it, or damage
        raise _unusable(mngr, step, "does not fit this model and optimizer", error) from None


def _unusable(mngr, step: int, why: str, error: Exception) -> CheckpointError:
    detail = " ".join(str(error).split())[:300]
    return CheckpointError(
        f"the checkpoint of step {step} in {mngr.directory} {why} ({type(error).__name__}: {detail}). Resume with the "
        "model, num_classes and optimizer that wrote it, or pass a new checkpoint_dir (or delete that step's "
        "directory to fall back to the one before)."
    )
