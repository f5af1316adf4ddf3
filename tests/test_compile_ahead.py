"""Programs compiled ahead in background threads: a bucketed loop never stops to compile a batch length it meets."""

import concurrent.futures
import gc
import logging
import re
import threading
import time
import types
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaxbert
from flaxbert.training import compile_ahead, shared_steps
from flaxbert.training.batches import ArrayData, batch_lengths, make_batch

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(40))]


class _Lowerings(logging.Handler):
    """(thread name, program name, argument shapes) of every program jax lowers to compile while installed."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        found = re.match(
            r"Compiling (jit\(\w+\)) with global shapes and types (.*)\. Argument mapping", record.getMessage()
        )
        if found:
            self.seen.append((record.threadName, *found.groups()))

    def __enter__(self):
        logging.getLogger("jax._src.interpreters.pxla").addHandler(self)
        self._before = jax.config.jax_log_compiles
        jax.config.update("jax_log_compiles", True)  # for every thread (`jax.log_compiles()` is this thread's)
        return self

    def __exit__(self, *exc):
        jax.config.update("jax_log_compiles", self._before)
        logging.getLogger("jax._src.interpreters.pxla").removeHandler(self)


def test_a_bucketed_fit_evaluate_and_predict_compile_every_step_ahead():
    """Sentences of 2 to 60 words under sequence_length 64, grouped by length, meet 4 or 5 bucket lengths (of 16, 24,
    32, 48 and 64) in a random order: each train, eval and predict program is lowered once, in a compile thread, and
    never by the loop's own thread (which lowers a program only when it meets a length nobody compiled ahead). The
    fit's validation programs were started with its train programs: the evaluate after it lowers nothing."""
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{j}" for j in rng.integers(0, 40, n)) for n in rng.integers(2, 61, 96)]
    labels = rng.integers(0, 2, 96)
    tokenizer = flaxbert.BertTokenizer(WORDS)
    preprocessor = flaxbert.BertTextClassifierPreprocessor(tokenizer, sequence_length=64)
    # No dropout, which the threads do not depend on: this test took 19 s with it, 11 s without (2-core CPU).
    backbone = flaxbert.BertBackbone(len(WORDS), 1, 2, 16, 32, max_sequence_length=64, dropout=0.0, seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor, dropout=0.0, seed=0)
    with _Lowerings() as fitting:
        classifier.fit(texts[:64], labels[:64], batch_size=8, verbose=0, validation_data=(texts[64:], labels[64:]),
                       group_by_length=True)  # fmt: skip
    with _Lowerings() as evaluating:
        scores = classifier.evaluate(texts[64:], labels[64:], batch_size=8, verbose=0)
    with _Lowerings() as predicting:
        logits = classifier.predict(texts[64:], batch_size=8, verbose=0)

    steps = ("jit(train_step_summed)", "jit(eval_step_summed)", "jit(predict_step)")
    lowered = [seen for seen in fitting.seen + evaluating.seen + predicting.seen if seen[1] in steps]
    assert {thread.rsplit("_", 1)[0] for thread, _, _ in lowered} == {"flaxbert-compile"}
    assert len(lowered) == len({(name, shapes) for _, name, shapes in lowered})  # each program once
    train_lengths = {re.search(r"int32\[8,(\d+)\]", shapes)[1] for _, name, shapes in lowered if "train" in name}
    assert len(train_lengths) >= 4 and train_lengths <= {"16", "24", "32", "48", "64"}
    assert not [seen for seen in evaluating.seen if seen[1] in steps]
    assert np.isfinite(scores["loss"]) and logits.shape == (32, 2)


def test_batch_lengths_are_those_of_the_batches_make_batch_cuts():
    """The lengths a loop compiles ahead are the widths of the batches it then cuts, first met first; masks with
    holes (keras-hub masks a typed "[PAD]") count to their last real position."""
    rng = np.random.default_rng(3)
    ends = np.minimum(rng.geometric(1 / 12, 50), 64)
    mask = (np.arange(64) < ends[:, None]).astype(np.int32)
    mask[::7, 0] = 0  # holes
    data = ArrayData({"token_ids": mask * 5, "segment_ids": 0 * mask, "padding_mask": mask}, np.zeros(50, np.int32))
    order = rng.permutation(50)
    widths = [
        make_batch(data, order[i : i + 6], 6, bucket=True)["inputs"]["token_ids"].shape[1] for i in range(0, 50, 6)
    ]
    assert batch_lengths(data, order, 6, bucket=True) == list(dict.fromkeys(widths))
    assert len(set(widths)) >= 3
    assert batch_lengths(data, order, 6, bucket=False) == [64]


def _slow_to_compile(x):
    for _ in range(40):
        x = jnp.sin(x) @ x
    return x


def test_compiled_ahead_programs_run_without_compiling_again():
    jitted = jax.jit(_slow_to_compile)
    specs = {n: (jax.ShapeDtypeStruct((n, n), jnp.float32),) for n in (4, 8)}
    futures = compile_ahead.compile_ahead(jitted, specs)
    assert compile_ahead.compile_ahead(jitted, specs) == futures  # asked again: the same compiles, not new ones
    for n in specs:
        compile_ahead.wait(futures, n)
    with _Lowerings() as calls:
        outputs = [jitted(jnp.eye(n)) for n in (4, 8)]
    assert [seen for seen in calls.seen if seen[1] == "jit(_slow_to_compile)"] == []
    np.testing.assert_allclose(outputs[1], _slow_to_compile(jnp.eye(8)), rtol=1e-6)


def test_a_failed_compile_is_left_to_the_loops_own_call_and_started_again_when_asked():
    """A compile that fails ahead raises nothing where the loop waits: the loop's own call compiles and raises the
    error in its thread, as without compiling ahead. The failure is not kept: asked again, it compiles again, and it
    holds nothing alive (a kept exception's traceback would hold the jitted function)."""
    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory while autotuning")  # a transient failure
        return x * 2

    jitted = jax.jit(flaky)
    specs = {4: (jax.ShapeDtypeStruct((4,), jnp.float32),)}
    futures = compile_ahead.compile_ahead(jitted, specs)
    compile_ahead.wait(futures, 4)
    assert futures[4].result() is False
    again = compile_ahead.compile_ahead(jitted, specs)
    compile_ahead.wait(again, 4)
    assert again[4] is not futures[4] and again[4].result() is True
    np.testing.assert_array_equal(jitted(jnp.ones(4)), 2 * np.ones(4))

    failing = jax.jit(lambda x: x.reshape(3, 3))
    futures = compile_ahead.compile_ahead(failing, {4: (jax.ShapeDtypeStruct((4,), jnp.float32),)})
    compile_ahead.wait(futures, 4)
    with pytest.raises(TypeError, match="reshape"):
        failing(jnp.ones(4))
    alive = weakref.ref(failing)
    del failing
    gc.collect()
    assert alive() is None
    compile_ahead.wait(futures, 5)  # a length nobody started: the loop's own call will compile it


def test_cancelled_compiles_are_dropped_and_started_again_when_asked():
    """A loop cut short cancels the compiles not begun; another loop waiting on one of them (they are shared) is not
    failed by it: its own call compiles the program. A later request starts it anew."""
    jitted = jax.jit(_slow_to_compile)
    threads = compile_ahead._threads()._max_workers
    specs = {n: (jax.ShapeDtypeStruct((n, n), jnp.float32),) for n in range(2, 2 + threads + 2)}
    futures = compile_ahead.compile_ahead(jitted, specs)
    shared = compile_ahead.compile_ahead(jitted, specs)
    compile_ahead.cancel(futures)
    last = max(specs)
    assert shared[last].cancelled()  # queued behind one compile per thread
    compile_ahead.wait(shared, last)  # returns: the loop's call compiles it
    again = compile_ahead.compile_ahead(jitted, {last: specs[last]})
    compile_ahead.wait(again, last)
    assert again[last] is not futures[last] and again[last].result() is True


class _Timed:
    """A stand-in for a jitted function that notes when each program's lowering and compile ran: lowering waits 40 ms,
    letting other threads run meanwhile (as a trace lets them between its turns at the GIL), compiling 120 ms."""

    def __init__(self):
        self.ran = []  # (phase, program, start, end)

    def lower(self, program):
        start = time.perf_counter()
        time.sleep(0.04)
        self.ran.append(("lower", program, start, time.perf_counter()))
        return types.SimpleNamespace(compile=lambda: self._compile(program))

    def _compile(self, program):
        start = time.perf_counter()
        time.sleep(0.12)
        self.ran.append(("compile", program, start, time.perf_counter()))

    def spans(self, phase):
        return sorted((start, end, program) for kind, program, start, end in self.ran if kind == phase)


def test_compile_threads_lower_one_at_a_time_first_asked_first_and_compile_side_by_side(monkeypatch):
    """Tracing and lowering is Python work, which threads share one at a time: started together, every program
    would finish lowering late, the first needed one too. The threads take turns at it in the order the programs
    were asked for, and compile side by side."""
    pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="flaxbert-compile")
    monkeypatch.setattr(compile_ahead, "_pool", pool)
    program = _Timed()
    futures = compile_ahead.compile_ahead(program, {n: (n,) for n in range(6)})
    for n in range(6):
        compile_ahead.wait(futures, n)
    pool.shutdown()
    assert all(future.result() for future in futures.values())
    lowering, compiling = program.spans("lower"), program.spans("compile")
    assert [n for _, _, n in lowering] == list(range(6))
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in zip(lowering, lowering[1:], strict=False))
    assert any(next_start < end for (_, end, _), (next_start, _, _) in zip(compiling, compiling[1:], strict=False))


def test_a_program_whose_trace_compiles_another_ahead_and_waits_for_it_does_not_wait_for_its_own_turn(monkeypatch):
    """Code traced in a compile thread's turn (a loss or model that predicts with another classifier, say) may ask
    for a program and wait for it: that compile goes without a turn, since the one it would wait for is its
    asker's."""
    pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="flaxbert-compile")
    monkeypatch.setattr(compile_ahead, "_pool", pool)
    inner = jax.jit(lambda x: jnp.sin(x) @ x)
    waited = []

    def outer(x):
        futures = compile_ahead.compile_ahead(inner, {5: (jax.ShapeDtypeStruct((5, 5), jnp.float32),)})
        waited.append(concurrent.futures.wait(list(futures.values()), timeout=30).not_done)
        return x * 2

    futures = compile_ahead.compile_ahead(jax.jit(outer), {3: (jax.ShapeDtypeStruct((3, 3), jnp.float32),)})
    assert futures[3].result(timeout=60) is True
    pool.shutdown()
    assert waited == [set()]  # the inner compile was done, not left waiting


class _Held:
    """A stand-in for a jitted function whose lowering notes the thread that ran it and, for `held` programs, waits
    until `release` is set (a long compile of another call's, holding the one compile thread)."""

    def __init__(self, held=()):
        self.held, self.release, self.lowered = set(held), threading.Event(), []

    def lower(self, program):
        self.lowered.append((program, threading.current_thread().name))
        if program in self.held:
            assert self.release.wait(timeout=60)
        return types.SimpleNamespace(compile=lambda: None)


def test_a_program_queued_behind_another_calls_compiles_is_compiled_by_the_loop_that_needs_it(monkeypatch):
    """A CPU host's one compile thread serves compiles in the order they were asked for: a prediction service's
    request for one new program waited behind another call's queued compiles (12.9 s where it took 1.2 s alone; 36 s
    behind another classifier's fit). The loop that needs a program still queued compiles it at once, itself; the
    compile thread, reaching it later, finds it taken and does not compile it again."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flaxbert-compile")
    monkeypatch.setattr(compile_ahead, "_pool", pool)
    fit = _Held(held={0})
    fits = compile_ahead.compile_ahead(fit, {n: (n,) for n in range(3)})  # the thread is held in program 0
    service = _Held()
    wanted = compile_ahead.compile_ahead(service, {7: (7,)})
    assert not wanted[7].running() and not wanted[7].done()  # queued behind the fit's
    compile_ahead.wait(wanted, 7)
    assert wanted[7].result() is True and service.lowered == [(7, threading.current_thread().name)]
    assert not fits[0].done() and not fits[1].done()  # the other call's compiles still wait for the thread
    fit.release.set()
    for n in range(3):
        compile_ahead.wait(fits, n)
    pool.shutdown()
    assert sorted(program for program, _ in fit.lowered) == [0, 1, 2]  # each once, by the thread or the loop
    assert all(future.result() for future in fits.values())
    assert service.lowered == [(7, threading.current_thread().name)]  # compiled once, by the loop


def test_jax_settings_scoped_to_the_callers_thread_are_not_compiled_ahead_in_vain():
    """`with jax.default_matmul_precision(...)` keys jax's compile caches but holds only in the thread that entered
    it: a program compiled ahead in a compile thread would go unused and the loop would compile its own as well
    (twice the compiles). Under such a setting nothing is compiled ahead: each program compiles once, in the loop."""
    x = {"token_ids": np.arange(1, 65).reshape(8, 8) % 40 + 5, "segment_ids": np.zeros((8, 8), int),
         "padding_mask": np.ones((8, 8), int)}  # fmt: skip
    backbone = flaxbert.BertBackbone(len(WORDS), 1, 2, 16, 32, max_sequence_length=8, seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)
    with _Lowerings() as lowered, jax.default_matmul_precision("highest"):
        classifier.fit(x, np.arange(8) % 2, batch_size=8, verbose=0)
    train = [thread for thread, name, _ in lowered.seen if name == "jit(train_step_summed)"]
    assert train == ["MainThread"]


def test_a_plain_function_has_nothing_to_compile_ahead():
    assert compile_ahead.compile_ahead(lambda x: x, {1: (jax.ShapeDtypeStruct((1,), jnp.float32),)}) == {}


def test_threads_predicting_at_once_on_a_new_classifier_compile_its_program_once():
    """A prediction service's threads, all calling predict on a classifier that has not predicted yet: one jitted
    step for all of them (it was one per thread, each compiling the same program)."""
    backbone = flaxbert.BertBackbone(len(WORDS), 1, 2, 16, 32, max_sequence_length=8, seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)
    x = {"token_ids": np.arange(1, 65).reshape(8, 8) % 40 + 5, "segment_ids": np.zeros((8, 8), int),
         "padding_mask": np.ones((8, 8), int)}  # fmt: skip
    with _Lowerings() as lowered, concurrent.futures.ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda _: classifier.predict(x, batch_size=8, verbose=0), range(4)))
    assert [name for _, name, _ in lowered.seen].count("jit(predict_step)") == 1
    for logits in outputs[1:]:
        np.testing.assert_array_equal(logits, outputs[0])


@pytest.mark.parametrize("trainable", [True, False])
def test_a_fits_first_program_compiles_while_its_state_is_built_and_only_once(trainable):
    """The fit starts its first program before it builds the train state, from the state's abstract spec; the loop
    then asks again with the built state's spec, which must be the same (a frozen backbone's optimizer state holds
    empty nodes): one lowering, in a compile thread."""
    x = {"token_ids": np.arange(1, 65).reshape(8, 8) % 40 + 5, "segment_ids": np.zeros((8, 8), int),
         "padding_mask": np.ones((8, 8), int)}  # fmt: skip
    backbone = flaxbert.BertBackbone(len(WORDS), 1, 2, 16, 32, max_sequence_length=8, seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)
    classifier.backbone.trainable = trainable
    with _Lowerings() as lowered:
        classifier.fit(x, np.arange(8) % 2, batch_size=8, verbose=0)
    train = [thread for thread, name, _ in lowered.seen if name == "jit(train_step_summed)"]
    assert [thread.rsplit("_", 1)[0] for thread in train] == ["flaxbert-compile"]


def test_a_refused_or_finished_run_starts_no_compile(tmp_path):
    """The checkpoint's record is checked before anything compiles ahead: a checkpoint of another run is refused
    with nothing left compiling (the threads are not daemons: a compile left running would hold the process at
    exit), and a finished run, which trains nothing, compiles neither train nor validation programs."""
    x = {"token_ids": np.arange(1, 129).reshape(16, 8) % 40 + 5, "segment_ids": np.zeros((16, 8), int),
         "padding_mask": np.ones((16, 8), int)}  # fmt: skip
    y = np.arange(16) % 2

    def classifier():
        backbone = flaxbert.BertBackbone(len(WORDS), 1, 2, 16, 32, max_sequence_length=8, seed=0)
        return flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)

    classifier().fit(x, y, batch_size=8, verbose=0, seed=0, checkpoint_dir=tmp_path, validation_data=(x, y))
    shared_steps.clear()  # the next classifiers' steps are their own: what they compile shows in the registry
    other = classifier()
    with pytest.raises(ValueError, match="holds a different run"):
        other.fit(x, y, batch_size=4, verbose=0, seed=0, checkpoint_dir=tmp_path, validation_data=(x, y))
    finished = classifier()
    with pytest.warns(UserWarning, match="already trained"):
        finished.fit(x, y, batch_size=8, verbose=0, seed=0, checkpoint_dir=tmp_path, validation_data=(x, y))
    for model in (other, finished):
        (train_fn, _), _, _ = model._steps("train", True)
        assert not compile_ahead._started.get(train_fn)
        assert not compile_ahead._started.get(model._steps("eval")[0])


def test_a_ctrl_c_with_a_compile_still_running_says_once_why_the_exit_waits(monkeypatch, capsys):
    """XLA cannot stop a compile, and a process exiting mid-compile waits for it: a fit cut short by Ctrl-C says so
    on stderr, once (the loop and the classifier both cancel), while its validation's program is still compiling.
    Cut short by an error, or with nothing compiling, it says nothing."""
    import threading

    release, real = threading.Event(), compile_ahead._compile

    def compile_eval_slowly(jitted, args, context, ticket):
        if "eval" in getattr(jitted, "__name__", ""):
            release.wait(60)  # the validation's program: still compiling when Ctrl-C comes
        return real(jitted, args, context, ticket)

    monkeypatch.setattr(compile_ahead, "_compile", compile_eval_slowly)
    x = {"token_ids": np.arange(1, 129).reshape(16, 8) % 40 + 5, "segment_ids": np.zeros((16, 8), int),
         "padding_mask": np.ones((16, 8), int)}  # fmt: skip
    y = np.arange(16) % 2
    backbone = flaxbert.BertBackbone(len(WORDS), 1, 2, 16, 32, max_sequence_length=8, seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)

    def ctrl_c(row):
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            classifier.fit(x, y, batch_size=8, verbose=0, validation_data=(x, y), on_log=ctrl_c, log_every=1)
        said = capsys.readouterr().err
        assert said.count("flaxbert: 1 program compiling ahead in the background run to the end") == 1, said
    finally:
        release.set()
    started = list(compile_ahead._started[classifier._steps("eval")[0]].values())
    assert len(started) == 1 and started[0].result(timeout=60)  # it ran to its end, and the program is kept

    def fails(row):
        raise RuntimeError("on_log failed")

    with pytest.raises(KeyboardInterrupt):  # everything compiled now: nothing to wait for, nothing said
        classifier.fit(x, y, batch_size=8, verbose=0, validation_data=(x, y), on_log=ctrl_c, log_every=1)
    with pytest.raises(RuntimeError, match="on_log failed"):
        classifier.fit(x, y, batch_size=8, verbose=0, on_log=fails, log_every=1)
    assert "flaxbert:" not in capsys.readouterr().err
