"""The device a program being traced will run on, for the model code that picks a kernel by device."""

from __future__ import annotations

import jax


def target_device():
    """A local device of the platform of the mesh the program is traced under (flaxbert's loops trace their steps under
    theirs), else jax's default device (the one `jax.default_device` sets, else the first). A CPU mesh on a GPU host
    is a CPU program."""
    platform = getattr(jax.sharding.get_abstract_mesh().abstract_device, "platform", None)
    if platform is None:
        default = jax.config.jax_default_device  # a device, a platform name, or None
        if not isinstance(default, str):
            return default if default is not None else jax.devices()[0]
        platform = default
    return jax.local_devices(backend=platform)[0]


def is_cuda(device) -> bool:
    """Whether `device` is an NVIDIA GPU (a CUDA PJRT client; a ROCm GPU's platform is "gpu" too)."""
    return device.platform == "gpu" and "cuda" in getattr(device.client, "platform_version", "").lower()


def runs_triton_kernels(device) -> bool:
    """Whether `device` is an NVIDIA GPU of compute capability 8.0 or later: where flaxbert's Pallas kernels (compiled
    by Triton) may run."""
    try:
        capability = tuple(int(x) for x in device.compute_capability.split(".")[:2])
    except (AttributeError, TypeError, ValueError):  # no CUDA compute capability to read
        return False
    return is_cuda(device) and capability >= (8, 0)


def mesh_devices() -> int:
    """The devices of the mesh the program is traced under (1 without one)."""
    mesh = jax.sharding.get_abstract_mesh()
    return 1 if mesh.empty else mesh.size
