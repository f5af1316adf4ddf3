"""SIGTERM (a TPU/GPU preemption notice) as a flag the training loop polls, so it can save before exiting."""

from __future__ import annotations

import contextlib
import signal
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
