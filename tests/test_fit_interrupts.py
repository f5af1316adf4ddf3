"""Ctrl-C during fit: the steps completed before it are kept, wherever in a step the signal lands."""

import os
import signal

import jax
import numpy as np
import pytest

import flaxbert
from flaxbert.training import loops


def _classifier():
    backbone = flaxbert.BertBackbone(500, 1, 2, 16, 16, max_sequence_length=12, seed=0)
    return flaxbert.BertTextClassifier(backbone, num_classes=4, seed=1)


def test_ctrl_c_as_a_step_returns_keeps_that_step(monkeypatch):
    """The train step donates its state: a KeyboardInterrupt raised as the jitted call returned, before its result
    was assigned, left the loop holding deleted buffers, and the fit kept none of its steps (5 of 8 Ctrl-Cs in a
    notebook-style run). Now the interrupt waits for the assignment: stopped in step 3 of 5, the params are those of
    a fit over the first 3 batches alone."""
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 500, (40, 12)), "segment_ids": np.zeros((40, 12), int),
         "padding_mask": np.ones((40, 12), int)}  # fmt: skip
    y = rng.integers(0, 4, 40)
    real_fit, calls = loops.fit, []

    def fit_with_ctrl_c_in_step_3(state, train_fn, *args, **kwargs):
        def step(*step_args):
            out = train_fn(*step_args)
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode: before `out` is assigned
            return out

        return real_fit(state, step, *args, **kwargs)

    monkeypatch.setattr(loops, "fit", fit_with_ctrl_c_in_step_3)
    interrupted = _classifier()
    before = jax.tree.map(np.array, interrupted.params)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    monkeypatch.setattr(loops, "fit", real_fit)
    assert len(calls) == 3
    three_steps = _classifier()
    three_steps.fit({k: v[:24] for k, v in x.items()}, y[:24], batch_size=8, shuffle=False, verbose=0)
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, before, interrupted.params)))
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.tree.map(np.array, three_steps.params),
                                            interrupted.params)))  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit put Python's handler back
    interrupted.fit(x, y, batch_size=8, verbose=0)  # and the classifier trains on


def test_ctrl_c_outside_a_step_is_raised_at_once():
    """Only a step's assignment holds Ctrl-C back: elsewhere (here, an on_log hook) it raises where it lands."""
    rng = np.random.default_rng(1)
    x = {"token_ids": rng.integers(1, 500, (16, 12)), "segment_ids": np.zeros((16, 12), int),
         "padding_mask": np.ones((16, 12), int)}  # fmt: skip
    rows = []

    def on_log(row):
        rows.append(row["step"])
        if row["step"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _classifier().fit(x, rng.integers(0, 4, 16), batch_size=8, verbose=0, on_log=on_log, log_every=1)
    assert rows == [1]
