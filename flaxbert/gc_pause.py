"""Python's cyclic garbage collector paused while flaxbert traces its programs.

Tracing allocates an object for every equation, tracer and abstract value, so the collector runs many times during
one trace, and its full collections walk every object the process holds: ~184K once a BERT-base classifier is built
(jax's caches, flax's modules, the parameter tree). bert_base bf16 batch 8 on a 2-core CPU, 6 interleaved rounds in
one process (`python benchmarks/trace_gc.py --rounds 6`): the train step's trace 0.350-0.528 s with the collector
running, 0.321-0.351 s paused; its lowering 0.220-0.343 -> 0.190-0.213 s; the abstract params 0.145-0.284 ->
0.136-0.194 s (medians equal). A fresh process on a warm compile cache (`benchmarks/warm_start.py`, 15 per arm in
three runs): tracing and lowering summed, median 1.98 -> 1.73 s, the build 1.49 -> 1.33 s: host time every process
pays before its first step, and each bucket length's program pays again.

Paused, the collector only waits: reference counting still frees everything but cycles, and the cycles made
meanwhile are collected at its next run after the pause. The pause is process-wide (the collector has no per-thread
switch): nested and concurrent pauses (compiles in several threads) share one, which ends with the last of them and
restores the collector as it found it. A program that switches the collector itself while a pause is held is
overridden when the pause ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.Lock()
_holders = 0  # pauses now held, over all threads
_was_enabled = False  # whether the collector ran before the first of them


@contextlib.contextmanager
def paused():
    """The block runs with the collector off, unless another pause already turned it off."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
