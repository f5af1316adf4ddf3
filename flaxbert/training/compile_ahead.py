"""A jitted step's programs compiled ahead of the loop that runs them, side by side in background threads.

A loop over length-bucketed batches meets several batch shapes (up to 7 under sequence_length 128,
`text/bucketing.py`), and each is one more program to compile. Compiled where the loop first meets it, each stalls
the loop once, one after another: a bucketed BERT-base fit on a GPU waits for up to 7 train-step compiles of ~19 s
each (session 23's batch-32 step on an H200), while the GPU idles, and its validation for as many eval programs. Here
the loop names the shapes it will meet before it starts, and a pool of threads compiles them, the first needed first,
several at once on an accelerator's host (XLA compiles without holding the GIL), while the loop runs the programs
already built; a fit also starts its validation's programs, which then wait ready for the epoch's end. The loop waits
only for a program still compiling, and compiles one still queued itself (queued behind another call's compiles, a
prediction service's one new program waited for a whole fit's). Tracing and lowering a program is Python work, which
threads do one at a time (the GIL), so the threads take turns at it, first needed first, and compile side by side.
Started together, 4 BERT-base train programs (bf16, 4 threads on a 2-core CPU) each finished lowering after 2.7-3.1
s, the first needed one too; in turn the first is ready for XLA after 1.0-1.2 s, and the others lower while it
compiles. (Not yet measured on a GPU: `benchmarks/bucket_compiles.py`, queued in `gpu_session.sh`, times both ways,
and a second fit in each process shows whether kernels autotuned while other work ran on the GPU came out slower.)

jax keeps what `jitted.lower(*specs).compile()` built: calling `jitted` on arrays of those shapes, dtypes and
shardings then runs that program without compiling again. A second request for a program already started (an
`evaluate` after the fit that started its programs) waits for the first instead of compiling it twice. Compiling
ahead never changes what a loop computes or raises: a program that could not be compiled ahead is compiled by the
loop's own call, as it was before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import itertools
import os
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from flaxbert import gc_pause

try:  # the jax settings, global and this thread's own, that key jax's compile caches
    from jax._src.config import trace_context as _jax_context
except ImportError:  # a jax without it: every thread is taken to share the caller's settings

    def _jax_context():
        return None


MAX_THREADS = 8  # compiles at once, at most: each holds its own copy of XLA's working memory

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_started: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # jitted -> {(jax settings, specs): Future}
_told = False  # whether `cancel` has said why an exit waits, since the last compile was started
_tickets = itertools.count()  # the order compiles were asked for in: the order they trace and lower in
_claims = threading.Lock()  # who runs a queued compile: a compile thread, or a loop that needs it first
_busy = 0  # compile threads running a compile (under `_claims`)


class _InTurn:
    """Lets one thread at a time through, the lowest ticket waiting first."""

    def __init__(self):
        self._changed = threading.Condition()
        self._holder = None  # the thread let through, if any
        self._waiting: list[int] = []  # a heap of tickets

    @contextlib.contextmanager
    def turn(self, ticket: int | None):
        """Waits for `ticket`'s turn and holds it while the block runs; None goes through without one."""
        if ticket is None:
            yield
            return
        with self._changed:
            heapq.heappush(self._waiting, ticket)
            while self._holder is not None or self._waiting[0] != ticket:
                self._changed.wait()
            heapq.heappop(self._waiting)
            self._holder = threading.get_ident()
        try:
            yield
        finally:
            with self._changed:
                self._holder = None
                self._changed.notify_all()

    def held_here(self) -> bool:
        """Whether this thread holds the turn: it is tracing a program, whose code asks for another."""
        return self._holder == threading.get_ident()


_lowering = _InTurn()


def spec(tree):
    """`tree` with each array (jax or numpy) or number replaced by its `jax.ShapeDtypeStruct`: shape, dtype, and a
    jax array's sharding and weak type, all of which pick the program jax compiles for it."""

    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        if isinstance(x, jax.Array):  # a typed PRNG key array (an optimizer's noise key) has no weak type
            weak = getattr(x, "weak_type", False)
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding, weak_type=weak)
        return jax.ShapeDtypeStruct(np.shape(x), np.result_type(x))

    return jax.tree.map(one, tree)


class _Ahead(concurrent.futures.Future):
    """One program's compile, queued for the compile threads; whoever takes it first runs it (`claim`): a compile
    thread reaching it, or a loop that needs it while it still waits behind other compiles (`wait`)."""

    def __init__(self, jitted, args, context, ticket: int | None):
        super().__init__()
        self._job = (jitted, args, context, ticket)  # dropped once run or cancelled: it holds `jitted`

    def claim(self, by_thread: bool) -> bool:
        """True for the one caller that takes this compile while it is still queued: a compile thread (`by_thread`),
        or a loop, only while every compile thread is busy with another (a thread about to take it from the queue
        takes it: the loop would only compile beside it)."""
        global _busy
        with _claims:
            if self.running() or self.done() or not (by_thread or _busy >= _threads()._max_workers):
                return False
            _busy += by_thread
            return self.set_running_or_notify_cancel()

    def run(self, by_thread: bool) -> None:
        """Compiles (after `claim`), in the turn of its ticket or, from a loop that cannot wait, without one."""
        global _busy
        jitted, args, context, ticket = self._job
        self._job = None
        try:
            self.set_result(_compile(jitted, args, context, ticket if by_thread else None))
        finally:
            with _claims:
                _busy -= by_thread

    def cancel(self) -> bool:
        cancelled = super().cancel()
        if cancelled:
            self._job = None
        return cancelled


def _run_queued(future: _Ahead) -> None:
    if future.claim(by_thread=True):
        future.run(by_thread=True)


def compile_ahead(jitted, args_by_key: dict) -> dict:
    """Starts compiling `jitted` for each entry's arguments (a tuple of `spec`s), in the dict's order, and returns
    each key's `Future`: done once its program is compiled, with result True, or False where it was not (see
    `_compile`). A program already compiling or compiled ahead is not started again; a cancelled or failed one is.

    Not a jitted function (anything without `lower`, such as a wrapper): nothing to compile ahead, no futures.
    """
    global _told
    if not hasattr(jitted, "lower"):
        return {}
    futures, context = {}, _jax_context()
    with _lock:
        started = _started.setdefault(jitted, {})
        for key, args in args_by_key.items():
            signature = (context, _signature(args))
            earlier = started.get(signature)
            if earlier is None or earlier.cancelled() or (earlier.done() and not earlier.result()):
                # Asked for by code traced in its turn (a step whose code compiles another program and waits for
                # it), it goes without one: waiting for the turn its asker holds would never end.
                ticket = None if _lowering.held_here() else next(_tickets)
                started[signature] = _Ahead(jitted, args, context, ticket)
                _threads().submit(_run_queued, started[signature])
                _told = False
            futures[key] = started[signature]
    return futures


def wait(futures: dict, key) -> None:
    """Waits until `key`'s program is compiled, if it was started ahead; one still queued while every compile thread
    runs another (another loop's: the threads serve calls in the order they asked) is compiled here, at once. It raises
    nothing: a program that was not compiled (cancelled by another loop, or failed) is compiled by the loop's own
    call, which raises any error there, in the caller's thread, as it would without compiling ahead."""
    future = futures.get(key)
    if future is None or future.done():  # called every step: a done future costs a lookup, no waiter
        return
    while not future.done():  # the threads may take up another call's compile while this one waits: look again
        if future.claim(by_thread=False):
            future.run(by_thread=False)  # without a turn: the turns go in asking order, and this one cannot wait
            return
        concurrent.futures.wait([future], timeout=0.05)


def cancel(futures: dict, cause: BaseException | None = None) -> None:
    """Drops the compiles of `futures` not yet begun (a loop cut short will not need them). One already compiling
    runs to its end: XLA cannot be stopped, and a process that exits meanwhile waits for it (the threads are not
    daemons: a daemon thread cut off inside XLA's compiler crashed the interpreter at exit, segfault or abort).

    `cause`: what cut the loop short. A Ctrl-C or SIGTERM (`KeyboardInterrupt`, `SystemExit`) ends the process: if
    compiles are still running, stderr says once why the exit waits (up to one compile: ~20 s for BERT-base on a
    GPU), so that the wait does not look like a hang."""
    global _told
    for future in futures.values():
        future.cancel()
    if not isinstance(cause, KeyboardInterrupt | SystemExit):
        return
    with _lock:
        running = sum(future.running() for started in _started.values() for future in started.values())
        if not running or _told:
            return
        _told = True
    programs, them = ("1 program", "it") if running == 1 else (f"{running} programs", "them")
    print(f"flaxbert: {programs} compiling ahead in the background run to the end (XLA cannot stop a compile); a "
          f"process exiting now waits for {them}.", file=sys.stderr, flush=True)  # fmt: skip


def _compile(jitted, args, context, ticket: int | None) -> bool:
    """Compiles `jitted` for `args` (jax keeps the executable for calls on arguments of these specs), tracing and
    lowering it in `ticket`'s turn; False where it did not: where the caller had jax settings scoped to its own thread
    (`with jax.default_matmul_precision(...)`), which key jax's compile caches but do not reach this thread, so what it
    compiled would go unused, or where the compile failed (the loop's own call compiles again and raises the error).
    No exception is kept: it would hold this frame, and `jitted`, alive."""
    if _jax_context() != context:
        return False
    try:
        with _lowering.turn(ticket), gc_pause.paused():
            lowered = jitted.lower(*args)
        lowered.compile()
    except Exception:
        return False
    return True


def _signature(args) -> tuple:
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple(leaves)


def _threads() -> ThreadPoolExecutor:
    """The shared pool (made under `_lock`): with an accelerator, one thread per core this process may use, at most
    `MAX_THREADS`; on a CPU backend, one thread.

    Where the CPU is the device, compiling ahead cannot overlap anything: the train step already keeps every core
    busy. One compile thread there costs nothing and gains nothing, two cost time: an SST-2 epoch of 2,000 sentences
    from raw text (MiniLM-L6, 2-core VM, no compile cache, `python benchmarks/sst2_epoch.py --limit 2000 --peers
    flaxbert_bucketed,flaxbert_grouped`) took 54.3 / 54.7 s compiling in the loop, 54.9 s with one compile thread and
    61.2 / 62.4 s with two (bucketed); grouped by length 44.4 / 44.8, 43.9 and 48.8 / 50.7 s.
    """
    global _pool
    if _pool is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = 1 if jax.default_backend() == "cpu" else max(1, min(cores, MAX_THREADS))
        _pool = ThreadPoolExecutor(threads, thread_name_prefix="flaxbert-compile")
    return _pool
