"""Orbax checkpoints on a data-parallel mesh: a save runs no device program, and the restore is bit for bit."""

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
        assert checkpoint.latest_record(mngr) == {"batch": 3}  # the record beside the state
        return checkpoint.restore_latest(mngr, target, shardings)

    return read


def _preset_params(directory, state):
    native.save(directory / "preset", backbone_config=BertConfig(40, 1, 2, 8, 16), params=state)
    return lambda target, shardings: native.restore_params(directory / "preset", target, shardings)


@pytest.mark.parametrize("write", [_train_checkpoint, _preset_params])
def test_a_replicated_tree_saves_without_device_work_and_restores_exactly(tmp_path, write):
    """Orbax's default cuts each array replicated over the 8 devices into 8 slices, one jitted slice op each (and a
    compile per slice shape): ~1,000 ops per save of a small classifier. One process writes every replica itself."""
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
    assert compiled == []
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    restored = read(abstract, jax.tree.map(lambda a: a.sharding, state))
    for name, array in state.items():
        assert restored[name].sharding == array.sharding, name
        np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(array), err_msg=name)
