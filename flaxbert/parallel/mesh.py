"""One device mesh ("data", "fsdp") and one table of logical-axis rules.

Data parallel is `fsdp=1`, FSDP is `data=1`, and any 2-D mix is both: the code path is the same. Activations shard
their batch over both axes; params (which have no batch dim) shard their `embed` dim over `fsdp`.
"""

from __future__ import annotations

import functools
import sys

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp")
RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("vocab", None),
    ("positions", None),
    ("segments", None),
    ("norm", None),
    ("heads", None),
    ("kv", None),
    ("mlp", None),
    ("pooled", None),
    ("classes", None),
    ("lora", None),
)


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> Mesh:
    """A ("data", "fsdp") mesh over `devices` (default: every device); `data=-1` takes what `fsdp` leaves."""
    devices = list(jax.devices() if devices is None else devices)
    data, fsdp = mesh_shape(
        data, fsdp, len(devices), "pass data=-1 to fill the mesh, or a jax.sharding.Mesh over that many"
    )
    # Auto axes: the compiler propagates shardings through the model (no sharding-in-types annotations needed).
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh((data, fsdp), MESH_AXES, axis_types=auto, devices=devices)


def mesh_shape(data: int, fsdp: int, devices: int, fix: str) -> tuple[int, int]:
    """(data, fsdp) over `devices` devices, `data=-1` filled in; a ValueError that says what would fit otherwise
    (`fix`, in the caller's words, where data x fsdp is another count)."""
    if fsdp < 1:
        raise ValueError(f"fsdp={fsdp} must be a positive number of devices (only data may be -1: the rest).")
    if data != -1 and data < 1:
        raise ValueError(f"data={data} must be a positive number of devices, or -1 for the devices fsdp leaves.")
    if devices % fsdp:
        divisors = [str(n) for n in range(1, devices + 1) if devices % n == 0]
        raise ValueError(f"fsdp={fsdp} must divide the {devices} devices: pick one of {', '.join(divisors)}.")
    data = devices // fsdp if data == -1 else data
    if data * fsdp != devices:
        raise ValueError(f"data={data} x fsdp={fsdp} makes {data * fsdp} devices but {devices} are in use: {fix}.")
    return data, fsdp


def outside_mesh_context(method):
    """Runs `method` (a classifier's or backbone's public method) with any `jax.set_mesh` context cleared: the mesh
    its programs meet is the classifier's own (`compile(mesh=...)`). Traced under another (an explicit-axes
    `jax.make_mesh` set for the user's own code), they failed inside jax: "context mesh ... should match the mesh of
    sharding"."""

    @functools.wraps(method)
    def run(*args, **kwargs):
        if jax.sharding.get_abstract_mesh().empty:
            return method(*args, **kwargs)
        with jax.set_mesh(None):
            return method(*args, **kwargs)

    return passed_over_by_warnings(run)


_WRAPPERS: set = set()  # the code of decorators' wrappers (one code object each, however many methods they wrap)


def passed_over_by_warnings(wrapper):
    """Marks `wrapper` (a decorator's wrapping function) as a frame that `warning_stacklevel` passes over."""
    _WRAPPERS.add(wrapper.__code__)
    return wrapper


def warning_stacklevel(level: int) -> int:
    """warnings.warn's `stacklevel` that names the frame `level` would name without decorators' wrappers on the stack
    (`outside_mesh_context`'s and the others `passed_over_by_warnings` marks): a warning says the user's line, not
    the wrapper's."""
    frame, frames, left = sys._getframe(1), level, level - 1  # frame 1: the function that warns
    while left > 0 and frame.f_back is not None:
        frame = frame.f_back
        if frame.f_code in _WRAPPERS:
            frames += 1
        else:
            left -= 1
    return frames


def check_hidden_dim(mesh: Mesh, hidden_dim: int) -> None:
    fsdp = mesh.shape["fsdp"]
    if hidden_dim % fsdp:
        raise ValueError(f"hidden_dim={hidden_dim} is not divisible by the fsdp mesh axis ({fsdp}); pick a divisor.")


def param_shardings(boxed_abstract, mesh: Mesh):
    """NamedShardings for a tree of logically partitioned (boxed) abstract params, from the rules table."""
    return nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed_abstract), mesh, RULES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dim over every mesh axis; the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(MESH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
