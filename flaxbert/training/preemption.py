"""Signals during training: SIGTERM (a TPU/GPU preemption notice) as a flag the training loop polls, so it can save
before exiting, and Ctrl-C (SIGINT) held back while a step's result is being taken, so no step's work is lost; where
there is a checkpoint to save, the first Ctrl-C is a flag too."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class Preemption:
    def __init__(self):
        self.requested = False

    def _handle(self, signum, frame):
        self.requested = True


@contextlib.contextmanager
def watch_sigterm():
    """Yields a `Preemption` whose `requested` turns True on SIGTERM; the previous handler returns afterwards."""
    flag = Preemption()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals can only be caught on the main thread
        return
    previous = signal.signal(signal.SIGTERM, flag._handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


class StepInterrupts:
    """Ctrl-C handled as before (Python's KeyboardInterrupt, or the handler a user installed), except inside `step()`:
    there it waits until the step's result is assigned.

    A train step donates its input state, so a KeyboardInterrupt raised as the jitted call returns, before its result
    reaches a variable, would leave the loop holding only deleted buffers, and every step the fit had trained lost.

    `stop_first` (a fit with a checkpoint to save): where Ctrl-C would raise KeyboardInterrupt, the first one only
    sets `requested`, so that the loop saves a checkpoint after the step and raises it then; a second one is
    handled as above, at once.
    """

    def __init__(self, previous, stop_first: bool = False):
        self.previous, self.inside, self.pending = previous, False, None
        self.stop_first, self.requested = stop_first and previous is signal.default_int_handler, False

    def _handle(self, signum, frame):
        if self.stop_first and not self.requested:
            self.requested = True
            sys.stderr.write("\nflaxbert: Ctrl-C: stopping after this step to save a checkpoint (Ctrl-C again stops "
                             "at once, without it)\n")  # fmt: skip
            sys.stderr.flush()
            return
        if self.inside:
            self.pending = (signum, frame)
        else:
            self._deliver(signum, frame)

    def _deliver(self, signum, frame):
        """What the handler before this one does: Python's raises KeyboardInterrupt, a user's runs, SIG_IGN nothing."""
        if callable(self.previous):
            self.previous(signum, frame)
        elif self.previous is not signal.SIG_IGN:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def step(self):
        """The block that runs a step and assigns its result; a Ctrl-C during it is handled when it ends."""
        self.inside = True
        try:
            yield
        finally:
            self.inside = False
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._deliver(*pending)


@contextlib.contextmanager
def hold_sigint_in_steps(stop_first: bool = False):
    """Yields a `StepInterrupts` (on the main thread; elsewhere signals cannot arrive, and nothing is installed)."""
    if threading.current_thread() is not threading.main_thread():
        yield StepInterrupts(signal.SIG_DFL)
        return
    previous = signal.getsignal(signal.SIGINT)  # None: a handler set outside Python, which cannot be restored
    interrupts = StepInterrupts(signal.default_int_handler if previous is None else previous, stop_first)
    signal.signal(signal.SIGINT, interrupts._handle)
    try:
        yield interrupts
    finally:
        signal.signal(signal.SIGINT, interrupts.previous)
    if interrupts.requested:  # a stop asked for after the block's last look at `requested`: not swallowed
        raise KeyboardInterrupt
