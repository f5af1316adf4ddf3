"""Inference steps in flight: in order, bounded, concurrent on CPU, and the same numbers as one thread."""

import threading
import time

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from flaxbert.models import BertClassifier, BertConfig, BertHeadConfig
from flaxbert.models.abstract import dummy_inputs
from flaxbert.parallel import make_mesh
from flaxbert.training import concurrent_steps, loops, programs
from flaxbert.training.batches import ArrayData
from flaxbert.training.concurrent_steps import host_threads, in_order
from flaxbert.training.steps import sparse_categorical_crossentropy

CFG = BertConfig(vocabulary_size=97, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                 max_sequence_length=24)  # fmt: skip
MODEL = BertClassifier(CFG, BertHeadConfig(num_classes=3))


def test_threads_only_where_the_mesh_is_one_cpu_device_on_several_cores(monkeypatch):
    one, eight = make_mesh(devices=jax.devices()[:1]), make_mesh(devices=jax.devices()[:8])
    monkeypatch.setattr(concurrent_steps, "_cores", lambda: 2)
    assert host_threads(one) == concurrent_steps.CPU_THREADS == 2
    assert host_threads(eight) == 1
    monkeypatch.setattr(concurrent_steps, "_cores", lambda: 1)
    assert host_threads(one) == 1


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_come_in_input_order_with_at_most_ahead_steps_started_beyond(threads):
    started, most_ahead = [], 0
    rng = np.random.default_rng(threads)
    lock = threading.Lock()

    def step(i):
        with lock:
            started.append(i)
        time.sleep(rng.uniform(0, 0.003))  # later steps often finish first
        return i * 10

    results = []
    for yielded, value in enumerate(in_order(step, range(40), threads=threads, ahead=4), start=1):
        results.append(value)
        most_ahead = max(most_ahead, len(started) - yielded)
    assert results == [10 * i for i in range(40)]
    assert sorted(started) == list(range(40))
    assert most_ahead <= 4


def test_several_threads_run_steps_at_the_same_time():
    # Each step waits until another step is running too: run one at a time, the barrier breaks after 10 s.
    barrier = threading.Barrier(2, timeout=10)
    assert list(in_order(lambda i: barrier.wait() >= 0 and i, range(6), threads=2, ahead=4)) == list(range(6))


class _Pending:
    """A stand-in for a jax array still being computed: records when the host waits on it."""

    def __init__(self, i, waited):
        self.i, self._waited = i, waited

    def block_until_ready(self):
        self._waited.append(self.i)
        return self


def test_one_thread_dispatches_ahead_and_waits_only_on_the_step_ahead_back():
    waited, dispatched_when_waiting = [], []

    def step(i):
        dispatched_when_waiting.append((i, list(waited)))
        return _Pending(i, waited)

    out = [pending.i for pending in in_order(step, range(10), threads=1, ahead=4)]
    assert out == list(range(10))
    assert waited == list(range(6))  # on dispatching step i >= 4 the host waits for step i - 4, no later one
    assert dispatched_when_waiting[4] == (4, []) and dispatched_when_waiting[9] == (9, [0, 1, 2, 3, 4])


@pytest.mark.parametrize("threads", [1, 2])
def test_an_error_in_a_step_surfaces_at_that_step_and_stops_the_rest(threads):
    calls = []

    def step(i):
        calls.append(i)
        if i == 3:
            raise ValueError("bad batch 3")
        return i

    got = []
    with pytest.raises(ValueError, match="bad batch 3"):
        for value in in_order(step, range(100), threads=threads, ahead=4):
            got.append(value)
    assert got == [0, 1, 2]
    if threads == 1:
        assert calls == [0, 1, 2, 3]  # dispatched here, so nothing after the failing step ran
    else:
        assert max(calls) <= 3 + 4  # submitted at most `ahead` past it; the queued rest were cancelled


def test_threaded_predict_and_evaluate_give_one_threads_numbers_bit_for_bit(monkeypatch):
    mesh = make_mesh(devices=jax.devices()[:1])
    _, shardings = programs.state_shardings(MODEL, CFG, optax.sgd(0.1), mesh)
    raw = nn.unbox(MODEL.init(jax.random.key(0), dummy_inputs(CFG))["params"])
    params = jax.device_put(raw, shardings.params)
    rng = np.random.default_rng(0)
    mask = (np.arange(24)[None] < rng.integers(3, 25, 45)[:, None]).astype(np.int32)
    inputs = {"token_ids": rng.integers(1, 97, (45, 24), dtype=np.int32) * mask,
              "segment_ids": np.zeros((45, 24), np.int32), "padding_mask": mask}  # fmt: skip
    data = ArrayData(inputs, rng.integers(0, 3, 45).astype(np.int32))  # five batches of 8 and a padded one of 5
    predict = programs.jit_predict_step(MODEL, mesh, shardings.params)
    evaluate = programs.jit_eval_step(MODEL, mesh, shardings.params, loss_fn=sparse_categorical_crossentropy)
    results = {}
    for threads in (1, 2, 3):
        monkeypatch.setattr(loops, "host_threads", lambda mesh, threads=threads: threads)
        outputs = loops.predict(params, predict, data, batch_size=8, mesh=mesh, verbose=0)
        metrics = loops.evaluate(params, evaluate, data, batch_size=8, mesh=mesh, verbose=0)
        results[threads] = outputs, metrics
    for threads in (2, 3):
        np.testing.assert_array_equal(results[threads][0], results[1][0])
        assert results[threads][1] == results[1][1]  # the same float32 sums, added in the same order
    direct = np.asarray(MODEL.apply({"params": raw}, inputs))
    np.testing.assert_allclose(results[2][0], direct, atol=1e-5)


def test_a_one_batch_call_runs_its_step_without_a_thread_pool(monkeypatch):
    """A service's single request made a pool of 2 threads, started and joined them, for one step (~1 ms of a
    ~3 ms predict of a tiny model). A call runs from no more threads than it has batches: the same outputs."""
    mesh = make_mesh(devices=jax.devices()[:1])
    _, shardings = programs.state_shardings(MODEL, CFG, optax.sgd(0.1), mesh)
    params = jax.device_put(nn.unbox(MODEL.init(jax.random.key(0), dummy_inputs(CFG))["params"]), shardings.params)
    ones = np.ones((3, 8), np.int32)
    data = ArrayData({"token_ids": ones, "segment_ids": 0 * ones, "padding_mask": ones}, np.zeros(3, np.int32))
    predict = programs.jit_predict_step(MODEL, mesh, shardings.params)
    evaluate = programs.jit_eval_step(MODEL, mesh, shardings.params, loss_fn=sparse_categorical_crossentropy)
    monkeypatch.setattr(loops, "host_threads", lambda mesh: 2)
    asked = []
    real = loops.in_order
    monkeypatch.setattr(loops, "in_order", lambda *args, threads, **kwargs: asked.append(threads) or real(
        *args, threads=threads, **kwargs))  # fmt: skip
    one = loops.predict(params, predict, data, batch_size=8, mesh=mesh, verbose=0)
    two = loops.predict(params, predict, data, batch_size=2, mesh=mesh, verbose=0)
    assert asked == [1, 2]
    np.testing.assert_allclose(one, two, atol=1e-6)
    assert loops.evaluate(params, evaluate, data, batch_size=8, mesh=mesh, verbose=0)["loss"] > 0
