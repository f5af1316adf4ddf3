"""Input prefetch: the next batches are built and copied to the devices in a background thread, so the device
never waits for the host between steps."""

from __future__ import annotations

import queue
import threading

_DONE = object()


def prefetch(items, depth: int = 2):
    """Yields `items` in order, computing up to `depth` of them ahead in a daemon thread.

    An exception raised while producing an item is re-raised here, at that item. Closing the generator (callers use
    `contextlib.closing`, so a break, an exception or SystemExit on preemption closes it at once) stops the producer
    and waits for it: a thread still inside a device copy when the interpreter shuts down aborts the process.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        """Queues `entry` unless the consumer has stopped (then False): a blocking put into a full queue that nothing
        reads any more would keep the consumer's `join` below waiting forever."""
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:  # forwarded to the consumer
            put((_DONE, error))

    thread = threading.Thread(target=produce, daemon=True, name="flaxbert-prefetch")
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
