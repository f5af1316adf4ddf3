"""Device mesh, logical-axis rules and the host/device boundary."""

from flaxbert.parallel.host import initialize_distributed, process_slice, to_global, to_host
from flaxbert.parallel.mesh import (
    MESH_AXES,
    RULES,
    batch_multiple,
    batch_sharding,
    check_hidden_dim,
    make_mesh,
    param_shardings,
    replicated,
)

__all__ = [
    "MESH_AXES",
    "RULES",
    "batch_multiple",
    "batch_sharding",
    "check_hidden_dim",
    "initialize_distributed",
    "make_mesh",
    "param_shardings",
    "process_slice",
    "replicated",
    "to_global",
    "to_host",
]
