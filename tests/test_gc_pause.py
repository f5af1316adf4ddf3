"""The garbage collector's pause while flaxbert traces: one pause however many hold it, ended by the last, leaving the
collector as it was; and the traces that pay for the collector's walks take it."""

from __future__ import annotations

import gc
import threading
import types

import jax
import jax.numpy as jnp
import optax
import pytest

from flaxbert import gc_pause
from flaxbert.models import BertClassifier, BertConfig, BertHeadConfig, abstract
from flaxbert.parallel import make_mesh
from flaxbert.tasks import arguments
from flaxbert.training import compile_ahead, programs


@pytest.fixture(autouse=True)
def _collector_running():
    gc.enable()
    yield
    gc.enable()


def test_a_pause_turns_the_collector_off_and_back_on_even_after_an_error():
    with gc_pause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="inside"), gc_pause.paused():
        raise RuntimeError("inside")
    assert gc.isenabled()


def test_nested_pauses_end_with_the_outermost():
    with gc_pause.paused():
        with gc_pause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_switched_off_before_the_pause_stays_off():
    gc.disable()
    with gc_pause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_pauses_held_by_several_threads_end_with_the_last():
    """Thread A pauses, B pauses, A ends: the collector stays off until B ends too."""
    a_in, b_in, b_may_end = threading.Event(), threading.Event(), threading.Event()

    def a():
        with gc_pause.paused():
            a_in.set()
            b_in.wait()

    def b():
        a_in.wait()
        with gc_pause.paused():
            b_in.set()
            b_may_end.wait()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    threads[0].join()
    assert not gc.isenabled()  # B still holds its pause
    b_may_end.set()
    threads[1].join()
    assert gc.isenabled()


class _Program:
    """A stand-in for a jitted function that notes whether the collector ran while it was lowered and compiled."""

    def __init__(self):
        self.collector = []

    def lower(self, *args):
        self.collector.append(gc.isenabled())
        return types.SimpleNamespace(compile=lambda: self.collector.append(gc.isenabled()))


def test_compiling_ahead_lowers_with_the_collector_paused():
    program = _Program()
    futures = compile_ahead.compile_ahead(program, {"only": (1,)})
    compile_ahead.wait(futures, "only")
    assert futures["only"].result() is True
    assert program.collector == [False, True]  # lowered paused, compiled (XLA: no Python objects) with it back


def test_the_build_and_compiles_traces_pause_the_collector(monkeypatch):
    """The abstract params, the train state's shapes and the optimizer check: each `jax.eval_shape` runs paused."""
    seen = []
    original = jax.eval_shape
    monkeypatch.setattr(jax, "eval_shape", lambda *a: seen.append(gc.isenabled()) or original(*a))
    cfg = BertConfig(vocabulary_size=11, num_layers=1, num_heads=1, hidden_dim=8, intermediate_dim=8)
    model = BertClassifier(cfg, BertHeadConfig(2))
    params = abstract._trace_abstract_params(model, cfg)
    assert seen == [False] and gc.isenabled()
    assert params["logits"]["kernel"].value.shape == (8, 2)
    assert params["logits"]["kernel"].value.dtype == jnp.float32
    tx = optax.adam(1e-3)
    abstract_state, _ = programs.state_shardings(model, cfg, tx, make_mesh())
    assert abstract_state.opt_state[0].mu["logits"]["kernel"].shape == (8, 2)
    assert len(seen) >= 2 and not any(seen) and gc.isenabled()  # the state's shapes traced too, paused
    before = len(seen)
    arguments.check_optimizer(tx, params)
    assert len(seen) == before + 1 and not any(seen) and gc.isenabled()
