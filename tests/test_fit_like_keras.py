"""fit and evaluate as Keras runs them: the optimizer state carries over between fit calls, accuracy ignores
sample_weight, evaluate takes return_dict, and the leading positional arguments are Keras' (keras-hub is the
reference, through keras.Model.fit / evaluate on a keras-hub classifier without a preprocessor)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flaxbert
from flaxbert.training import optimizers

pytestmark = [pytest.mark.filterwarnings("ignore:batch_size=4 does not split"),
              pytest.mark.filterwarnings("ignore:batch_size=3 does not split")]  # fmt: skip


def _data(rows: int, seed: int = 0, vocab: int = 50, length: int = 8):
    rng = np.random.default_rng(seed)
    shape = (rows, length)
    x = {"token_ids": rng.integers(5, vocab, shape).astype("int32"), "segment_ids": np.zeros(shape, "int32"),
         "padding_mask": np.ones(shape, "int32")}  # fmt: skip
    return x, rng.integers(0, 3, rows)


@pytest.fixture(scope="module")
def keras_run(keras_hub, keras, tmp_path_factory):
    """A keras-hub classifier without dropout, saved as a preset, then fit twice for one epoch with sample weights
    and weighted validation data, some weights 0 (no shuffle, batch 4: four steps per epoch) and evaluated, by Keras
    itself."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=16, dropout=0.0)  # fmt: skip
    preset = str(tmp_path_factory.mktemp("keras_fit") / "preset")
    keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=3, preprocessor=None, dropout=0.0
    ).save_to_preset(preset)
    x, y = _data(16)
    weights = np.linspace(0.2, 2.0, 16)
    weights[[5, 14]] = 0.0  # rows that train nothing still count in the accuracy and in the loss's denominator
    validation = (*_data(12, seed=1), np.where(np.arange(12) == 3, 0.0, np.linspace(2.0, 0.1, 12)))
    model = keras_hub.models.BertTextClassifier.from_preset(preset)
    fit = functools.partial(keras.Model.fit, model, x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                            sample_weight=weights, validation_data=validation)  # fmt: skip
    histories = [fit().history, fit().history]
    evaluated = keras.Model.evaluate(model, x, y, sample_weight=weights, batch_size=4, verbose=0, return_dict=False)
    return dict(preset=preset, x=x, y=y, weights=weights, validation=validation, histories=histories,
                outputs=np.asarray(keras.Model.predict(model, x, verbose=0)), evaluated=evaluated)  # fmt: skip


@pytest.fixture(scope="module")
def fit_twice(keras_run):
    """flaxbert's classifier from the same preset, fit twice as Keras was (its own compile default, Keras' Adam)."""
    classifier = flaxbert.BertTextClassifier.from_preset(keras_run["preset"])
    histories = [
        classifier.fit(keras_run["x"], keras_run["y"], batch_size=4, verbose=0, shuffle=False,
                       sample_weight=keras_run["weights"], validation_data=keras_run["validation"]).history
        for _ in range(2)
    ]  # fmt: skip
    return classifier, histories


def test_two_fits_train_as_keras_two_fits_and_as_one_fit_of_two_epochs(keras_run, fit_twice):
    """Every fit started a new optimizer state (Adam's moments, its bias correction and any schedule restarted):
    after two one-epoch fits the logits were 3e-4 from Keras' (the whole training moved them 1.4e-3)."""
    classifier, _ = fit_twice
    twice = classifier.predict(keras_run["x"], verbose=0)
    np.testing.assert_allclose(twice, keras_run["outputs"], rtol=0, atol=1e-6)
    once = flaxbert.BertTextClassifier.from_preset(keras_run["preset"])
    once.fit(keras_run["x"], keras_run["y"], batch_size=4, epochs=2, verbose=0, shuffle=False,
             sample_weight=keras_run["weights"])  # fmt: skip
    np.testing.assert_allclose(once.predict(keras_run["x"], verbose=0), twice, rtol=0, atol=1e-7)


def test_accuracy_counts_correct_examples_whatever_their_weight_as_keras_reports_it(keras_run, fit_twice):
    """Keras' compile metrics ignore sample_weight (only weighted_metrics use it); flaxbert weighted its accuracy
    (evaluate: 0.32 where Keras says 0.375). The loss stays weighted, as Keras' is."""
    classifier, histories = fit_twice
    for got, want in zip(histories, keras_run["histories"], strict=True):
        np.testing.assert_allclose(got["accuracy"], want["sparse_categorical_accuracy"], rtol=1e-6)
        np.testing.assert_allclose(got["val_accuracy"], want["val_sparse_categorical_accuracy"], rtol=1e-6)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
        np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-6)
    x, y, weights = keras_run["x"], keras_run["y"], keras_run["weights"]
    want_loss, want_accuracy = keras_run["evaluated"]
    for batch_size in (4, 3):  # 3: the last batch has one real row, and 7 padding rows on 8 devices
        loss, accuracy = classifier.evaluate(x, y, batch_size, 0, sample_weight=weights, return_dict=False)
        assert (loss, accuracy) == pytest.approx((want_loss, want_accuracy), rel=1e-6)
    unweighted = float(np.mean(classifier.predict(x, verbose=0).argmax(-1) == y))
    assert classifier.evaluate(x, y, verbose=0, sample_weight=weights)["accuracy"] == unweighted


def test_class_weight_and_validation_split_train_as_keras_does(keras_hub, keras, keras_run):
    """Keras' fit(class_weight=..., validation_split=...) were refused, with recipes through sample_weight and
    validation_data. Each training example is now weighed by its class as Keras does (a class left out weighs 1),
    and the last quarter of x validates each epoch, unweighted, cut before any shuffling as Keras'
    `train_validation_split` cuts it."""
    fit = dict(batch_size=4, epochs=2, shuffle=False, verbose=0, class_weight={0: 0.5, 2: 3.0}, validation_split=0.25)
    x, y = keras_run["x"], keras_run["y"]
    model = keras_hub.models.BertTextClassifier.from_preset(keras_run["preset"])
    want = keras.Model.fit(model, x, y, **fit).history
    classifier = flaxbert.BertTextClassifier.from_preset(keras_run["preset"])
    got = classifier.fit(x, y, **fit).history
    assert len(got["val_loss"]) == 2
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
    for name in ("accuracy", "val_accuracy"):
        np.testing.assert_allclose(got[name], want[f"{name.removesuffix('accuracy')}sparse_categorical_accuracy"])
    np.testing.assert_allclose(classifier.predict(x, verbose=0), np.asarray(keras.Model.predict(model, x, verbose=0)),
                               rtol=0, atol=1e-6)  # fmt: skip


def _classifier(seed: int = 1):
    backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=8, dropout=0.0, seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=3, dropout=0.0, seed=seed)
    classifier.compile(optimizer=optax.adam(1e-2))
    return classifier


def _params(classifier):
    return jax.tree.map(np.asarray, classifier.params)


def _assert_same(a, b):
    jax.tree.map(functools.partial(np.testing.assert_array_equal, strict=True), a, b)


def _differ(a, b) -> bool:
    return any(jax.tree.leaves(jax.tree.map(lambda u, v: not np.array_equal(u, v), a, b)))


def test_validation_split_validates_on_the_last_rows_of_any_x_and_never_with_class_weights():
    """Keras takes validation_split for arrays only; here it cuts whatever x fit takes (after checking it), so it
    trains and validates exactly as the same rows passed as validation_data do. Class weights weigh training only."""
    x, y = _data(16, vocab=100)
    weights = np.linspace(0.2, 2.0, 16)  # kept on the validation rows, as Keras keeps them
    last = {k: v[12:] for k, v in x.items()}
    split, given = _classifier(), _classifier()
    by_split = split.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=3, sample_weight=weights,
                         validation_split=0.25).history  # fmt: skip
    first = {k: v[:12] for k, v in x.items()}
    by_data = given.fit(first, y[:12], batch_size=4, epochs=2, verbose=0, seed=3, sample_weight=weights[:12],
                        validation_data=(last, y[12:], weights[12:]))  # fmt: skip
    assert by_split == by_data.history
    _assert_same(_params(split), _params(given))
    weighted = _classifier()
    history = weighted.fit(x, y, batch_size=4, verbose=0, validation_split=0.25, class_weight={0: 5.0, 1: 0.2})
    assert history.history["val_loss"][-1] == pytest.approx(weighted.evaluate(last, y[12:], verbose=0)["loss"])


def test_bad_validation_splits_are_refused_and_one_beside_validation_data_is_said_unused():
    x, y = _data(8, vocab=100)
    classifier = _classifier()
    before = _params(classifier)
    for bad in (1.0, -0.1, True, "0.1", None):
        with pytest.raises(ValueError, match=rf"validation_split must be a number in \[0, 1\).* got {bad!r}"):
            classifier.fit(x, y, verbose=0, validation_split=bad)
    with pytest.raises(ValueError, match=r"validation_split=1e-17 of 8 examples leaves no validation example"):
        classifier.fit(x, y, verbose=0, validation_split=1e-17)  # 8 x (1 - 1e-17) rounds to 8 rows to train
    with pytest.raises(ValueError, match=r"validation_split=0.99 of 8 examples leaves no training example"):
        classifier.fit(x, y, verbose=0, validation_split=0.99)
    _assert_same(_params(classifier), before)
    with pytest.warns(UserWarning, match=r"validation_split=0.5 is not used: validation_data is given"):
        history = classifier.fit(x, y, batch_size=8, verbose=0, validation_split=0.5, validation_data=(x, y))
    assert history.history["val_loss"][0] == pytest.approx(classifier.evaluate(x, y, verbose=0)["loss"])


def test_an_optax_schedule_continues_across_fits():
    """The recommended warmup + linear decay warmed up again at every fit call: two fits of two steps now train
    as one fit of four, the second taking the schedule's steps 2 and 3."""
    x, y = _data(16, vocab=100)
    tx = optimizers.recommended(num_steps=4, learning_rate=1e-2, warmup_fraction=0.5)
    split, whole = _classifier(), _classifier()
    for classifier in (split, whole):
        classifier.compile(optimizer=tx)
    split.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    split.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    whole.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    _assert_same(_params(split), _params(whole))


def test_a_new_compile_or_a_toggled_backbone_starts_a_new_optimizer_state():
    """`reset` starts each fit from a new optimizer state (compile(), as Keras' compile with a new optimizer);
    `toggled` must do the same where backbone.trainable changed."""
    x, y = _data(16, vocab=100)
    toggled, reset = _classifier(), _classifier()
    fits = [functools.partial(c.fit, x, y, batch_size=8, verbose=0, shuffle=False) for c in (toggled, reset)]
    for fit in fits:
        fit()
    for trainable in (False, True):  # frozen: the head alone trains; then the whole model again
        toggled.backbone.trainable = reset.backbone.trainable = trainable
        reset.compile(optimizer=optax.adam(1e-2))  # another optimizer object, as Keras' compile(optimizer=Adam(...))
        for fit in fits:
            fit()
        _assert_same(_params(toggled), _params(reset))


@pytest.mark.parametrize("trainable", [True, False], ids=["whole", "frozen_backbone"])
def test_compiling_with_the_optimizer_the_classifier_has_continues_its_state(trainable):
    """Keras keeps a compiled optimizer object's state through `compile(optimizer=model.optimizer, ...)` (say, to
    change the metrics); flaxbert restarted it (the logits moved 0.19 from Keras'). Now a fit, that compile and a
    fit train as one fit of two epochs; "auto" is a new optimizer, as in keras-hub."""
    x, y = _data(16, vocab=100)
    split, whole, auto = _classifier(), _classifier(), _classifier()
    for classifier in (split, whole, auto):
        classifier.backbone.trainable = trainable
    split.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    split.compile(optimizer=split.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    split.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    whole.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    _assert_same(_params(split), _params(whole))
    # the same optax.MultiSteps object again too (each compile made it a new transformation, and a new state)
    accumulating, at_once = _classifier(), _classifier()
    steps = optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2)
    for classifier in (accumulating, at_once):
        classifier.backbone.trainable = trainable
        classifier.compile(optimizer=steps)
    accumulating.fit(x, y, batch_size=8, verbose=0, shuffle=False)  # 2 steps: one update
    accumulating.compile(optimizer=steps)
    accumulating.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    at_once.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    _assert_same(_params(accumulating), _params(at_once))
    auto.compile()
    auto.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    auto.compile()
    assert auto._optimizer_state is None


def test_a_fit_cut_short_keeps_the_optimizer_state_of_its_last_step_or_none():
    """Stopped after step 3 of 5, the classifier holds step 3's params and optimizer state: a fit over the last two
    batches ends where one fit over all five does. A step that consumed the state it was given (donated, so
    deleted) leaves the params from before the fit, and the next fit starts a new optimizer state."""
    x, y = _data(40, vocab=100)

    def stop_at_3(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    whole, cut = _classifier(), _classifier()
    whole.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    with pytest.raises(KeyboardInterrupt):
        cut.fit(x, y, batch_size=8, verbose=0, shuffle=False, on_log=stop_at_3, log_every=1)
    cut.fit({k: v[24:] for k, v in x.items()}, y[24:], batch_size=8, verbose=0, shuffle=False)
    _assert_same(_params(cut), _params(whole))

    failed, reset = cut, whole  # the same params; both keep an optimizer state
    before = _params(failed)
    (train_fn, create_state), tx, shardings = failed._steps("train", True)
    calls = []

    def fails_at_step_2(state, *args):
        calls.append(None)
        new = train_fn(state, *args)  # the state given is donated: deleted from here on
        if len(calls) == 2:
            raise RuntimeError("a step failed")
        return new

    key = ("train", True, failed.model)
    failed._jitted[key] = ((fails_at_step_2, create_state), tx, shardings)
    with pytest.raises(RuntimeError, match="a step failed"):
        failed.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    _assert_same(_params(failed), before)
    failed._jitted[key] = ((train_fn, create_state), tx, shardings)
    failed.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    reset.compile(optimizer=optax.adam(1e-2))  # a new optimizer: a new state
    reset.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    _assert_same(_params(failed), _params(reset))


def test_checkpointed_fits_continue_the_kept_state_and_resume_from_the_checkpoint_alone(tmp_path):
    """A fit in a new checkpoint_dir continues the kept optimizer state, like one without; a run resumed from its
    checkpoint (here by another classifier, as a new process would) continues exactly from what the checkpoint
    holds, whatever the resuming classifier kept, and leaves that state for its next fit."""
    x, y = _data(16, vocab=100)
    fit = functools.partial(flaxbert.BertTextClassifier.fit, x=x, y=y, batch_size=8, verbose=0, shuffle=False)
    straight = _classifier()
    fit(straight, epochs=4)  # what fits of 1, 2 and 1 epochs train, each continuing the last one's state

    def stop_at_3(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    killed = _classifier()
    fit(killed)
    with pytest.raises(KeyboardInterrupt):  # the checkpoint of step 2 holds the continued optimizer state
        fit(killed, epochs=2, checkpoint_dir=tmp_path / "run", on_log=stop_at_3, log_every=1)
    resumed = _classifier(seed=5)  # another head: the checkpoint's params and optimizer state replace everything
    fit(resumed)  # it keeps an optimizer state of its own, which the checkpoint's replaces
    assert fit(resumed, epochs=2, checkpoint_dir=tmp_path / "run").epoch == [1]
    fit(resumed)
    _assert_same(_params(resumed), _params(straight))


def test_positional_arguments_are_keras_order_and_evaluate_takes_return_dict():
    """evaluate(x, y, 32, 0) took 32 as sample_weight and fit(x, y, 2, 1, 0) took 0 as validation_data; evaluate
    refused return_dict. Keras' order: fit(x, y, batch_size, epochs, verbose), evaluate(x, y, batch_size, verbose)."""
    x, y = _data(16, vocab=100)
    positional, named = _classifier(), _classifier()
    history = positional.fit(x, y, 8, 2, 0, shuffle=False)
    named.fit(x=x, y=y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert history.epoch == [0, 1]
    _assert_same(_params(positional), _params(named))
    scores = positional.evaluate(x, y, 8, 0)
    assert scores == positional.evaluate(x=x, y=y, batch_size=8, verbose=0, return_dict=True)
    assert positional.evaluate(x, y, 8, 0, return_dict=False) == [scores["loss"], scores["accuracy"]]
    np.testing.assert_array_equal(positional.predict(x, 8, 0), positional.predict(x=x, batch_size=8, verbose=0))
    with pytest.raises(TypeError):
        positional.evaluate(x, y, 8, 0, None)  # sample_weight is keyword-only
    with pytest.raises(
        ValueError, match=r"return_dict must be True \(a dict\) or False \(\[loss, accuracy\]\), got 'no'"
    ):
        positional.evaluate(x, y, return_dict="no")


def test_keras_spellings_of_the_defaults_are_taken():
    """Keras' batch_size=None (32), a list as validation_data, activation="linear" (keras-hub's task.json writes no
    activation so) and an optax.MultiSteps optimizer (gradient accumulation) were refused."""
    x, y = _data(40, vocab=100)
    spelled, plain = _classifier(), _classifier()
    spelled.compile(optimizer=optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2))
    plain.compile(optimizer=optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2).gradient_transformation())
    history = spelled.fit(x, y, batch_size=None, verbose=0, shuffle=False, validation_data=list(_data(8, seed=1)))
    assert plain.fit(x, y, batch_size=32, verbose=0, shuffle=False, validation_data=_data(8, seed=1)) == history
    _assert_same(_params(spelled), _params(plain))
    assert spelled.evaluate(x, y, batch_size=None, verbose=0) == plain.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(spelled.predict(x, batch_size=None, verbose=0), plain.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"batch_size must be None \(32\) or a positive integer, got 0"):
        spelled.predict(x, batch_size=0)
    backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=8, seed=0)
    assert flaxbert.BertTextClassifier(backbone, num_classes=3, activation="linear").activation is None
    with pytest.raises(ValueError, match=r"use None \(or 'linear'\) for logits or 'softmax'"):
        flaxbert.BertTextClassifier(backbone, num_classes=3, activation="relu")


def test_keras_only_keywords_are_taken_at_their_defaults_and_otherwise_say_what_to_do():
    """Keras code that spells out fit's defaults ran into Python's bare TypeError; a keyword asking for something
    flaxbert lacks now says what to do instead, and a misspelt one names the closest."""
    x, y = _data(8, vocab=100)
    classifier = _classifier()
    classifier.compile(optimizer=classifier.optimizer, run_eagerly=False, steps_per_execution=1, weighted_metrics=None,
                       loss_weights=None)  # fmt: skip
    history = classifier.fit(x, y, batch_size=8, verbose=0, callbacks=(), class_weight=None,
                             initial_epoch=np.int64(0), validation_split=0.0, steps_per_epoch=None,
                             validation_freq=1)  # fmt: skip
    assert list(history.history) == ["loss", "accuracy"]
    assert classifier.predict(x, verbose=0, steps=None, callbacks=[]).shape == (8, 3)
    assert set(classifier.evaluate(x, y, verbose=0, steps=None)) == {"loss", "accuracy"}
    before = _params(classifier)
    refusals = {
        "callbacks": ([object()], "on_log=fn"),
        "initial_epoch": (1, "checkpoint_dir=.*resumes"),
        "steps_per_epoch": (1, "each epoch is one pass over x"),
        "validation_freq": (2, "validation runs after every epoch"),
    }
    for keyword, (value, instead) in refusals.items():
        with pytest.raises(ValueError, match=rf"fit\({keyword}=.*flaxbert's fit has no {keyword}; .*{instead}"):
            classifier.fit(x, y, batch_size=8, verbose=0, **{keyword: value})
    with pytest.raises(ValueError, match="predict has no steps"):
        classifier.predict(x, steps=1)
    with pytest.raises(ValueError, match="compile has no run_eagerly; every step runs under jax.jit"):
        classifier.compile(run_eagerly=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'; did you mean 'epochs'"):
        classifier.fit(x, y, epoch=2)
    with pytest.raises(ValueError, match=r"class_weight has the class id 3, outside \[0, 3\)"):
        classifier.fit(x, y, batch_size=8, verbose=0, class_weight={1: 2.0, 3: 1.0})
    _assert_same(_params(classifier), before)


def test_keras_model_attributes_a_classifier_lacks_say_what_to_use_instead():
    """`classifier.train_on_batch`, `.get_weights()`, `.save(...)` or `classifier(x)` in a ported notebook met a bare
    AttributeError or "object is not callable"; each now names what does the job here, and those recipes run."""
    classifier = _classifier()
    hints = {
        "train_on_batch": r"fit\(x, y, batch_size=len\(x\), shuffle=False\) trains one step on x",
        "predict_on_batch": r"predict\(x, batch_size=len\(x\)\) runs x as one batch",
        "test_on_batch": r"evaluate\(x, y, batch_size=len\(x\), return_dict=False\)",
        "get_weights": r"params holds every weight",
        "save": r"save_to_preset\(directory\) writes the classifier",
        "layers": r"backbone is the encoder",
    }
    for name, instead in hints.items():
        with pytest.raises(
            AttributeError, match=rf"BertTextClassifier has no {name} \(a keras.Model attribute\): {instead}"
        ):
            getattr(classifier, name)
    assert not hasattr(classifier, "predict_on_batch")
    with pytest.raises(AttributeError, match=r"^'BertTextClassifier' object has no attribute 'nonexistent'$"):
        classifier.nonexistent  # noqa: B018
    with pytest.raises(TypeError, match=r"not called as a Keras model is: predict\(x\) returns its logits"):
        classifier({})
    x, y = _data(8, vocab=100)
    before = classifier.predict(x, batch_size=len(x), verbose=0)
    assert len(classifier.evaluate(x, y, batch_size=len(x), return_dict=False, verbose=0)) == 2
    classifier.fit(x, y, batch_size=len(x), shuffle=False, verbose=0)
    assert not np.array_equal(classifier.predict(x, batch_size=len(x), verbose=0), before)  # one step trained


def test_compile_takes_keras_spellings_of_accuracy_and_jit_and_refuses_the_rest(keras):
    classifier = _classifier()
    for metrics in (("sparse_categorical_accuracy",), ["acc"], [keras.metrics.SparseCategoricalAccuracy()]):
        classifier.compile(metrics=metrics)
    for metrics in (["f1"], "accuracy", []):
        with pytest.raises(ValueError, match="metrics must be 'auto' or a list of accuracy metrics"):
            classifier.compile(metrics=metrics)
    classifier.compile(jit_compile="auto")
    for jit in (False, None, "False"):  # "False" was taken as True
        with pytest.raises(ValueError, match=f"jit_compile={jit!r} is not supported"):
            classifier.compile(jit_compile=jit)


def test_what_compile_sets_is_not_assigned_around_it_and_trainable_false_is_refused():
    """Assigned after a fit, classifier.optimizer (and loss, mesh) reached no step: the steps already built kept the
    old one, silently. classifier.trainable = False trained everything, where Keras freezes the model."""
    classifier = _classifier()
    for name in ("optimizer", "loss", "mesh"):
        with pytest.raises(AttributeError, match=rf"classifier.{name} is set by compile: call classifier.compile"):
            setattr(classifier, name, optax.sgd(0.0))
    classifier.backbone.trainable = False
    for value in (False, np.False_, 0, None, "no"):  # each would have made the frozen backbone trainable again
        with pytest.raises(ValueError, match="set classifier.backbone.trainable = False"):
            classifier.trainable = value
        assert not classifier.backbone.trainable
    classifier.trainable = np.True_
    assert classifier.backbone.trainable
    classifier.backbone.trainable = False
    classifier.trainable = True  # as Keras' model.trainable = True makes every layer trainable
    assert classifier.backbone.trainable and classifier.trainable


def test_an_optimizer_that_needs_other_arguments_is_refused_at_compile_and_value_reaches_those_that_read_it():
    """optax.lbfgs (and reduce_on_plateau, polyak_sgd) were taken by compile and failed inside optax at the first
    step; fit now passes the batch's loss as value=, which reduce_on_plateau tracks (inside optax.MultiSteps too),
    and lbfgs is refused up front."""
    x, y = _data(16, vocab=100)
    classifier = _classifier()
    with pytest.raises(ValueError, match="missing 2 required keyword-only arguments: 'grad' and 'value_fn'"):
        classifier.compile(optimizer=optax.lbfgs())
    classifier.compile(optimizer=optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=5)))
    history = classifier.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    plateau = classifier._optimizer_state[1][1]
    assert float(plateau.best_value) == pytest.approx(min(history.history["loss"]), rel=1e-6)
    # inside optax.MultiSteps too, whose own transformation takes no extra arguments (fit was refused, saying only
    # that reduce_on_plateau missed its value)
    inner = optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=5))
    accumulating = _classifier()
    accumulating.compile(optimizer=optax.MultiSteps(inner, every_k_schedule=1))
    accumulated = accumulating.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    plateau = accumulating._optimizer_state[1].inner_opt_state[1]
    assert float(plateau.best_value) == pytest.approx(min(accumulated.history["loss"]), rel=1e-6)
    # an extra-arguments optimizer that takes no value= gets none (optax.contrib.sam was refused for it)
    classifier.compile(optimizer=optax.contrib.sam(optax.sgd(1e-2), optax.sgd(1e-2), sync_period=2))
    assert np.isfinite(classifier.fit(x, y, batch_size=8, verbose=0).history["loss"]).all()


@pytest.mark.parametrize("learning_rate", [float("nan"), float("inf")])
def test_a_loss_that_turns_non_finite_is_said_once(learning_rate):
    """Keras trains on silently (unless a TerminateOnNaN callback is given); flaxbert says so, once a fit."""
    x, y = _data(16)
    classifier = _classifier()
    classifier.compile(optimizer=optax.sgd(learning_rate))
    with pytest.warns(RuntimeWarning, match=r"training loss of epoch 1 is nan: a step's gradients") as caught:
        history = classifier.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.isnan(history.history["loss"]).all()
    assert len([w for w in caught if "training loss" in str(w.message)]) == 1
    assert not np.isfinite(jax.tree.leaves(classifier.params)[0]).all()


def test_a_non_finite_loss_whose_steps_the_optimizer_skipped_is_said_to_leave_the_params_finite():
    """The warning said the params were no longer finite where optax.apply_if_finite had kept them so, telling the
    user to throw away params that were fine."""
    x, y = _data(16)
    classifier = _classifier()
    before = _params(classifier)

    def loss(outputs, labels):  # not finite for one class's rows: every batch's gradients are NaN
        losses = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
        return losses * jnp.where(labels == 0, jnp.nan, 1.0)  # NaN gradients too (a NaN constant would have none)

    classifier.compile(optimizer=optax.apply_if_finite(optax.sgd(0.1), 100), loss=loss)
    with pytest.warns(RuntimeWarning, match=r"epoch 1 is nan, but the params are still finite numbers \(the opt"):
        history = classifier.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    assert np.isnan(history.history["loss"]).all()
    jax.tree.map(np.testing.assert_array_equal, _params(classifier), before)  # every step was skipped


def test_one_class_trains_nothing_and_says_so():
    """keras-hub fits a one-class classifier to a loss of 0 without a word (QA); flaxbert warns."""
    x, _ = _data(8)
    backbone = flaxbert.BertBackbone(100, 1, 2, 16, 16, max_sequence_length=8, seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=1, seed=1)
    before = _params(classifier)
    with pytest.warns(UserWarning, match=r"num_classes=1: every label is class 0, and the cross-entropy over one"):
        history = classifier.fit(x, np.zeros(8, int), batch_size=8, verbose=0)
    assert history.history["loss"] == [0.0]
    jax.tree.map(np.testing.assert_array_equal, _params(classifier), before)
