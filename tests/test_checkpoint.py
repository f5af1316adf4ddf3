"""Orbax checkpoints on a data-parallel mesh: a save runs no slice programs (one digest program for training
checkpoints), the restore is bit for bit, and damage is named."""

import asyncio
import inspect
import json
import re
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from flaxbert import checkpoint
from flaxbert.models.config import BertConfig
from flaxbert.presets import native


def _train_checkpoint(directory, state):
    mngr = checkpoint.manager(directory)
    checkpoint.save(mngr, 7, state, {"batch": 3})

    def read(target, shardings):
        record = checkpoint.latest_record(mngr)  # the record beside the state, with each array's digest
        assert record.pop("digest").keys() == {"step", "kernel", "bias", "sharded"} and record == {"batch": 3}
        return checkpoint.restore_latest(mngr, target, shardings)

    return read


def _preset_params(directory, state):
    native.save(directory / "preset", backbone_config=BertConfig(40, 1, 2, 8, 16), params=state)
    return lambda target, shardings: native.restore_params(directory / "preset", target, shardings)


@pytest.mark.parametrize(("write", "programs"), [(_train_checkpoint, 1), (_preset_params, 0)])
def test_a_replicated_tree_saves_without_device_work_and_restores_exactly(tmp_path, write, programs):
    """Orbax's default cuts each array replicated over the 8 devices into 8 slices, one jitted slice op each (and a
    compile per slice shape): ~1,000 ops per save of a small classifier. One process writes every replica itself.
    A training checkpoint runs one program, the state's digest (`state_digest`)."""
    mesh = jax.make_mesh((8,), ("data",))
    replicated, rows = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    rng = np.random.default_rng(0)
    # Shapes no other test uses, so that a slice program would have to be traced and compiled here.
    state = {
        "step": jax.device_put(jnp.int32(7), replicated),
        "kernel": jax.device_put(rng.normal(size=(24, 40)).astype(np.float32), replicated),
        "bias": jax.device_put(rng.normal(size=(40,)).astype(np.float32), replicated),
        "sharded": jax.device_put(rng.normal(size=(16, 3)).astype(np.float32), rows),
    }
    compiled = []

    def listen(event, duration, **kwargs):
        if event.startswith("/jax/core/compile/"):
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        read = write(tmp_path, state)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled.count("/jax/core/compile/jaxpr_trace_duration") == programs
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    restored = read(abstract, jax.tree.map(lambda a: a.sharding, state))
    for name, array in state.items():
        assert restored[name].sharding == array.sharding, name
        np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(array), err_msg=name)


def test_reports_of_reads_posting_to_a_closed_event_loop_are_dropped_and_no_others(monkeypatch):
    """A failed Orbax read (a truncated array file) leaves its other reads finishing on TensorStore's threads, posting
    to the asyncio loop Orbax has closed: 4 to 100 "Event loop is closed" tracebacks printed around flaxbert's error."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    monkeypatch.setattr(checkpoint, "_dropping_closed_loop_reports", False)
    checkpoint.drop_closed_loop_reports()
    checkpoint.drop_closed_loop_reports()  # chained once per process
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed") as posted:
        loop.call_soon_threadsafe(print)
    same_words = RuntimeError("Event loop is closed")  # not from asyncio's call_soon_threadsafe: reported
    other = ValueError("a callback's own error")
    for error in (posted.value, same_words, other):
        report = types.SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=error.__traceback__,
                                       err_msg=None, object=None)  # fmt: skip
        sys.unraisablehook(report)
    assert [report.exc_value for report in seen] == [same_words, other]


def test_a_damaged_training_checkpoint_is_called_damaged_and_names_the_step_to_delete(tmp_path):
    """A truncated array file used to be reported as a checkpoint that "does not fit this model and optimizer", with
    300 characters of TensorStore spec and the advice to resume with the model that wrote it: the wrong fix. The
    advice given works: the checkpoint before it is kept (with only the latest kept, the suite passed). With none
    left, the error says so (it named "step None" before)."""
    state = {"params": {"kernel": np.arange(4096, dtype=np.float32).reshape(64, 64)}, "step": np.int32(7)}
    earlier = {"params": {"kernel": -state["params"]["kernel"]}, "step": np.int32(5)}
    mngr = checkpoint.manager(tmp_path)
    checkpoint.save(mngr, 5, earlier, {"batch": 1})
    checkpoint.save(mngr, 7, state, {"batch": 3})
    data_files = list((tmp_path / "7" / "state" / "ocdbt.process_0" / "d").iterdir())  # the arrays' chunks
    assert data_files
    for path in data_files:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), state)
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), state)
    step_dir = str(tmp_path / "7")
    with pytest.raises(checkpoint.CheckpointError) as refused:
        checkpoint.restore_latest(mngr, abstract, shardings)
    message = str(refused.value)
    assert f"step 7 in {tmp_path} is damaged (the array params.kernel cannot be read: a file under" in message
    assert f"Delete {step_dir} to resume from the checkpoint before it" in message
    assert "does not fit" not in message and "TensorStore" not in message
    shutil.rmtree(step_dir)
    restored = checkpoint.restore_latest(checkpoint.manager(tmp_path), abstract, shardings)
    assert int(restored["step"]) == 5
    np.testing.assert_array_equal(restored["params"]["kernel"], earlier["params"]["kernel"])
    shutil.rmtree(tmp_path / "5")
    empty = f"^{re.escape(str(tmp_path))} holds no finished checkpoint to restore"
    with pytest.raises(checkpoint.CheckpointError, match=empty):
        checkpoint.restore_latest(checkpoint.manager(tmp_path), abstract, shardings)


@pytest.mark.parametrize("where", [1 / 3, 1 / 2])
def test_a_data_file_that_reads_back_other_numbers_is_called_damaged(tmp_path, where):
    """Orbax checksums its shard index, not the arrays' data: a byte flipped inside a data file read back as other
    numbers, and a resumed run trained on from them (NaN, in a QA run of train.py). Each array's digest, saved in the
    record, is checked on restore; a checkpoint without digests (written before them) restores as it did."""
    state = {"params": {"kernel": np.arange(4096, dtype=np.float32).reshape(64, 64) / 7,
                        "bias": np.ones(64, jnp.bfloat16)}, "step": np.int32(7), "key": jax.random.key(3)}  # fmt: skip
    mngr = checkpoint.manager(tmp_path)
    checkpoint.save(mngr, 7, state, {"batch": 3})
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), state)
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), state)
    restored = checkpoint.restore_latest(mngr, abstract, shardings)  # undamaged: every digest matches
    np.testing.assert_array_equal(restored["params"]["kernel"], state["params"]["kernel"])
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
    largest = max((tmp_path / "7" / "state" / "ocdbt.process_0" / "d").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    largest.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError) as refused:
        checkpoint.restore_latest(mngr, abstract, shardings)
    assert (
        f"step 7 in {tmp_path} is damaged (the array params.kernel read back other bits than were saved (its "
        f"digest differs): a file under {tmp_path / '7'} is corrupt). Delete {tmp_path / '7'}"
    ) in str(refused.value)
    # what the digests caught: the same restore without them gives other numbers than were saved
    record = tmp_path / "7" / "record" / "metadata"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "digest"}))
    unchecked = checkpoint.restore_latest(checkpoint.manager(tmp_path), abstract, shardings)
    assert not np.array_equal(np.asarray(unchecked["params"]["kernel"]), state["params"]["kernel"])


def test_reports_of_orbax_reads_failing_after_their_restore_are_dropped(monkeypatch):
    """The failed restore's other array reads fail too, in coroutines nobody awaits, and are reported as they are
    collected, often at interpreter exit: dozens of 60-line TensorStore specs after flaxbert's one-line error."""
    from orbax.checkpoint._src.serialization import serialization

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    monkeypatch.setattr(checkpoint, "_dropping_closed_loop_reports", False)
    checkpoint.drop_closed_loop_reports()
    reader = serialization._read_array_index_and_device_put
    read = reader(**dict.fromkeys(inspect.signature(reader).parameters))  # a real one of its coroutines, not started
    read.close()

    async def someone_elses():
        pass

    other_coroutine = someone_elses()
    other_coroutine.close()
    failed = Exception("Encountered error while reading array index: (slice(0, 64, 1),). See full TensorStore details")
    unrelated = Exception("a read error of another kind")
    for owner, error in ((read, failed), (read, unrelated), (other_coroutine, failed)):
        report = types.SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=None, err_msg=None,
                                       object=owner)  # fmt: skip
        sys.unraisablehook(report)
    assert [(r.object, r.exc_value) for r in seen] == [(read, unrelated), (other_coroutine, failed)]
