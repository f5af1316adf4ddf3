"""Keep freed host memory in the process, so XLA:CPU's per-step buffers stop faulting their pages in every step.

XLA:CPU mallocs each execution's temporary buffer (167 MB for a bert_tiny train step at batch 32) and frees it when
the step ends. glibc serves a request that large from a fresh `mmap` when the calling thread is not on the main malloc
arena (XLA's worker threads are not: other arenas cannot grow past 64 MB) and unmaps it on free, so each step faults
all of its pages in again: about 41,000-49,000 minor page faults and 0.13 s of kernel time per bert_tiny step on a
2-core machine, a quarter of the step. With one malloc arena, no `mmap` for large chunks and no trimming of the heap
top, the buffer comes from the heap and its pages are reused step after step.

The cost: freed memory is kept by the process instead of going back to the system, and threads share one malloc
arena, so malloc-heavy multi-threaded host code slows down (Rust tokenizers' batch encoding runs about 2x slower;
for a CPU training job that is seconds per SST-2 epoch against minutes of steps). Hence it is a call a CPU process
makes, not something `import flaxbert` does; `train.py` makes it when the process has no accelerator.

The same settings from outside the process: `GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=2147483647`.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import sys
import warnings

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # mallopt parameters, from glibc's malloc.h
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
_applied = False
_ACCELERATOR_MODULES = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin")


def reuse_host_memory() -> bool:
    """Make glibc keep and reuse freed memory (see the module docstring); True when the settings took effect.

    Call it first thing in a CPU process, before jax runs anything: XLA's worker threads pick their malloc arena on
    their first allocation, so once jax's backend is up the call could no longer reach them; it then warns and
    changes nothing. Returns False, changing nothing, where the C library is not glibc (macOS, Windows, musl).
    """
    global _applied
    libc = _glibc()
    if libc is None:
        return False
    if _applied:
        return True
    if _jax_backend_started():
        warnings.warn(
            "flaxbert.reuse_host_memory() was called after jax started its backend, whose threads already have "
            "their malloc arenas; nothing was changed. Call it before the first jax computation, or start the "
            "process with GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
            "glibc.malloc.trim_threshold=2147483647.",
            stacklevel=2,
        )
        return False
    _applied = all(libc.mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)
    return _applied


def accelerator_installed() -> bool:
    """Whether jax could find a GPU or TPU here: a jax plugin entry point or a known accelerator package is installed.

    Decided from what is installed, without starting jax's backends (which `reuse_host_memory` must precede).
    """
    if any(True for _ in importlib.metadata.entry_points(group="jax_plugins")):
        return True
    if importlib.util.find_spec("jax_plugins") is not None:
        return True
    return any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_MODULES)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc


def _jax_backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:  # no public API says whether the backends exist yet; a jax that moved it gets the settings applied anyway
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False
