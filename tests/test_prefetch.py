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


@pytest.mark.parametrize("left", [0, 1, 2, 3])
def test_closing_at_any_point_near_the_end_returns(left):
    """Closed with `left` items unread: among them the case where the producer, done, is putting its end marker into
    a full queue (it once blocked there for good, and `fit` stopped at the epoch's third-to-last step hung)."""
    items = list(range(6))

    def consume():
        with contextlib.closing(prefetch(iter(items), depth=2)) as batches:
            for _ in range(len(items) - left):
                next(batches)
            threading.Event().wait(0.3)  # the producer runs ahead and fills the queue

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=20)
    assert not consumer.is_alive(), "closing the prefetch generator hung"
