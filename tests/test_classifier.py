"""The keras-hub task API: the seed pages' examples, freezing, and clear errors that leave the model unchanged."""

import contextlib
import copy
import functools
import itertools
import re
import signal
import sys
import tracemalloc
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

import flaxbert
from flaxbert import checkpoint
from flaxbert.checkpoint import CheckpointError
from flaxbert.parallel import make_mesh
from flaxbert.training import loops
from flaxbert.training.preemption import Preemption

FEATURES = ["The quick brown fox jumped.", "I forgot my homework."]
LABELS = [0, 3]
VOCAB = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "The", "quick", "brown", "fox", "jumped", "."]
PREPROCESSED = {
    "token_ids": np.ones(shape=(2, 12), dtype="int32"),
    "segment_ids": np.array([[0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]] * 2),
    "padding_mask": np.array([[1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]] * 2),
}

pytestmark = pytest.mark.filterwarnings("ignore:batch_size=2 does not split")


def _small(cls, **kwargs):
    # The seed pages' custom backbone, shrunk (hidden 32, 2 layers) to keep CI fast; same code path.
    return cls(vocabulary_size=30552, num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=64,
               max_sequence_length=128, **kwargs)  # fmt: skip


def _leaves_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_custom_backbone_and_vocabulary_example(arch):
    bert = arch == "bert"
    tokenizer = (flaxbert.BertTokenizer if bert else flaxbert.DistilBertTokenizer)(vocabulary=VOCAB)
    preprocessor_cls = (
        flaxbert.BertTextClassifierPreprocessor if bert else flaxbert.DistilBertTextClassifierPreprocessor
    )
    preprocessor = preprocessor_cls(tokenizer=tokenizer, sequence_length=128)
    backbone = _small(flaxbert.BertBackbone if bert else flaxbert.DistilBertBackbone)
    cls = flaxbert.BertTextClassifier if bert else flaxbert.DistilBertTextClassifier
    classifier = cls(backbone=backbone, preprocessor=preprocessor, num_classes=4)
    before = classifier.predict(x=FEATURES, batch_size=2, verbose=0)
    history = classifier.fit(x=FEATURES, y=LABELS, batch_size=2, epochs=2, verbose=0)
    after = classifier.predict(x=FEATURES, batch_size=2, verbose=0)
    assert before.shape == after.shape == (2, 4) and np.all(np.isfinite(after))
    assert not np.allclose(before, after)
    assert set(history.history) == {"loss", "accuracy"} and len(history.history["loss"]) == 2
    assert history.epoch == [0, 1]


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_preprocessed_integer_example(arch):
    bert = arch == "bert"
    backbone = _small(flaxbert.BertBackbone if bert else flaxbert.DistilBertBackbone)
    features = dict(PREPROCESSED) if bert else {k: v for k, v in PREPROCESSED.items() if k != "segment_ids"}
    cls = flaxbert.BertTextClassifier if bert else flaxbert.DistilBertTextClassifier
    classifier = cls(backbone=backbone, num_classes=4, preprocessor=None)
    before = classifier.predict(x=features, batch_size=2, verbose=0)
    classifier.fit(x=features, y=LABELS, batch_size=2, verbose=0)
    after = classifier.predict(x=features, batch_size=2, verbose=0)
    assert after.shape == (2, 4) and np.all(np.isfinite(after)) and not np.allclose(before, after)


def test_recompile_then_freeze_backbone():
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4)
    classifier.compile(loss="sparse_categorical_crossentropy", optimizer=optax.adam(5e-5), jit_compile=True)
    classifier.backbone.trainable = False
    backbone_before = jax.tree.map(np.array, classifier.backbone.params)
    head_before = jax.tree.map(np.array, classifier.head_params)
    classifier.fit(x=PREPROCESSED, y=LABELS, batch_size=2, verbose=0)
    assert _leaves_equal(backbone_before, classifier.backbone.params)
    changed = jax.tree.map(lambda x, y: not np.array_equal(x, y), head_before, classifier.head_params)
    assert all(jax.tree.leaves(changed))


def test_softmax_activation_returns_probabilities_and_trains():
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4, activation="softmax")
    probs = classifier.predict(PREPROCESSED, batch_size=2, verbose=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    history = classifier.fit(PREPROCESSED, LABELS, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0


def test_evaluate_matches_predict():
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4)
    logits = classifier.predict(PREPROCESSED, verbose=0)
    metrics = classifier.evaluate(PREPROCESSED, LABELS, verbose=0)
    loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, np.array(LABELS)).mean())
    assert metrics["loss"] == pytest.approx(loss, abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == np.array(LABELS))))


def test_a_column_of_class_ids_is_taken_as_keras_takes_it():
    """y of shape (n, 1), which Keras' sparse cross-entropy accepts: the same scores and training as y of shape (n,)."""
    column = np.array(LABELS)[:, None]
    ours, twin = (flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone, seed=1), num_classes=4) for _ in range(2))
    assert ours.evaluate(PREPROCESSED, column, verbose=0) == ours.evaluate(PREPROCESSED, LABELS, verbose=0)
    with_column = ours.fit(PREPROCESSED, column, batch_size=2, epochs=2, seed=0, verbose=0, validation_data=(
        PREPROCESSED, column)).history  # fmt: skip
    with_ids = twin.fit(PREPROCESSED, LABELS, batch_size=2, epochs=2, seed=0, verbose=0, validation_data=(
        PREPROCESSED, LABELS)).history  # fmt: skip
    assert with_column == with_ids and len(with_ids["val_loss"]) == 2
    untrained = _small(flaxbert.BertBackbone, seed=1).params
    assert _leaves_equal(ours.params, twin.params) and not _leaves_equal(ours.backbone.params, untrained)


@pytest.fixture(scope="module")
def text_classifier():
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=16)
    return flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4, preprocessor=preprocessor)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(x=FEATURES, y=[0, 4]), r"labels outside \[0, 4\)"),
        (dict(x=FEATURES, y=[0.5, 1.0]), "must hold integer class ids"),
        (dict(x=FEATURES, y=["pos", "neg"]), r"y holds label names \(\['neg', 'pos'\]\), not class ids"),
        (dict(x=FEATURES, y=[0, 1, 2]), r"len\(x\) != len\(y\): 2 examples but 3 labels"),
        (dict(x=[], y=[]), "x is empty"),
        (dict(x=("the fox", "the"), y=[0]), r"two strings, which is not a batch: for two texts pass a list"),
        (dict(x=(["the fox"], 5), y=[0]), "segment 1 must be a string or a list of strings, got int"),
        (dict(x=["a fox", "caf\ud800e"], y=LABELS), r"item 1 of the batch is not valid Unicode text: .*surrogate"),
        (dict(x=FEATURES), "y is missing"),
        (dict(x={"token_ids": np.ones((2, 4), int)}, y=LABELS), r"missing \['segment_ids', 'padding_mask'\]"),
        (dict(x=FEATURES, y=LABELS, batch_size=0), r"batch_size must be None \(32\) or a positive integer"),
        (dict(x=FEATURES, y=LABELS, epochs=-1), "epochs must be a non-negative integer, got -1"),
        (dict(x=FEATURES, y=[0, 4], epochs=0), r"labels outside \[0, 4\)"),  # checked though nothing trains
        (dict(x=FEATURES, y=LABELS, sample_weight=[1.0]), "one weight per example"),
        (dict(x=FEATURES, y=LABELS, sample_weight=["a", "b"]), r"sample_weight is not one rectangular array.*'a'"),
        (dict(x=FEATURES, y=LABELS, sample_weight=[1.0, np.nan]), r"must be finite.*sample_weight\[1\] is nan"),
        (dict(x=FEATURES, y=LABELS, sample_weight=[-1.0, 1.0]), r"non-negative.*sample_weight\[0\] is -1.0"),
        (dict(x=FEATURES, y=LABELS, sample_weight=[1.0, 1e39]), r"at most 3.403e\+38 \(float32's largest\)"),
        (dict(x=FEATURES, y=[[0], [1, 2]]), "y is not one rectangular array of numbers"),
        (dict(x=FEATURES, y=np.eye(4)[[0, 3]]), r"shape \(n,\) or \(n, 1\); got shape \(2, 4\) \(one-hot.*argmax"),
        (dict(x=FEATURES, y=np.zeros((2, 1, 1), int)), r"one class id per example.*got shape \(2, 1, 1\)\.$"),
        (dict(x={**PREPROCESSED, "token_ids": [[1, 2], [3]]}, y=LABELS), r"inputs\['token_ids'\] is not one rect"),
        (dict(x=FEATURES, y=LABELS, group_by_length="yes"), "group_by_length must be True or False"),
        (dict(x=PREPROCESSED, y=LABELS, group_by_length=True), "only helps length-bucketed.*x is preprocessed"),
        (dict(x=FEATURES, y=LABELS, validation_data=(FEATURES, [0])), r"validation_data: len\(x\) != len\(y\)"),
        (dict(x=FEATURES, y=LABELS, validation_data=(FEATURES, [0, 9])), r"validation_data: y has labels outside"),
        (dict(x=FEATURES, y=LABELS, validation_data=FEATURES[0]), r"validation_data must be a tuple \(x, y\)"),
        (dict(x=FEATURES, y=LABELS, validation_data=FEATURES), "validation_data: x must be a batch of strings"),
        (dict(x=FEATURES, y=LABELS, shuffle="yes"), "shuffle must be True or False, got 'yes'"),
        (dict(x=FEATURES, y=LABELS, on_log=5), "on_log must be a function of one row"),
        (dict(x=FEATURES, y=LABELS, log_every=0), "log_every must be a positive integer, got 0"),
        (dict(x=FEATURES, y=LABELS, checkpoint_every=-3), "checkpoint_every must be None .* or a positive integer"),
        (dict(x=FEATURES, y=LABELS, checkpoint_every=0), "checkpoint_every must be None .* or a positive integer"),
        (dict(x=FEATURES, y=LABELS, checkpoint_every=1), r"checkpoint_every=1 saves into checkpoint_dir, which is No"),
        (dict(x=FEATURES, y=LABELS, epochs=np.int64(-2)), "epochs must be a non-negative integer"),
        (dict(x=FEATURES, y=LABELS, batch_size=True), r"batch_size must be None \(32\) or a positive integer"),
        (dict(x=FEATURES, y=LABELS, seed=-1), r"seed must be None or an integer in \[0, 2\*\*31\), got -1"),
        (dict(x=FEATURES, y=LABELS, seed=1.5), r"seed must be None or an integer in \[0, 2\*\*31\), got 1.5"),
        (dict(x=FEATURES, y=LABELS, seed="7"), r"seed must be None or an integer .*, got '7'"),
        (dict(x=FEATURES, y=LABELS, checkpoint_dir=""), "checkpoint_dir must be a directory path or None, got ''"),
        (dict(x=(["a"], ["b"], ["c"]), y=[0]), "a tuple of 3 text segments, but this BERT has 2 segment types"),
        (dict(x=FEATURES, y=[0, np.nan]), r"y has no label at position 1 \(NaN or None\): drop the unlabelled"),
        (dict(x=FEATURES, y=LABELS, verbose="yes"), r"verbose must be 0 \(silent\), 1 .* or 'auto', got 'yes'"),
        (dict(x=FEATURES, y=LABELS, verbose=3), r"verbose must be 0 \(silent\), 1 .* or 'auto', got 3"),
        (dict(x=FEATURES, y=[None, None]), r"y has no label at position 0 \(and 1 more\)"),
    ],
)
def test_fit_rejects_bad_input_and_leaves_the_model_unchanged(text_classifier, kwargs, message):
    before = jax.tree.map(np.array, text_classifier.params)
    with pytest.raises((TypeError, ValueError), match=message):
        text_classifier.fit(**{"batch_size": 2, "verbose": 0, **kwargs})
    assert _leaves_equal(before, text_classifier.params)


def test_verbose_as_keras_reads_it(text_classifier, capsys):
    """evaluate's bar showed steps alone, any value was taken, and 2 drew the bar too: 1 is now a bar with the
    running loss and accuracy, 2 one line, as in Keras."""
    scores = text_classifier.evaluate(FEATURES, LABELS, batch_size=1, verbose=1)
    err = capsys.readouterr().err
    assert f"loss: {scores['loss']:.4f} - accuracy: {scores['accuracy']:.4f}" in err and "2/2" in err
    text_classifier.evaluate(FEATURES, LABELS, batch_size=1, verbose=2)
    out, err = capsys.readouterr()
    assert out.startswith(f"evaluate: loss: {scores['loss']:.4f} - accuracy: {scores['accuracy']:.4f} - ")
    assert "step/s" not in err  # no bar
    text_classifier.predict(FEATURES, verbose=2)
    out, err = capsys.readouterr()
    assert out.startswith("predict: 2 examples - ") and "step/s" not in err
    assert text_classifier.evaluate(FEATURES, LABELS, verbose="auto") == scores
    with pytest.raises(ValueError, match=r"verbose must be .*, got None"):
        text_classifier.predict(FEATURES, verbose=None)
    capsys.readouterr()
    fitted = flaxbert.BertTextClassifier(flaxbert.BertBackbone(50, 1, 2, 8, 8, max_sequence_length=4), num_classes=2)
    ones = np.ones((4, 4), int)
    inputs = {"token_ids": ones, "segment_ids": 0 * ones, "padding_mask": ones}
    history = fitted.fit(inputs, [0, 1, 0, 1], batch_size=2, epochs=2, verbose=2)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"] and "step/s" not in err
    assert lines[1].startswith(f"epoch 2/2: loss: {history.history['loss'][1]:.4f} - accuracy: ")


def test_the_default_verbose_draws_a_bar_only_where_it_redraws_in_place(text_classifier, capsys, monkeypatch):
    """verbose defaulted to 1, so a service's every predict wrote a bar's redraws (carriage returns, and cursor-up
    escapes from concurrent calls) into its log. The default is Keras' "auto": a bar on a terminal or in a
    notebook, one line where output is a file or a pipe (as Keras' bar prints only its last line there)."""
    from flaxbert.tasks import arguments

    text_classifier.predict(FEATURES)
    out, err = capsys.readouterr()  # captured: not a terminal
    assert out.startswith("predict: 2 examples - ") and "\r" not in err and "step" not in err
    monkeypatch.setattr(arguments, "interactive_output", lambda: True)
    text_classifier.predict(FEATURES, batch_size=1)
    out, err = capsys.readouterr()
    assert out == "" and "2/2" in err
    monkeypatch.undo()
    fake_terminal = types.SimpleNamespace(isatty=lambda: True, write=sys.stderr.write, flush=sys.stderr.flush)
    monkeypatch.setattr(sys, "stderr", fake_terminal)
    assert arguments.verbosity("auto") == 1
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, a daemon with stderr closed
    assert arguments.verbosity("auto") == 2 and arguments.verbosity(1) == 1


def test_params_already_on_the_mesh_are_not_placed_again_each_call(monkeypatch):
    """Each predict and evaluate put every param array on the step's shardings again, a walk over the whole tree
    (~8 ms a call for MiniLM-L6) that changed nothing once they were there. The params placed are kept as the
    classifier's own (a preset's or a user's come in as numpy or on one device: they were placed anew in every call)
    and remembered by weak references: new params (a fit, an assignment) are placed again, and the old ones are not
    kept alive."""
    import gc
    import weakref

    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(50, 1, 2, 8, 16, max_sequence_length=8, seed=0),
                                             num_classes=2, seed=0)  # fmt: skip
    ones = np.ones((4, 8), int)
    x = {"token_ids": ones, "segment_ids": 0 * ones, "padding_mask": ones}
    classifier.compile()  # creates the head
    classifier.params = jax.tree.map(np.asarray, classifier.params)  # as a preset's or a user's params come in
    placed = []
    real = jax.device_put
    monkeypatch.setattr(jax, "device_put", lambda tree, *args, **kwargs: placed.append(
        len(jax.tree.leaves(tree))) or real(tree, *args, **kwargs))  # fmt: skip
    n_params = len(jax.tree.leaves(classifier.params))
    first = classifier.predict(x, batch_size=4, verbose=0)
    assert placed.count(n_params) == 1
    step_shardings = classifier._steps("predict")[1]
    assert jax.tree.map(lambda a: a.sharding, classifier.params) == step_shardings  # kept where the step reads them
    np.testing.assert_array_equal(classifier.predict(x, batch_size=4, verbose=0), first)
    assert placed.count(n_params) == 1  # not again: the same arrays, already there
    for _ in range(2):
        classifier.evaluate(x, [0, 1, 0, 1], batch_size=4, verbose=0)
    assert placed.count(n_params) == 2  # once for the eval step's shardings, then not again
    old = weakref.ref(jax.tree.leaves(classifier.params)[0])
    classifier.fit(x, [0, 1, 0, 1], batch_size=4, verbose=0)
    gc.collect()
    assert old() is None  # the remembered params hold nothing alive
    before = placed.count(n_params)
    trained = classifier.predict(x, batch_size=4, verbose=0)
    assert placed.count(n_params) == before + 1 and not np.array_equal(trained, first)  # new params: placed, used
    classifier.predict(x, batch_size=4, verbose=0)
    assert placed.count(n_params) == before + 1  # and remembered in turn
    np.testing.assert_array_equal(trained, copy.deepcopy(classifier).predict(x, batch_size=4, verbose=0))


def test_a_predict_never_puts_back_params_a_fit_in_another_thread_replaced_meanwhile(monkeypatch):
    """A predict keeps the params it placed as the classifier's own. A service that fine-tunes in one thread and
    predicts in another must not lose the fit's result: a fit that ends while a predict places the old params (here
    made to happen inside that placement) keeps its trained params."""
    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(50, 1, 2, 8, 16, max_sequence_length=8, seed=0),
                                             num_classes=2, seed=0)  # fmt: skip
    ones = np.ones((4, 8), int)
    x = {"token_ids": ones, "segment_ids": 0 * ones, "padding_mask": ones}
    classifier.compile()
    classifier.params = jax.tree.map(np.asarray, classifier.params)  # to be placed by the next predict
    trained = jax.tree.map(lambda a: jnp.asarray(a) + 1.0, classifier.params)  # what the other thread's fit sets
    n_params = len(jax.tree.leaves(trained))
    real = jax.device_put

    def placing_while_a_fit_ends(tree, *args, **kwargs):
        placed = real(tree, *args, **kwargs)
        if len(jax.tree.leaves(tree)) == n_params:
            classifier._set_params(trained)
        return placed

    monkeypatch.setattr(jax, "device_put", placing_while_a_fit_ends)
    classifier.predict(x, batch_size=4, verbose=0)
    monkeypatch.undo()
    assert all(a is b for a, b in zip(jax.tree.leaves(classifier.params), jax.tree.leaves(trained), strict=True))


def test_numpy_integers_count_as_integers(text_classifier):
    assert text_classifier.predict(FEATURES, batch_size=np.int64(2), verbose=0).shape == (2, 4)
    with pytest.raises(ValueError, match="y is missing"):  # past the epochs and batch_size checks
        text_classifier.fit(FEATURES, batch_size=np.int64(2), epochs=np.int32(1), verbose=0)


def test_a_preprocessor_with_more_tokens_than_the_backbone_embeds_is_refused():
    """A rare token's id past the embedding table failed only at predict or mid-fit (from_preset checked already)."""
    tokenizer = flaxbert.BertTokenizer(vocabulary=VOCAB)
    preprocessor = flaxbert.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=8)
    backbone = flaxbert.BertBackbone(len(VOCAB) - 1, 1, 2, 16, 16, max_sequence_length=8)
    with pytest.raises(ValueError, match=r"preprocessor: the tokenizer has 11 tokens but the model embeds only 10"):
        flaxbert.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)


def test_a_file_as_checkpoint_dir_is_refused_before_training(text_classifier, tmp_path):
    before = jax.tree.map(np.array, text_classifier.params)
    (tmp_path / "ckpt").write_text("not a directory")
    with pytest.raises(ValueError, match=r"checkpoint_dir '.*ckpt' is a file; pass a directory"):
        text_classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"checkpoint_dir '.*ckpt/run': '.*ckpt' is a file; pass a directory"):
        text_classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "ckpt" / "run")
    with pytest.raises(ValueError, match=r"checkpoint_dir '/proc/1/run' cannot be created \(.*: /proc/1/run\); pass"):
        text_classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0, checkpoint_dir="/proc/1/run")
    for step in ("1", "2"):  # the user's own folders, taken for damaged steps (and the fix was to delete them)
        (tmp_path / "mine" / step).mkdir(parents=True)
        (tmp_path / "mine" / step / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"checkpoint_dir '.*mine' holds folders named as checkpoint steps that are "
                                         r"no checkpoints \(1, 2: without Orbax's .* pass a new or empty"):  # fmt: skip
        text_classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["1", "2"]  # nothing written beside them
    assert _leaves_equal(before, text_classifier.params)


def test_a_checkpoint_of_another_model_or_a_damaged_one_is_one_clear_error(tmp_path):
    def classifier(num_classes):
        backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=12, seed=0)
        return flaxbert.BertTextClassifier(backbone, num_classes=num_classes, seed=1)

    classifier(4).fit(PREPROCESSED, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "run")
    other = classifier(5)
    before = jax.tree.map(np.array, other.params)
    with pytest.raises(ValueError, match=r"different run at step 1 .*'model head.num_classes': \(4, 5\)"):
        other.fit(PREPROCESSED, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "run")
    # The saved arrays are checked too (a checkpoint from before records held the model): the ones that differ named.
    (_, _), _, (abstract, shardings) = other._steps("train", True)
    named = r"params.logits.bias: saved \(4,\), now \(5,\); params.logits.kernel: saved \(16, 4\), now \(16, 5\)"
    refused = pytest.raises(CheckpointError, match=rf"step 1 in .* does not fit this model and optimizer \({named}")
    with contextlib.closing(checkpoint.manager(tmp_path / "run")) as mngr, refused:
        checkpoint.restore_latest(mngr, abstract, shardings)
    same = classifier(4)
    same.compile(optimizer=optax.sgd(0.1))  # the same model with another optimizer state
    with pytest.raises(CheckpointError, match=r"does not fit this model and optimizer \(\d+ arrays saved"):
        same.fit(PREPROCESSED, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "run")
    emptied = tmp_path / "run" / "1" / "state"  # its metadata gone: it read as another model's with 0 arrays
    for item in emptied.glob("_METADATA"):
        item.unlink()
    with pytest.raises(CheckpointError, match=r"step 1 in .* is damaged or incomplete \(its state holds no arrays"):
        classifier(4).fit(PREPROCESSED, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "run")
    (tmp_path / "run" / "5").mkdir()
    (tmp_path / "run" / "5" / "junk").write_text("x")
    with pytest.raises(CheckpointError, match=r"step 5 in .* cannot be read"):
        other.fit(PREPROCESSED, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path / "run")
    assert _leaves_equal(before, other.params)


def test_a_frozen_backbone_run_resumes_exactly(tmp_path):
    """The frozen backbone's optimizer state holds empty MaskedNodes where its shardings hold one sharding: building
    the restore target from the two trees failed (a pytree structure error), so such a run could not resume."""

    def frozen():
        backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=12, seed=0)
        classifier = flaxbert.BertTextClassifier(backbone, num_classes=4, seed=1)
        classifier.backbone.trainable = False
        return classifier

    x = {**PREPROCESSED, "token_ids": np.arange(24).reshape(2, 12) % 100}
    frozen().fit(x, LABELS, batch_size=2, epochs=1, verbose=0, checkpoint_dir=tmp_path)
    resumed = frozen()
    assert resumed.fit(x, LABELS, batch_size=2, epochs=2, verbose=0, checkpoint_dir=tmp_path).epoch == [1]
    straight = frozen()
    straight.fit(x, LABELS, batch_size=2, epochs=2, verbose=0)
    assert _leaves_equal(jax.tree.map(np.array, straight.params), jax.tree.map(np.array, resumed.params))


def test_a_bfloat16_run_resumes_exactly_from_a_checkpoint_without_the_params_casts(tmp_path):
    """A bfloat16 train state keeps its params' bfloat16 casts; checkpoints leave them out (they are the params'),
    and the resumed run casts them again: it ends where the uninterrupted run does, bit for bit."""
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 100, (32, 12)), "segment_ids": np.zeros((32, 12), int),
         "padding_mask": np.ones((32, 12), int)}  # fmt: skip
    y = rng.integers(0, 4, 32)

    def classifier():
        backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=12, seed=0, dtype="bfloat16")
        return flaxbert.BertTextClassifier(backbone, num_classes=4, seed=1)

    def stop_at_5(row):
        if row["step"] == 5:
            raise KeyboardInterrupt

    fit = functools.partial(classifier().fit, x, y, batch_size=8, epochs=2, verbose=0, checkpoint_dir=tmp_path,
                            checkpoint_every=2, log_every=1)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        fit(on_log=stop_at_5)  # the last checkpoint is step 4's
    saved = checkpoint.saved_shapes(checkpoint.manager(tmp_path).item_metadata(4)["state"])
    assert saved and not any("compute_params" in name for name in saved)
    resumed = classifier()
    resumed.fit(x, y, batch_size=8, epochs=2, verbose=0, checkpoint_dir=tmp_path)
    straight = classifier()
    straight.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert _leaves_equal(jax.tree.map(np.array, straight.params), jax.tree.map(np.array, resumed.params))
    assert not _leaves_equal(jax.tree.map(np.array, classifier().params), jax.tree.map(np.array, resumed.params))


def test_a_fit_resumed_mid_epoch_reports_the_whole_epoch(tmp_path, monkeypatch):
    """The epoch's metric sums up to the checkpoint are saved with it: the resumed run's history is the
    uninterrupted one's (it used to average only the steps after the resume). Its first on_log row's examples/s
    counts only the rows this process trained (it used to count the window's rows before the interruption too)."""
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 100, (48, 12)), "segment_ids": np.zeros((48, 12), int),
         "padding_mask": np.ones((48, 12), int)}  # fmt: skip
    y = rng.integers(0, 4, 48)

    def classifier():
        backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=12, seed=0)
        return flaxbert.BertTextClassifier(backbone, num_classes=4, seed=1)

    def stop_at_6(row):
        if row["split"] == "train" and row["step"] == 6:
            raise KeyboardInterrupt

    fit = functools.partial(classifier().fit, x, y, batch_size=8, epochs=2, verbose=0, checkpoint_dir=tmp_path,
                            checkpoint_every=2, log_every=3)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        fit(on_log=stop_at_6)  # the checkpoint at step 4 is mid-epoch (6 steps an epoch), its log window holds step 4
    rows = []
    monkeypatch.setattr(flaxbert.training.loops, "time", types.SimpleNamespace(perf_counter=itertools.count().__next__))
    resumed = fit(on_log=rows.append)  # a clock that ticks one second per reading: a row's rate is its new rows
    straight = classifier().fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert resumed.epoch == straight.epoch == [0, 1]
    assert resumed.history == straight.history
    assert [(r["step"], r["examples_per_second"]) for r in rows] == [(6, 16.0), (9, 24.0), (12, 24.0)]


def test_an_interrupted_fit_keeps_the_steps_it_completed():
    """As in Keras, Ctrl-C or an error in on_log leaves the params of the last completed step (fit used to keep
    none of them): stopped after step 3 of 5, the params are those of a fit over the first 3 batches alone."""
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 500, (40, 12)), "segment_ids": np.zeros((40, 12), int),
         "padding_mask": np.ones((40, 12), int)}  # fmt: skip
    y = rng.integers(0, 4, 40)

    def stop_at_3(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    def classifier():
        backbone = flaxbert.BertBackbone(500, 1, 2, 16, 16, max_sequence_length=12, seed=0)
        return flaxbert.BertTextClassifier(backbone, num_classes=4, seed=1)

    interrupted = classifier()
    before = jax.tree.map(np.array, interrupted.params)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(x, y, batch_size=8, shuffle=False, verbose=0, on_log=stop_at_3, log_every=1)
    three_steps = classifier()
    three_steps.fit({k: v[:24] for k, v in x.items()}, y[:24], batch_size=8, shuffle=False, verbose=0)
    assert not _leaves_equal(before, interrupted.params)
    assert _leaves_equal(jax.tree.map(np.array, three_steps.params), interrupted.params)


def test_bucketed_predict_and_evaluate_give_each_row_its_own_fixed_length_numbers():
    """Bucketed inference visits the rows longest first, each batch cut to its bucket: the outputs come back in the
    input's order, and a row one token past a bucket (17, 25, 33 tokens) keeps its last token. Scores count the real
    rows only: each step here pads to 8 rows (one per device) with copies of row 0 that carry its label, so some
    label of row 0 is the padding rows' class."""
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=48)
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4, preprocessor=preprocessor)
    words = ["quick", "brown", "fox", "The", "jumped", "."]  # a token each
    texts = [" ".join(itertools.islice(itertools.cycle(words), n - 2)) for n in (9, 33, 3, 17, 25)]  # n tokens each
    assert [len(t) for t in preprocessor.tokenizer(texts)] == [7, 31, 1, 15, 23]  # [CLS] and [SEP] make n
    classifier.bucket = False
    fixed = classifier.predict(texts, batch_size=2, verbose=0)
    classifier.bucket = True
    np.testing.assert_allclose(classifier.predict(texts, batch_size=2, verbose=0), fixed, rtol=1e-5, atol=1e-6)
    for first in range(4):
        labels = np.array([first, 1, 2, 3, 0])
        scores = classifier.evaluate(texts, labels, batch_size=2, verbose=0)
        loss = optax.softmax_cross_entropy_with_integer_labels(fixed, labels).mean()
        assert scores["loss"] == pytest.approx(float(loss), rel=1e-5)
        assert scores["accuracy"] == pytest.approx(float(np.mean(fixed.argmax(-1) == labels)))


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_length_bucketing_trains_as_fixed_length_training_with_dropout(arch):
    """Dropout masks were drawn over the padded batch's shape, so a batch padded to its bucket (16 positions) got
    other masks than the same batch padded to sequence_length (64): bucketing changed training, not just its speed.
    They are now the leading corner of masks over the model's longest sequence, whatever the padded width."""
    backbone_cls, classifier_cls, preprocessor_cls = {
        "bert": (flaxbert.BertBackbone, flaxbert.BertTextClassifier, flaxbert.BertTextClassifierPreprocessor),
        "distil_bert": (flaxbert.DistilBertBackbone, flaxbert.DistilBertTextClassifier,
                        flaxbert.DistilBertTextClassifierPreprocessor),
    }[arch]  # fmt: skip
    texts = ["The quick brown fox jumped.", "The fox.", "quick quick brown fox", "jumped . The fox"] * 2
    labels = [0, 1, 2, 3] * 2
    trained = []
    for bucket in (True, False):
        backbone = backbone_cls(len(VOCAB), 2, 2, 16, 32, dropout=0.3, max_sequence_length=128, seed=0)
        preprocessor = preprocessor_cls(flaxbert.BertTokenizer(VOCAB), sequence_length=64)
        classifier = classifier_cls(backbone, num_classes=4, preprocessor=preprocessor, dropout=0.3, seed=1)
        classifier.bucket = bucket
        history = classifier.fit(texts, labels, batch_size=4, epochs=2, seed=3, verbose=0)
        trained.append((history.history["loss"], jax.tree.map(np.asarray, classifier.params)))
    (bucketed_loss, bucketed), (fixed_loss, fixed) = trained
    np.testing.assert_allclose(bucketed_loss, fixed_loss, rtol=1e-5)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6), bucketed, fixed)
    assert bucketed_loss[0] != bucketed_loss[1]  # it trained, with dropout drawing new masks each step


def test_grouping_by_length_without_buckets_is_refused(text_classifier):
    before = jax.tree.map(np.array, text_classifier.params)
    text_classifier.bucket = False
    try:
        with pytest.raises(ValueError, match="only helps length-bucketed batches, and classifier.bucket is False"):
            text_classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0, group_by_length=True)
    finally:
        text_classifier.bucket = True
    assert _leaves_equal(before, text_classifier.params)


def test_bucket_takes_true_or_false_only(text_classifier):
    """`classifier.bucket = "no"` was taken, and being truthy, turned bucketing on."""
    with pytest.raises(ValueError, match=r"classifier.bucket must be True or False, got 'no'"):
        text_classifier.bucket = "no"
    assert text_classifier.bucket is True  # as it was
    text_classifier.bucket = np.False_
    try:
        assert text_classifier.bucket is False
    finally:
        text_classifier.bucket = True


def test_a_run_grouped_by_length_resumes_only_as_one(text_classifier, tmp_path):
    fit = functools.partial(text_classifier.fit, FEATURES, LABELS, batch_size=2, verbose=0, checkpoint_dir=tmp_path)
    assert fit(epochs=1, group_by_length=True).epoch == [0]
    with pytest.raises(ValueError, match=r"different run .*'group_by_length': \(True, False\)"):
        fit(epochs=2)
    assert fit(epochs=2, group_by_length=True).epoch == [1]  # the saved run goes on


def test_strings_without_a_preprocessor():
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=2)
    with pytest.raises(ValueError, match="raw strings but this classifier has preprocessor=None"):
        classifier.predict(FEATURES)


def test_batch_sizes_that_do_not_split_over_the_mesh_are_padded_and_said():
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4)
    assert classifier.mesh.size == 8
    with pytest.warns(UserWarning, match="padded to 8 rows"):
        odd = classifier.predict(PREPROCESSED, batch_size=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        even = classifier.predict(PREPROCESSED, batch_size=8, verbose=0)
    np.testing.assert_allclose(odd, even, atol=1e-6)


def test_a_mesh_from_jax_make_mesh_runs_as_an_auto_mesh():
    """jax.make_mesh gives Explicit axes by default: compile took the mesh, then every predict, evaluate and fit
    failed inside jax (a sharding-in-types error from the embedding lookup)."""
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4)
    expected = classifier.predict(PREPROCESSED, batch_size=8, verbose=0)
    explicit = jax.make_mesh((2, 4), ("data", "fsdp"))
    assert set(explicit.axis_types) == {jax.sharding.AxisType.Explicit}
    classifier.compile(mesh=explicit)
    assert set(classifier.mesh.axis_types) == {jax.sharding.AxisType.Auto}
    assert list(classifier.mesh.devices.flat) == list(explicit.devices.flat)
    np.testing.assert_allclose(classifier.predict(PREPROCESSED, batch_size=8, verbose=0), expected, atol=1e-6)


def test_wrong_backbone_and_compile_settings():
    distil = _small(flaxbert.DistilBertBackbone)
    with pytest.raises(TypeError, match="BertTextClassifier needs a BertBackbone"):
        flaxbert.BertTextClassifier(distil, num_classes=2)
    # A DistilBERT preprocessor is a BERT preprocessor's subclass, without the segment_ids BERT needs.
    distil_preprocessor = flaxbert.DistilBertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), 8)
    with pytest.raises(TypeError, match="preprocessor must be a BertTextClassifierPreprocessor or None"):
        flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=2, preprocessor=distil_preprocessor)
    classifier = flaxbert.DistilBertTextClassifier(distil, num_classes=2)
    with pytest.raises(ValueError, match="jit_compile=False is not supported"):
        classifier.compile(jit_compile=False)
    refusals = {  # what fits instead; -1 and 0 were "needs -8 devices"; (2, 2) was told to pass devices compile lacks
        (-1, 3): "fsdp=3 must divide the 8 devices: pick one of 1, 2, 4, 8",
        (3, -1): r"fsdp=-1 must be a positive number of devices \(only data may be -1: the rest\)",
        (-2, 4): "data=-2 must be a positive number of devices, or -1 for the devices fsdp leaves",
        (0, 8): "data=0 must be a positive",
        (
            2,
            2,
        ): "data=2 x fsdp=2 makes 4 devices but 8 are in use: pass data=-1 to fill the mesh, or a jax.sharding.Mesh",
    }
    for shape, refusal in refusals.items():
        with pytest.raises(ValueError, match=refusal):
            classifier.compile(mesh=shape)
    for bad in ("auto", 1, (1, 2, 3), (1.0, 8)):
        with pytest.raises(ValueError, match=r"mesh must be None .*, a \(data, fsdp\) pair of ints"):
            classifier.compile(mesh=bad)
    with pytest.raises(ValueError, match=r"must have the axes \('data', 'fsdp'\), got \('batch',\)"):
        classifier.compile(mesh=jax.make_mesh((8,), ("batch",)))
    classifier.compile(mesh=(np.int64(2), 4))
    assert dict(classifier.mesh.shape) == {"data": 2, "fsdp": 4}


def test_bfloat16_compute_trains_with_float32_params():
    backbone = _small(flaxbert.DistilBertBackbone, dtype="bfloat16")
    classifier = flaxbert.DistilBertTextClassifier(backbone, num_classes=4)
    features = {k: v for k, v in PREPROCESSED.items() if k != "segment_ids"}
    history = classifier.fit(features, LABELS, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    dtypes = {x.dtype for x in jax.tree.leaves(classifier.params)}
    assert dtypes == {np.dtype("float32")}
    assert classifier.predict(features, batch_size=8, verbose=0).dtype == np.float32


def test_random_params_are_born_sharded_on_the_mesh():
    on_fsdp = _small(flaxbert.BertBackbone)
    on_fsdp.init_params(make_mesh(2, 4))
    kernel = on_fsdp.params["transformer_layer_0"]["self_attention"]["query"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec("fsdp", None, None)
    assert kernel.addressable_shards[0].data.shape == (8, 4, 8)  # hidden 32 split over fsdp=4
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4)  # default: 8-way data
    replicated = classifier.backbone.params["transformer_layer_0"]["self_attention"]["query"]["kernel"]
    assert len(replicated.sharding.device_set) == 8 and replicated.addressable_shards[0].data.shape == (32, 4, 8)
    assert classifier.head_params["logits"]["kernel"].sharding.mesh.shape == {"data": 8, "fsdp": 1}
    # the same seed gives the same values wherever the params are born
    on_one_device = _small(flaxbert.BertBackbone).params["transformer_layer_0"]["self_attention"]["query"]["kernel"]
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(on_one_device))
    np.testing.assert_array_equal(np.asarray(replicated), np.asarray(on_one_device))


def test_sentence_pairs_and_numpy_string_arrays():
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=16)
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4, preprocessor=preprocessor)
    pairs = (np.array(FEATURES), np.array(["The fox.", "jumped"]))
    bucketed = classifier.predict(pairs, batch_size=8, verbose=0)  # raw text: padded to a length bucket
    full = classifier.predict(preprocessor(pairs), batch_size=8, verbose=0)  # the same, padded to 16
    assert preprocessor(pairs)["segment_ids"][0].max() == 1  # really packed as a pair
    np.testing.assert_allclose(bucketed, full, atol=1e-5)
    history = classifier.fit(pairs, LABELS, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_label_names_in_y_are_the_classes_of_label_names():
    """Named labels mean the classifier's classes: evaluate takes them as those classes' ids, and fit refuses names
    that are not among them (before it compiles or trains anything)."""
    names = ["positive", "negative", "neutral", "mixed"]
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4, label_names=names,
                                             preprocessor=flaxbert.BertTextClassifierPreprocessor(
                                                 flaxbert.BertTokenizer(VOCAB), sequence_length=16))  # fmt: skip
    y_names, y_ids = ["mixed", "positive"], [3, 0]  # sorted names would number them 0 and 3
    assert classifier.evaluate(FEATURES, y_names, verbose=0) == classifier.evaluate(FEATURES, y_ids, verbose=0)
    assert classifier.evaluate(FEATURES, y_names, verbose=0) != classifier.evaluate(FEATURES, y_ids[::-1], verbose=0)
    with pytest.raises(ValueError, match=r"not among this classifier's label_names \['positive', .*\]: \['pos'\]"):
        classifier.fit(FEATURES, ["pos", "mixed"], batch_size=2, verbose=0)


def test_integer_labels_beside_label_names_that_are_other_numbers_are_said_to_be_ids():
    """Star ratings named "1".."5": train.py reads a file's label 2 as the class named "2" (id 1), fit and evaluate
    read the int 2 as id 2 (Keras' rule), and nothing said so (the same model scored 0.0 on ints, 0.25 on names).
    The ids are kept, with a warning; a label only the names hold is refused saying why; names stay names."""
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=16)
    stars = flaxbert.BertTextClassifier(
        _small(flaxbert.BertBackbone),
        num_classes=4,
        preprocessor=preprocessor,
        label_names=np.array(["1", "2", "3", "4"]),
    )  # a LabelEncoder's classes_
    assert stars.label_names == ("1", "2", "3", "4") and all(type(name) is str for name in stars.label_names)
    with pytest.warns(
        UserWarning,
        match=r"label_names \['1', '2', '3', '4'\] hold numbers other than their positions, and "
        r"integer labels are read as class ids .*the label 1 means the class named '2'",
    ) as caught:
        by_ids = stars.evaluate(FEATURES, [1, 2], verbose=0)
    assert caught[0].filename == __file__  # the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names are names: nothing to say
        assert stars.evaluate(FEATURES, ["2", "3"], verbose=0) == by_ids
    with pytest.raises(ValueError, match=r"labels outside \[0, 4\).*e.g. \[4\].* \(the label_names .* hold numbers"):
        stars.fit(FEATURES, [3, 4], batch_size=2, verbose=0)
    decimals = flaxbert.BertTextClassifier(  # numbers by train.py's rule, as pandas writes a column with a gap
        _small(flaxbert.BertBackbone), num_classes=4, preprocessor=preprocessor, label_names=["1.0", "2.0", "c", "d"]
    )
    with pytest.warns(UserWarning, match=r"label_names \['1.0', '2.0', 'c', 'd'\] hold numbers other"):
        decimals.evaluate(FEATURES, [1, 2], verbose=0)
    words = flaxbert.BertTextClassifier(
        _small(flaxbert.BertBackbone), num_classes=4, preprocessor=preprocessor, label_names=["0", "1", "b", "c"]
    )  # numbers that are their ids: no doubt
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        words.evaluate(FEATURES, [1, 2], verbose=0)
    with pytest.raises(ValueError, match=r"\['7'\] \('7' looks like a class id: numpy reads a list of names and "
                                         r"integers as strings, so pass all ids or all names\)"):  # fmt: skip
        words.evaluate(FEATURES, ["b", 7], verbose=0)


def test_zero_epochs_checks_the_inputs_and_trains_nothing_as_keras(text_classifier):
    before = jax.tree.map(np.array, text_classifier.params)
    history = text_classifier.fit(FEATURES, LABELS, epochs=0, batch_size=2, verbose=0)
    assert (history.history, history.epoch) == ({}, [])
    assert _leaves_equal(before, text_classifier.params)


def test_predicting_short_texts_takes_host_memory_for_their_length_not_sequence_length():
    """Raw text to predict or evaluate is packed only as wide as its length bucket, without copies: 2,000 texts of
    under 16 tokens stay below what their inputs padded to sequence_length=128 would take alone."""
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=128)
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=4, preprocessor=preprocessor)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(VOCAB[5:], n)) for n in rng.integers(1, 12, 2000)]
    labels = rng.integers(0, 4, 2000)
    padded_inputs = len(texts) * 128 * 4 * 3  # token_ids, segment_ids, padding_mask as int32
    for run in (classifier.predict, functools.partial(classifier.evaluate, y=labels)):
        run(texts, batch_size=64, verbose=0)  # compiled outside the measure
        tracemalloc.start()
        try:
            run(texts, batch_size=64, verbose=0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < padded_inputs, (run, peak)


def _tiny(seed=1):
    backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=12, seed=0)
    return flaxbert.BertTextClassifier(backbone, num_classes=4, seed=seed)


def _tiny_data(rows, seed=0):
    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(1, 100, (rows, 12)), "segment_ids": np.zeros((rows, 12), int),
         "padding_mask": np.ones((rows, 12), int)}  # fmt: skip
    return x, rng.integers(0, 4, rows)


def test_a_run_stopped_while_validating_validates_first_when_it_resumes(tmp_path):
    """An epoch's checkpoint is saved before its validation: a run killed while validating resumed past it, that
    validation never ran and its row was lost (at the last epoch, train.py --resume then failed every time)."""
    x, y = _tiny_data(8)
    val = _tiny_data(4, seed=1)
    rows = []

    def logged_until_validating(step):
        def on_log(row):
            if row["split"] == "validation" and row["step"] == step:
                raise KeyboardInterrupt  # after the checkpoint of that step, before its validation is marked done
            rows.append(row)

        return on_log

    fit = functools.partial(_tiny().fit, x, y, batch_size=2, epochs=2, validation_data=val, seed=0, verbose=0,
                            checkpoint_dir=tmp_path)  # fmt: skip
    for stop in (4, 8):  # in the first epoch's validation; then, resumed, in the last one's
        with pytest.raises(KeyboardInterrupt):
            fit(on_log=logged_until_validating(stop))
    with pytest.warns(UserWarning, match="already trained to step 8"):
        assert fit(on_log=rows.append).epoch == []
    straight = []
    _tiny().fit(x, y, batch_size=2, epochs=2, validation_data=val, seed=0, verbose=0, on_log=straight.append)
    assert [(r["split"], r["step"]) for r in straight] == [("train", 4), ("validation", 4), ("train", 8),
                                                          ("validation", 8)]  # fmt: skip
    assert [(r["split"], r["step"], r["loss"]) for r in rows] == [(r["split"], r["step"], r["loss"]) for r in straight]
    with pytest.warns(UserWarning, match="already trained to step 8"):
        assert fit(on_log=rows.append).epoch == []
    assert len(rows) == 4  # validated once: nothing runs again
    (tmp_path / "validated.json").unlink()  # as a directory written before validations were recorded
    with pytest.warns(UserWarning, match="already trained to step 8"):
        assert fit(on_log=rows.append).epoch == []
    assert len(rows) == 4  # its validations ran: none again


def test_a_fit_refused_while_resuming_leaves_the_classifier_as_it_was(tmp_path, monkeypatch):
    """A damaged validated.json is read once the checkpoint's state is restored: the refusal handed that state to the
    classifier as if its training had been cut short, so it took the other run's params (and counted a fit)."""
    x, y = _tiny_data(8)
    val = _tiny_data(4, seed=1)
    _tiny().fit(x, y, batch_size=2, epochs=1, validation_data=val, seed=0, verbose=0, checkpoint_dir=tmp_path)
    (tmp_path / "validated.json").write_text("xx")
    other = _tiny(seed=7)
    other.fit(x, y, batch_size=2, epochs=1, seed=0, verbose=0)  # an optimizer state and a fit to keep
    before, kept = jax.tree.map(np.array, other.params), other._optimizer_state
    with pytest.raises(CheckpointError, match="validated.json is damaged"):
        other.fit(x, y, batch_size=2, epochs=2, validation_data=val, seed=0, verbose=0, checkpoint_dir=tmp_path)
    assert _leaves_equal(before, other.params)
    assert other._fits == 1 and other._optimizer_state is kept
    # A new state cut short before its first step: the classifier keeps its params and the optimizer state the fit
    # continued, and does not count the fit.
    kept_values = jax.tree.map(np.array, kept[1])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loops.compile_ahead, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        other.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert _leaves_equal(before, other.params) and other._fits == 1
    assert other._optimizer_state[0] is kept[0]
    assert _leaves_equal(kept_values, jax.tree.map(np.array, other._optimizer_state[1]))


def test_a_run_resumed_with_other_validation_data_is_refused(tmp_path):
    """A validation file changed in place resumed without a word, and train.py's summary put the scores of two
    datasets side by side (QA). Resuming without validation_data, or with the same, goes on."""
    x, y = _tiny_data(8)
    val, other_val = _tiny_data(4, seed=1), _tiny_data(4, seed=2)
    fit = functools.partial(_tiny().fit, x, y, batch_size=2, seed=0, verbose=0, checkpoint_dir=tmp_path)
    fit(epochs=1, validation_data=val)
    with pytest.raises(ValueError, match=r"holds a different run at step 4 .*'validation': 'other validation_data"):
        fit(epochs=2, validation_data=other_val)
    assert fit(epochs=2, validation_data=val).epoch == [1]
    assert fit(epochs=3).epoch == [2]


def test_each_fit_draws_a_new_order_and_new_masks_unless_seeded():
    """fit's order and dropout keys came from (seed=0, epoch / step) in every call, so fitting one epoch at a time
    replayed the same shuffle and masks; the default seed now counts the classifier's fits (Keras' fit draws new
    ones too), and one compiled step serves every seed."""
    x, y = _tiny_data(16)
    classifier = _tiny()
    classifier.compile(optimizer=optax.sgd(0.0))  # params never move: only the masks change the loss

    def loss(**kwargs):
        return classifier.fit(x, y, batch_size=4, verbose=0, **kwargs).history["loss"][0]

    first, second, third = loss(), loss(), loss()
    assert len({first, second, third}) == 3
    assert loss(seed=0) == loss(seed=0) == first and loss(seed=1) == second  # fit k's default seed is k
    (train_fn, _), _, _ = classifier._steps("train", True)
    assert train_fn._cache_size() == 1


def test_sigterm_is_caught_only_where_a_checkpoint_saves_the_run(text_classifier, tmp_path):
    """Without a checkpoint_dir, SIGTERM ended fit with SystemExit(0): the work lost and the job reported as a
    success. Now the process's own handler stays (the signal ends it as usual); with one, fit saves and exits 0."""
    handlers = []

    def on_log(row):
        handlers.append(signal.getsignal(signal.SIGTERM))

    own = signal.getsignal(signal.SIGTERM)
    text_classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0, on_log=on_log, log_every=1)
    text_classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0, on_log=on_log, log_every=1, checkpoint_dir=tmp_path)
    assert handlers[0] is own and isinstance(handlers[1].__self__, Preemption)
    assert signal.getsignal(signal.SIGTERM) is own


def test_a_finished_or_different_run_in_checkpoint_dir_is_said(tmp_path):
    """Another classifier fit on other data of the same size, in a finished run's directory, silently took that
    run's params and trained nothing; a resume with another shuffle setting was accepted (and with the seed left out
    of the comparison, a resume with another seed passed the suite)."""
    x, y = _tiny_data(4)
    done = _tiny()
    done.fit(x, y, batch_size=2, verbose=0, checkpoint_dir=tmp_path)
    other = _tiny(seed=2)
    before = jax.tree.map(np.array, other.params)
    other_x = {**x, "token_ids": (x["token_ids"] + 1) % 100}
    with pytest.raises(
        ValueError,
        match=r"at step 2 .*'data': 'the same number of examples, but other texts, labels or weights \(or texts tok",
    ):
        other.fit(other_x, y, batch_size=2, verbose=0, checkpoint_dir=tmp_path)
    for labels, weights in (((y + 1) % 4, None), (y, np.full(4, 0.5))):  # the same texts, other labels or weights
        with pytest.raises(ValueError, match=r"at step 2 .*'data': 'the same number of examples, but other texts"):
            other.fit(x, labels, batch_size=2, verbose=0, checkpoint_dir=tmp_path, sample_weight=weights)
    with pytest.raises(ValueError, match=r"'shuffle': \(True, False\)"):
        other.fit(x, y, batch_size=2, verbose=0, checkpoint_dir=tmp_path, shuffle=False)
    with pytest.raises(ValueError, match=r"'seed': \(0, 5\)"):  # another data order and other dropout masks
        other.fit(x, y, batch_size=2, verbose=0, checkpoint_dir=tmp_path, seed=5)
    # Another model of the same shapes (its head's activation, its dropout) silently took the run's params.
    backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=12, dropout=0.3)
    with pytest.raises(ValueError, match=r"at step 2 .*'model backbone.dropout': \(0.1, 0.3\)\}"):
        flaxbert.BertTextClassifier(backbone, num_classes=4).fit(x, y, batch_size=2, verbose=0, checkpoint_dir=tmp_path)
    softmax = flaxbert.BertTextClassifier(_tiny().backbone, num_classes=4, activation="softmax")
    with pytest.raises(
        ValueError,
        match=r"'model head.activation': \(None, 'softmax'\), 'model loss': .*from_logits=True.*from_logits=False",
    ):
        softmax.fit(x, y, batch_size=2, verbose=0, checkpoint_dir=tmp_path)
    assert _leaves_equal(before, other.params)
    with pytest.warns(UserWarning, match=r"already trained to step 2 \(epochs=1 is 2 steps\).* nothing is trained"):
        history = other.fit(x, y, batch_size=2, verbose=0, checkpoint_dir=tmp_path)
    assert history.epoch == [] and _leaves_equal(jax.tree.map(np.array, done.params), other.params)


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (lambda outputs, labels: jnp.mean(outputs), r"one loss per example .* returned shape \[\]"),
        (lambda outputs, labels: outputs[:, :1], r"for outputs \[7, 4\] it returned shape \[7, 1\]"),
        (lambda outputs, labels: outputs @ labels, r"loss\(outputs \[B, 4\] float32, labels \[B\] int32\) failed"),
        ("keras", r"loss is a Keras loss \(SparseCategoricalCrossentropy\), which takes \(y_true, y_pred\)"),
        # a 0/1 error trained nothing and reported a loss; a complex one failed inside jax.grad at the first step
        (lambda outputs, labels: outputs.argmax(-1) != labels, r"real floating-point losses, .* it returned bool"),
        (lambda outputs, labels: outputs[:, 0] * 1j, r"real floating-point losses, .* it returned complex64"),
    ],
)
def test_compile_checks_the_loss_it_is_given(loss, message, request):
    """A reduced or reshaped loss trained and evaluated wrongly (padding rows entered a mean, [B, 1] broadcast to
    [B, B]); a Keras loss object failed at the first step, inside Keras; a loss without gradients was taken."""
    if loss == "keras":
        loss = request.getfixturevalue("keras").losses.SparseCategoricalCrossentropy(from_logits=True)
    classifier = _tiny()
    kept = classifier.loss
    with pytest.raises(ValueError, match=message):
        classifier.compile(loss=loss)
    assert classifier.loss is kept


@pytest.mark.parametrize("optimizer", ["adam", "keras"])
def test_a_keras_optimizer_is_refused_saying_what_to_pass(optimizer, request):
    """Keras' names and objects were refused without a word of what flaxbert takes instead."""
    if optimizer == "keras":
        optimizer = request.getfixturevalue("keras").optimizers.Adam(1e-4)
    classifier = _tiny()
    with pytest.raises(ValueError, match=r"not taken: pass e.g. optax.adamw\(2e-5\), or flaxbert.training.optimizers"):
        classifier.compile(optimizer=optimizer)
    with pytest.raises(ValueError, match=r"an optax.GradientTransformation, got 3.$"):  # nothing to say of Keras
        classifier.compile(optimizer=3)


def test_a_small_input_runs_in_a_small_batch(text_classifier, monkeypatch):
    """3 sentences at batch_size=4096 ran a whole 4096-row batch (a tiny model: 335 ms instead of 5)."""

    seen = []

    def spy(function):
        def called(*args, **kwargs):
            seen.append((function.__name__, kwargs["batch_size"], kwargs["rows"]))
            return function(*args, **kwargs)

        return called

    want = text_classifier.predict(FEATURES * 10, batch_size=8, verbose=0)
    scores = text_classifier.evaluate(FEATURES * 10, LABELS * 10, batch_size=8, verbose=0)
    monkeypatch.setattr(loops, "predict", spy(loops.predict))
    monkeypatch.setattr(loops, "evaluate", spy(loops.evaluate))
    np.testing.assert_allclose(text_classifier.predict(FEATURES * 10, batch_size=4096, verbose=0), want, atol=1e-6)
    assert text_classifier.predict(FEATURES[:1], batch_size=4096, verbose=0).shape == (1, 4)
    assert text_classifier.evaluate(FEATURES * 10, LABELS * 10, batch_size=4096, verbose=0) == pytest.approx(scores)
    assert seen == [("predict", 32, 32), ("predict", 8, 8), ("evaluate", 32, 32)]  # 8 devices


def test_a_batch_larger_than_the_data_trains_as_one_batch_of_its_rows(monkeypatch):
    """fit padded every step to batch_size: a 2**21 batch over 3 examples asked XLA for 17 GB (Keras' fit runs one
    batch of len(x)). It now trains one batch of the next power of two over the devices, as a batch of 3 does."""
    seen = []
    real_fit = loops.fit

    def spy(*args, **kwargs):
        seen.append((kwargs["batch_size"], kwargs["rows"]))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(loops, "fit", spy)
    trained = []
    for batch_size in (3, 2**21):
        preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=16)
        classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), 4, preprocessor=preprocessor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # batch_size=3 does not split over 8 devices: padded, said elsewhere
            history = classifier.fit(FEATURES + FEATURES[:1], LABELS + [1], batch_size=batch_size, epochs=2, verbose=0)
        trained.append((history.history["loss"], jax.tree.map(np.asarray, classifier.params)))
    assert seen == [(3, 8), (8, 8)]  # 8 devices
    np.testing.assert_array_equal(trained[0][0], trained[1][0])
    assert _leaves_equal(trained[0][1], trained[1][1])


def test_validation_scores_are_printed_with_verbose(text_classifier, capsys):
    text_classifier.fit(FEATURES, LABELS, batch_size=2, epochs=2, validation_data=(FEATURES, LABELS))
    printed = capsys.readouterr()
    assert re.search(r"epoch 2/2: val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}", printed.out + printed.err)


def test_no_sample_weights_and_weights_of_one_are_the_same_data():
    from flaxbert.training.batches import ArrayData, fingerprint

    x, y = _tiny_data(4)
    assert fingerprint(ArrayData(x, y)) == fingerprint(ArrayData(x, y, np.ones(4, np.float32)))
    assert fingerprint(ArrayData(x, y)) != fingerprint(ArrayData(x, y, np.full(4, 2.0, np.float32)))


def test_a_jax_set_mesh_context_leaves_the_classifiers_own_mesh_in_charge(tmp_path):
    """Under `jax.set_mesh` of an explicit-axes mesh set for the user's own code, fit failed inside jax ("context mesh
    ... should match the mesh of sharding"); a classifier built under one mesh broke one built under another."""

    def run():
        preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=16)
        classifier = flaxbert.BertTextClassifier(
            _small(flaxbert.BertBackbone), num_classes=4, preprocessor=preprocessor
        )
        history = classifier.fit(FEATURES, LABELS, batch_size=2, verbose=0)
        return history.history["loss"], classifier.predict(FEATURES, verbose=0), classifier.mesh.shape, classifier

    want = run()
    with jax.set_mesh(jax.make_mesh((2, 4), ("data", "fsdp"))):
        run()
    with jax.set_mesh(jax.make_mesh((4, 2), ("data", "fsdp"))):
        loss, logits, mesh, classifier = run()
        classifier.save_to_preset(tmp_path / "preset")
        reloaded = flaxbert.TextClassifier.from_preset(tmp_path / "preset")
        np.testing.assert_array_equal(reloaded.predict(FEATURES, verbose=0), logits)
    assert loss == want[0] and mesh == want[2] == {"data": 8, "fsdp": 1}
    np.testing.assert_array_equal(logits, want[1])


def test_validation_batch_size_is_the_batch_of_each_epochs_validation(text_classifier, monkeypatch):
    """Keras' keyword, once refused ("validation runs at fit's batch_size"); train.py's eval_batch_size reaches it."""
    from flaxbert.training import loops

    compiled = []
    original = loops.compile_evaluate_ahead
    monkeypatch.setattr(
        loops, "compile_evaluate_ahead", lambda *a, **k: compiled.append(k["batch_size"]) or original(*a, **k)
    )
    state = jax.tree.map(np.array, text_classifier.params)
    scores = []
    padded = []
    for size in (None, 4):
        text_classifier.params = state
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = text_classifier.fit(FEATURES, LABELS, batch_size=2, validation_data=(FEATURES * 3, LABELS * 3),
                                          validation_batch_size=size, seed=0, verbose=0)  # fmt: skip
        scores.append(history.history["val_loss"])
        padded.append(
            [str(w.message).split(" does not split")[0] for w in caught if "does not split" in str(w.message)]
        )
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-5)  # the same sums, rounded in other batches
    assert list(dict.fromkeys(compiled)) == [2, 4]
    assert padded == [
        ["batch_size=2"],
        ["batch_size=2", "validation_batch_size=4"],
    ]  # each said once, by its name  # each validation's programs: at the batch asked for
    with pytest.raises(ValueError, match="validation_batch_size must be None or a positive integer, got 0"):
        text_classifier.fit(FEATURES, LABELS, validation_data=(FEATURES, LABELS), validation_batch_size=0, verbose=0)


def test_warnings_name_the_callers_line_not_flaxberts(tmp_path):
    """The public methods run inside a wrapper (`outside_mesh_context`), one frame each: warnings had named the
    wrapper's line in flaxbert/parallel/mesh.py instead of the user's."""
    classifier = flaxbert.BertTextClassifier(_small(flaxbert.BertBackbone), num_classes=3)
    with pytest.warns(UserWarning, match="batch_size=2 does not split over 8 devices") as caught:
        classifier.fit(PREPROCESSED, [0, 1], batch_size=2, verbose=0)
    classifier.save_to_preset(tmp_path / "preset")
    with pytest.warns(UserWarning, match="3-class head; num_classes=5 gets a new") as new_head:
        flaxbert.BertTextClassifier.from_preset(tmp_path / "preset", num_classes=5)
    assert {w.filename for w in [*caught, *new_head]} == {__file__}


def test_a_fit_called_while_the_classifiers_fit_runs_is_refused():
    """A fit from on_log trained, then the running fit took its own state: what the inner fit trained was dropped
    without a word, and both fits were counted."""
    classifier, (x, y) = _tiny(), _tiny_data(8)

    def on_log(row):
        classifier.fit(x, y, batch_size=4, verbose=0)

    with pytest.raises(RuntimeError, match=r"fit was called on this classifier while its fit is running \(from on_l"):
        classifier.fit(x, y, batch_size=4, verbose=0, on_log=on_log, log_every=1)
    assert classifier.fit(x, y, batch_size=4, verbose=0).epoch == [0]  # the refusal did not leave it "running"
