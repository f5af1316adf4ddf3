"""Inference steps kept in flight: queued asynchronously on accelerators, run from several host threads on CPU.

On an accelerator one thread dispatching ahead is enough: executions queue on the device and run back to back. On
CPU they do not overlap that way, and one execution leaves cores idle: XLA:CPU runs a batched matmul (the attention's
[batch x heads] small products) on a single thread, at the same GFLOP/s on one core as on two, where torch's `bmm`
uses both (`python benchmarks/cpu_step_parts.py`). Executions of one program on different batches are independent,
so on a CPU flaxbert runs predict and evaluate steps from `CPU_THREADS` threads, each waiting on its own
execution: bert_tiny predict at batch 256 went from 780-864 to 913-1,047 examples/s on a 2-core VM, outputs bit for
bit the same (benchmarks/RESULTS.md, session 12). Training steps depend on each other, so fit stays on one thread.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor

import jax

CPU_THREADS = 2


def host_threads(mesh) -> int:
    """How many host threads run `mesh`'s inference steps: `CPU_THREADS` where the mesh is this machine's one CPU
    device and it has at least that many cores, else 1. Accelerators queue executions themselves; a mesh of several
    CPU devices (`--xla_force_host_platform_device_count`) already runs one thread per device and was no faster."""
    if mesh.devices.size != 1 or mesh.devices.flat[0].platform != "cpu":
        return 1
    return CPU_THREADS if _cores() >= CPU_THREADS else 1


def _cores() -> int:
    """The cores this process may run on (all of the machine's where the OS cannot say, as on macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def in_order(step, items, *, threads: int, ahead: int):
    """Yields `step(item)` for each item, in order, with up to `ahead` later steps already started.

    With one thread the steps are dispatched here and yielded before they finish (jax computes asynchronously); the
    host waits only on the step `ahead` back, so at most that many inputs are queued. With more, each step runs in a
    worker thread that waits for its result, and is yielded finished. An exception in a step is raised here, at that
    step; the steps not yet started are cancelled.
    """
    if threads == 1:
        recent = collections.deque(maxlen=ahead + 1)
        for item in items:
            recent.append(step(item))
            if len(recent) > ahead:
                jax.block_until_ready(recent[0])
            yield recent[-1]
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="flaxbert-step") as pool:
        started = collections.deque()
        try:
            for item in items:
                started.append(pool.submit(lambda item=item: jax.block_until_ready(step(item))))
                if len(started) > ahead:
                    yield started.popleft().result()
            while started:
                yield started.popleft().result()
        finally:
            for future in started:
                future.cancel()
