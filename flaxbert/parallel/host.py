"""The host/device boundary: numpy batches in, global jax arrays out, each process feeding its own slice."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding


def initialize_distributed() -> bool:
    """Calls `jax.distributed.initialize` when a multi-process job is configured in the environment.

    Detects the coordinator from `JAX_COORDINATOR_ADDRESS` (with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`) or lets
    jax auto-detect on TPU pods and SLURM/Open MPI when `FLAXBERT_DISTRIBUTED=1`. Must run before any other jax call.
    Returns whether it initialised.
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
        return True
    if os.environ.get("FLAXBERT_DISTRIBUTED") == "1":
        jax.distributed.initialize()
        return True
    return False


def process_slice(global_size: int) -> slice:
    """The rows of a global batch that this process feeds (processes split the batch evenly, in order)."""
    count, index = jax.process_count(), jax.process_index()
    if global_size % count:
        raise ValueError(f"a global batch of {global_size} cannot be split over {count} processes.")
    per = global_size // count
    return slice(index * per, (index + 1) * per)


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles this process's rows of every array into one global array sharded over the batch dim."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def to_host(tree):
    """A tree of global arrays as numpy on every process (gathers shards from the other processes if any)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def wait_for_every_process(name: str) -> None:
    """Returns once every process of a multi-process job has reached the point called `name` (alone: at once)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def process_0s(value: int) -> int:
    """The non-negative 32-bit `value` as process 0 has it, on every process: for a name (of a temporary
    directory, say) that every process draws at random and all must agree on."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.uint32(value)))
