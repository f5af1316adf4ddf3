"""Input prefetch: same items in order, producer errors re-raised at their item, closing stops the thread."""

import contextlib
import threading

import pytest

from flaxbert.training.prefetch import prefetch


def test_items_in_order():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))


def test_error_raised_at_its_item():
    def items():
        yield 1
        yield 2
        raise KeyError("bad batch")

    seen = []
    with pytest.raises(KeyError, match="bad batch"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_closing_early_stops_the_producer():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    with contextlib.closing(prefetch(items(), depth=2)) as batches:
        assert next(batches) == 0
    assert not any(t.name == "flaxbert-prefetch" for t in threading.enumerate())
    assert len(produced) <= 4  # the one consumed, the two buffered, and at most one in hand
