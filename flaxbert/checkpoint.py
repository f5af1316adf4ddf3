"""Orbax checkpoints: training checkpoints (the train state plus a JSON record of the run's data position and seed),
and the one-tree reads and writes of a preset's params.

Orbax writes each step to a temporary directory and renames it when complete, so a kill mid-save never leaves a
half-written checkpoint that looks finished. Restores always name the target shardings, so a checkpoint written on one
mesh restores onto another.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys
import traceback

import jax
import numpy as np
import orbax.checkpoint as ocp

from flaxbert.presets import json_file
from flaxbert.state_digest import digests


def manager(directory, keep: int = 3) -> ocp.CheckpointManager:
    drop_closed_loop_reports()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    handlers = {"state": _tree_handler(), "record": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options, item_handlers=handlers)


def write_tree(path, tree) -> None:
    """Saves a tree of arrays at `path` (a new directory), every process its shards; blocks until written."""
    with ocp.Checkpointer(_tree_handler()) as checkpointer:
        checkpointer.save(path, args=ocp.args.PyTreeSave(tree))


def read_tree(path, target):
    """The tree saved at `path`, restored onto the shapes, dtypes and shardings of `target`'s ShapeDtypeStructs."""
    drop_closed_loop_reports()
    with ocp.Checkpointer(_tree_handler()) as checkpointer:
        return checkpointer.restore(path, args=_restore(target))


_dropping_closed_loop_reports = False


def drop_closed_loop_reports() -> None:
    """Called before Orbax reads anything. When a read fails (a truncated array file), the reads it started still
    finish on TensorStore's threads and post their results to the asyncio loop Orbax closes as the error leaves it;
    each post raises "Event loop is closed", which Python reports as an unraisable exception: 4 to 100 tracebacks
    printed around flaxbert's own clear error. The reads of other arrays of the damaged file fail too, in coroutines
    nobody awaits any more, and are reported as they are collected, often at interpreter exit (dozens of 60-line
    TensorStore specs). This chains a filter in front of `sys.unraisablehook` (once per process) that drops those
    two kinds of reports, and only those."""
    global _dropping_closed_loop_reports
    if _dropping_closed_loop_reports:
        return
    previous = sys.unraisablehook

    def hook(report) -> None:
        if not (_closed_loop_report(report) or _failed_read_report(report)):
            previous(report)

    sys.unraisablehook, _dropping_closed_loop_reports = hook, True


def _closed_loop_report(report) -> bool:
    """An unraisable report of asyncio's `call_soon_threadsafe` on a closed loop."""
    error = report.exc_value
    if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed":
        return False
    asyncio_file = os.path.join("asyncio", "base_events.py")
    frames = traceback.extract_tb(report.exc_traceback)
    return any(f.name == "call_soon_threadsafe" and f.filename.endswith(asyncio_file) for f in frames)


def _failed_read_report(report) -> bool:
    """An unraisable report of an Orbax array read that failed after the restore it served had already raised."""
    code = getattr(report.object, "cr_code", None)
    return (
        code is not None
        and code.co_name == "_read_array_index_and_device_put"
        and f"{os.sep}orbax{os.sep}" in code.co_filename
        and _READ_ERROR in str(report.exc_value)
    )


def _restore(target) -> ocp.args.PyTreeRestore:
    return ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(target))


def _tree_handler() -> ocp.PyTreeCheckpointHandler:
    return ocp.PyTreeCheckpointHandler(type_handler_registry=_array_types())


def _array_types() -> ocp.type_handlers.TypeHandlerRegistry:
    """Orbax's array types, with replica-parallel writes only where there are several processes to share them.

    By default Orbax cuts every array replicated over several devices into one slice per device (one dispatched
    device op each, and one compiled program per slice shape) so that the processes holding the replicas write a part
    each. In one process it writes every slice itself: a data-parallel state on 8 devices took ~1,000 slice ops per
    save and ~100 compiles on the first (0.7 s per save of a 2-layer model on CPU, 5 s for the first).
    """
    scalars = ocp.type_handlers.ScalarHandler()
    arrays = ocp.type_handlers.ArrayHandler(use_replica_parallel=jax.process_count() > 1)
    return ocp.type_handlers.create_type_handler_registry(
        (int, scalars),
        (float, scalars),
        (np.number, scalars),
        (np.ndarray, ocp.type_handlers.NumpyHandler()),
        (jax.Array, arrays),
    )


def save(mngr: ocp.CheckpointManager, step: int, state, record: dict) -> None:
    """Saves `state` (step, params, opt_state) and `record` (data position, seed, ...) under `step`; blocks. The
    record also holds each array's digest (`state_digest`), which `restore_latest` checks."""
    if step in mngr.all_steps():
        return
    record = dict(record, digest=_digests(state))
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state), record=ocp.args.JsonSave(record)))
    mngr.wait_until_finished()


def _digests(state) -> dict[str, list]:
    """{Orbax's dotted name: [dtype written, digest]} of each array of `state` (a typed PRNG key as its key data)."""
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    values = digests([jax.random.key_data(leaf) if _is_key(leaf) else leaf for _, leaf in flat])
    return {_dotted(path): list(value) for (path, _), value in zip(flat, values, strict=True)}


def _check_digests(mngr, step: int, saved: dict | None, restored) -> None:
    """Refuses a restored state whose arrays do not hold the bits saved: a data file's damage that Orbax read through.
    Arrays a checkpoint written before digests lacks, or restored as another dtype, are not compared."""
    if not saved:
        return
    now = _digests(restored)
    damaged = [name for name, (dtype, value) in now.items() if saved.get(name, [None])[0] == dtype
               and saved[name][1] != value]  # fmt: skip
    if damaged:
        where = pathlib.Path(mngr.directory) / str(step)
        more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
        raise _unusable(mngr, step, "is damaged", f"the array {damaged[0]}{more} read back other bits than were "
                        f"saved (its digest differs): a file under {where} is corrupt")  # fmt: skip


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
    # `shardings` is a prefix of the state: a frozen backbone's optimizer state holds empty `MaskedNode`s where the
    # shardings hold one sharding (applying to no array).
    target = jax.tree.map(
        lambda sharding, subtree: jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(_stored(a).shape, _stored(a).dtype, sharding=sharding), subtree
        ),
        shardings,
        abstract_state,
    )
    step = mngr.latest_step()
    if step is None:
        raise CheckpointError(f"{mngr.directory} holds no finished checkpoint to restore (no step folder).")
    _check_fits(mngr, step, abstract_state)
    try:
        both = mngr.restore(step, args=ocp.args.Composite(state=_restore(target), record=ocp.args.JsonRestore()))
    except Exception as error:  # damage (the shapes matched above), or arrays named otherwise than this state's
        damaged = _unreadable_array(error)
        if damaged is None:
            raise _unusable(mngr, step, _MISFIT, error) from None
        where = pathlib.Path(mngr.directory) / str(step)
        raise _unusable(mngr, step, "is damaged", f"{damaged} cannot be read: a file under {where} is truncated or "
                        "corrupt") from None  # fmt: skip
    _check_digests(mngr, step, (both["record"] or {}).get("digest"), both["state"])
    return jax.tree.map(_as_saved_from, abstract_state, both["state"])


_READ_ERROR = "Encountered error while reading array index"  # Orbax's message for an array file it cannot decode


def _unreadable_array(error: Exception) -> str | None:
    """`the array NAME` (or `an array`) where `error` is Orbax failing to read an array's data, else None."""
    text = str(error)
    if _READ_ERROR not in text:
        return None
    # TensorStore's spec in the message names the array's path inside the checkpoint (the others are absolute)
    names = re.findall(r"'path': '([^'/][^']*?)/?'", text)
    return f"the array {names[-1]}" if names else "an array"


def _check_fits(mngr, step: int, abstract_state) -> None:
    """Compares the saved arrays' count and shapes with the state's before restoring, so that a checkpoint of another
    model or optimizer is refused with the array that differs (and without a failed Orbax restore, whose leftover
    tasks print tracebacks at interpreter exit). Arrays are matched by Orbax's dotted names; a name only one side has
    is left to the restore itself, which is the judge."""
    try:
        saved = saved_shapes(mngr.item_metadata(step)["state"])
    except Exception as error:
        raise _unusable(mngr, step, "cannot be read", error) from None
    if not saved:  # a step directory whose state holds nothing: not another model, a damaged save
        raise _unusable(mngr, step, "is damaged or incomplete", "its state holds no arrays")
    wanted = shapes_by_name(abstract_state)
    differ = [
        f"{name}: saved {saved[name]}, now {shape}" for name, shape in wanted.items() if saved.get(name, shape) != shape
    ]
    if len(saved) != len(wanted):
        differ.insert(0, f"{len(saved)} arrays saved, {len(wanted)} in this model and optimizer's state")
    if differ:
        raise _unusable(mngr, step, _MISFIT, "; ".join(differ[:3]))


def saved_shapes(metadata) -> dict[str, tuple[int, ...]]:
    """Orbax's metadata of a saved tree as {dotted name: shape}."""
    return {m.name: tuple(m.shape) for m in jax.tree.leaves(metadata)}


def shapes_by_name(tree) -> dict[str, tuple[int, ...]]:
    """A tree's arrays (or ShapeDtypeStructs) as {the dotted name Orbax saves each under: the saved shape}."""
    return {_dotted(path): tuple(_stored(leaf).shape) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _stored(leaf):
    """The shape and dtype Orbax writes for `leaf`: a typed PRNG key array (the noise key of `optax.noisy_sgd`'s
    state) as its key data, uint32 words, which is also how it reads it back."""
    return jax.eval_shape(jax.random.key_data, leaf) if _is_key(leaf) else leaf


def _as_saved_from(abstract, restored):
    """A restored leaf as the state holds it: key data wrapped back into a typed key of `abstract`'s kind."""
    if not _is_key(abstract):
        return restored
    kinds = []
    jax.eval_shape(lambda key: kinds.append(jax.random.key_impl(key)), abstract)  # the kind of a key, from its type
    return jax.random.wrap_key_data(restored, impl=kinds[0])


def _dotted(path) -> str:
    """A tree path as Orbax names the array saved there: `params.backbone.token_embedding.embedding`."""
    return ".".join(str(getattr(key, "key", getattr(key, "idx", getattr(key, "name", key)))) for key in path)


_MISFIT = "does not fit this model and optimizer"


def _unusable(mngr, step: int, why: str, cause: Exception | str) -> CheckpointError:
    """The error for a latest checkpoint that cannot be resumed from: `why` (`_MISFIT`, or a kind of damage) and the
    fix for it."""
    if isinstance(cause, Exception):
        cause = short_cause(cause)
    where = pathlib.Path(mngr.directory) / str(step)
    fix = (
        f"Resume with the model, num_classes and optimizer that wrote it, or pass a new checkpoint_dir (or delete "
        f"{where} to fall back to the checkpoint before it)"
        if why == _MISFIT
        else f"Delete {where} to resume from the checkpoint before it, or pass a new checkpoint_dir"
    )
    return CheckpointError(f"the checkpoint of step {step} in {mngr.directory} {why} ({cause}). {fix}.")


def short_cause(error: Exception) -> str:
    """An Orbax or TensorStore error in one line of at most 300 characters, without the TensorStore spec (a page of
    JSON) that a read error appends."""
    text = str(error).split(" See full TensorStore details")[0]
    return f"{type(error).__name__}: " + " ".join(text.split())[:300]


_VALIDATED = "validated.json"  # beside the step directories (Orbax lists only integer-named ones)


def validated_steps(mngr: ocp.CheckpointManager) -> set[int] | None:
    """The epoch-end steps whose validation ran to its end (an epoch's checkpoint is saved before its validation,
    so a run killed while validating resumes at a step not in this set and validates first). None for a directory
    written before validations were recorded (a run's first save starts the record): its validations all ran."""
    path = pathlib.Path(mngr.directory) / _VALIDATED
    try:
        return {int(step) for step in json.loads(path.read_text())}
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise CheckpointError(
            f"{path} is damaged ({type(error).__name__}: {error}); delete it (the latest epoch's validation then runs "
            "again) or pass a new checkpoint_dir."
        ) from None


def mark_validated(mngr: ocp.CheckpointManager, step: int | None) -> None:
    """Records that the validation after the checkpoint of `step` finished (written whole, by process 0); None
    starts an empty record, as a run does before its first save."""
    if jax.process_index() != 0:
        return
    path = pathlib.Path(mngr.directory) / _VALIDATED
    json_file.write(path, [] if step is None else sorted((validated_steps(mngr) or set()) | {step}))
