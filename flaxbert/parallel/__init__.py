"""Device mesh, logical-axis rules, the host/device boundary and multi-process set-up."""

from flaxbert.parallel.distributed import initialize_distributed
from flaxbert.parallel.host import host_to_mesh, to_global, to_host
from flaxbert.parallel.mesh import (
    MESH_AXES,
    RULES,
    batch_sharding,
    check_hidden_dim,
    make_mesh,
    outside_mesh_context,
    param_shardings,
    replicated,
)

__all__ = [
    "MESH_AXES",
    "RULES",
    "batch_sharding",
    "check_hidden_dim",
    "host_to_mesh",
    "initialize_distributed",
    "make_mesh",
    "outside_mesh_context",
    "param_shardings",
    "replicated",
    "to_global",
    "to_host",
]
