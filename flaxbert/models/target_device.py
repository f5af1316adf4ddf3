"""The device a program being traced will run on, for the model code that picks a kernel by device."""

from __future__ import annotations

import os

import jax

# "0" turns off the Pallas kernels flaxbert picks by itself (`runs_triton_kernels`), for XLA's operations, the same
# math: the way out where a jax version cannot lower or compile them, and the A/B of all of them at once.
KERNELS_VARIABLE = "FLAXBERT_PALLAS_KERNELS"


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
    """Whether `device` is an NVIDIA GPU of compute capability 8.0 or later, and `$FLAXBERT_PALLAS_KERNELS` does not
    turn them off: where flaxbert's Pallas kernels (compiled by Triton) may run. Read as each program is traced."""
    try:
        capability = tuple(int(x) for x in device.compute_capability.split(".")[:2])
    except (AttributeError, TypeError, ValueError):  # no CUDA compute capability to read
        return False
    return is_cuda(device) and capability >= (8, 0) and pallas_kernels_allowed()


def pallas_kernels_allowed() -> bool:
    """`$FLAXBERT_PALLAS_KERNELS`: unset or "1", flaxbert's kernels where they apply; "0", XLA's operations."""
    value = os.environ.get(KERNELS_VARIABLE, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(
            f"${KERNELS_VARIABLE}={value!r}: set it to 1 (the default: flaxbert's Pallas kernels on NVIDIA GPUs of "
            "compute capability 8.0 or later) or 0 (XLA's operations everywhere), or unset it."
        )
    return value == "1"


def mesh_devices() -> int:
    """The devices of the mesh the program is traced under (1 without one)."""
    mesh = jax.sharding.get_abstract_mesh()
    return 1 if mesh.empty else mesh.size
