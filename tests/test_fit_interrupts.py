"""Ctrl-C during fit: the steps completed before it are kept, wherever in a step the signal lands."""

import os
import signal

import jax
import numpy as np
import pytest

import flaxbert
from flaxbert.training import loops


@pytest.fixture(autouse=True)
def _python_handles_sigint():
    """Python's own SIGINT handler, whatever this process inherited: a shell that starts a job in the background
    (`(pytest ... &)`) starts it with SIGINT ignored, and no Ctrl-C these tests send would raise."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sending_sigint_in_step(n: int, calls: list):
    """loops.fit whose n-th train step sends this process SIGINT as it returns."""
    real_fit = loops.fit

    def fit(state, train_fn, *args, **kwargs):
        def step(*step_args):
            out = train_fn(*step_args)
            calls.append(1)
            if len(calls) == n:
                os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode: before `out` is assigned
            return out

        return real_fit(state, step, *args, **kwargs)

    return fit


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

    monkeypatch.setattr(loops, "fit", _sending_sigint_in_step(3, calls))
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


def test_a_users_sigint_handler_runs_once_the_step_is_held(monkeypatch):
    """A handler the user installed (say, one that asks the loop to stop gracefully) still gets the signal: after
    the step, not as a KeyboardInterrupt; the fit goes on and the handler is back in place afterwards."""
    rng = np.random.default_rng(2)
    x = {"token_ids": rng.integers(1, 500, (32, 12)), "segment_ids": np.zeros((32, 12), int),
         "padding_mask": np.ones((32, 12), int)}  # fmt: skip
    received, calls = [], []

    def handler(signum, frame):
        received.append((signum, len(calls)))

    monkeypatch.setattr(loops, "fit", _sending_sigint_in_step(2, calls))
    previous = signal.signal(signal.SIGINT, handler)
    try:
        try:
            history = _classifier().fit(x, rng.integers(0, 4, 32), batch_size=8, verbose=0)
        except KeyboardInterrupt:  # pytest would take it for the user stopping the session
            pytest.fail("fit raised KeyboardInterrupt instead of calling the installed SIGINT handler")
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert received == [(signal.SIGINT, 2)] and len(calls) == 4 and len(history.history["loss"]) == 1


def _fit_sending_sigints(classifier, checkpoint_dir, at_steps=(), rows=None):
    """A 2-epoch fit (6 steps each) that sends this process SIGINT from on_log after each step in `at_steps` (twice
    where it is named twice)."""
    rng = np.random.default_rng(3)
    x = {"token_ids": rng.integers(1, 500, (48, 12)), "segment_ids": np.zeros((48, 12), int),
         "padding_mask": np.ones((48, 12), int)}  # fmt: skip
    y = rng.integers(0, 4, 48)
    rows = [] if rows is None else rows

    def on_log(row):
        rows.append(row["step"])
        for _ in range(at_steps.count(row["step"])):
            os.kill(os.getpid(), signal.SIGINT)

    return classifier.fit(x, y, batch_size=8, epochs=2, seed=5, verbose=0, checkpoint_dir=checkpoint_dir,
                          on_log=on_log, log_every=1)  # fmt: skip


def _steps_saved(checkpoint_dir) -> list[int]:
    return sorted(int(p.name) for p in checkpoint_dir.iterdir() if p.name.isdigit())


def test_ctrl_c_with_a_checkpoint_dir_saves_after_the_step_and_resumes_exactly(tmp_path, capfd):
    """With a checkpoint_dir, Ctrl-C used to raise where it landed: the steps since the last epoch end were trained
    for nothing (train.py's default saves at epoch ends only). Now the first Ctrl-C stops after its step, saves a
    checkpoint there, and raises KeyboardInterrupt; the same fit resumes to the uninterrupted run's params."""
    rows = []
    interrupted = _classifier()
    with pytest.raises(KeyboardInterrupt):
        _fit_sending_sigints(interrupted, tmp_path / "ckpt", at_steps=(3,), rows=rows)
    assert rows == [1, 2, 3] and _steps_saved(tmp_path / "ckpt") == [3]
    assert "stopping after this step to save a checkpoint" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    history = _fit_sending_sigints(interrupted, tmp_path / "ckpt")
    assert history.epoch == [0, 1]
    uninterrupted = _classifier()
    _fit_sending_sigints(uninterrupted, tmp_path / "reference")
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.tree.map(np.array, uninterrupted.params),
                                            jax.tree.map(np.array, interrupted.params))))  # fmt: skip


@pytest.mark.parametrize("installed", ["a user's handler", "ignored"])
def test_with_a_checkpoint_dir_a_sigint_python_does_not_handle_stays_where_it_was_sent(tmp_path, installed):
    """The first Ctrl-C becomes a stop to save only where Python's own handler would raise KeyboardInterrupt: a
    handler the user installed still gets it after the step, and a SIGINT this process ignores (a background job)
    stays ignored. Either way the fit runs to its end, with no checkpoint at the step the signal came in."""
    received = []
    handler = signal.SIG_IGN if installed == "ignored" else lambda signum, frame: received.append(signum)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        try:
            history = _fit_sending_sigints(_classifier(), tmp_path / "ckpt", at_steps=(3,))
        except KeyboardInterrupt:  # pytest would take it for the user stopping the session
            pytest.fail("fit raised KeyboardInterrupt on a SIGINT that Python's default handler was not handling")
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert history.epoch == [0, 1] and 3 not in _steps_saved(tmp_path / "ckpt")
    assert received == ([] if installed == "ignored" else [signal.SIGINT])


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    rows = []
    with pytest.raises(KeyboardInterrupt):
        # the first asks for a stop after step 2; the second raises at once, in step 2's on_log
        _fit_sending_sigints(_classifier(), tmp_path / "ckpt", at_steps=(2, 2), rows=rows)
    assert rows == [1, 2] and _steps_saved(tmp_path / "ckpt") == []


def test_a_stop_asked_for_after_the_loops_last_look_is_raised_on_leaving():
    """A first Ctrl-C only asks for a stop; one that lands after the loop last looked must not be swallowed."""
    from flaxbert.training.preemption import hold_sigint_in_steps

    with pytest.raises(KeyboardInterrupt), hold_sigint_in_steps(stop_first=True) as interrupts:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupts.requested  # asked, not raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
