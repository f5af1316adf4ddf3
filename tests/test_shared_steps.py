"""Classifiers that would compile the same programs share their jitted steps: a second one compiles nothing."""

import copy
import functools

import jax
import numpy as np
import optax
import pytest

import flaxbert
from flaxbert.training import shared_steps

X = {"token_ids": np.arange(1, 129).reshape(16, 8) % 40 + 5, "segment_ids": np.zeros((16, 8), int),
     "padding_mask": np.ones((16, 8), int)}  # fmt: skip
Y = np.arange(16) % 2


def _classifier(num_classes: int = 2, seed: int = 0, mesh=None):
    backbone = flaxbert.BertBackbone(64, 1, 2, 16, 32, max_sequence_length=8, seed=seed)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=num_classes, seed=seed)
    if mesh is not None:
        classifier.compile(mesh=mesh)
    return classifier


def _run(classifier):
    """Fit, evaluate and predict, as a notebook cell would; the results."""
    history = classifier.fit(X, Y, batch_size=8, epochs=2, verbose=0, seed=0).history
    scores = classifier.evaluate(X, Y, batch_size=8, verbose=0)
    return history, scores, classifier.predict(X, batch_size=8, verbose=0), jax.device_get(classifier.params)


def _functions(classifier):
    (train_fn, create_state), _, _ = classifier._steps("train", True)
    return train_fn, create_state, classifier._steps("eval")[0], classifier._steps("predict")[0]


def test_an_equal_classifier_runs_the_programs_already_compiled_to_the_same_results():
    """A notebook cell run again builds an equal classifier (other seeds too: they are arguments, not part of a
    program): it gets the same jitted functions and compiles nothing, and its results are those of a classifier whose
    steps were built anew."""
    first = _classifier()
    _run(first)
    compiled = [fn._cache_size() for fn in _functions(first)[:1] + _functions(first)[2:]]
    again = _classifier()
    results = _run(again)
    assert all(a is b for a, b in zip(_functions(again), _functions(first), strict=True))
    assert [fn._cache_size() for fn in _functions(again)[:1] + _functions(again)[2:]] == compiled  # none compiled
    shared_steps.clear()
    fresh = _classifier()
    expected = _run(fresh)
    assert _functions(fresh)[0] is not _functions(first)[0]
    assert results[0] == expected[0] and results[1] == expected[1]
    np.testing.assert_array_equal(results[2], expected[2])
    jax.tree.map(np.testing.assert_array_equal, results[3], expected[3])
    other_seed = _classifier(seed=3)
    assert _functions(other_seed)[0] is _functions(fresh)[0]


def test_what_changes_a_program_gets_its_own_steps():
    """Another optimizer object trains apart but evaluates and predicts with the same steps; another head, mesh or
    a frozen backbone gets steps of its own."""
    base = _classifier()
    train_fn, _, eval_fn, predict_fn = _functions(base)
    frozen = _classifier()  # asked for while base's steps are still kept (the 8 latest sets are)
    assert frozen._steps("train", False)[0][0] is not train_fn
    assert frozen._steps("train", False)[0][0] is _classifier()._steps("train", False)[0][0]
    sgd = _classifier()
    sgd.compile(optimizer=optax.sgd(0.1))
    assert _functions(sgd)[0] is not train_fn and _functions(sgd)[2:] == (eval_fn, predict_fn)
    sgd.fit(X, Y, batch_size=8, verbose=0)  # and it trains with its own optimizer
    assert sgd._optimizer_state[0] is sgd.optimizer
    three = _classifier(num_classes=3)
    assert not set(_functions(three)) & {train_fn, eval_fn, predict_fn}
    fsdp = _classifier(mesh=(1, 8))
    assert not set(_functions(fsdp)) & {train_fn, eval_fn, predict_fn}


class _ScaledLoss:
    """A user's loss with state a sweep changes between classifiers (a class weight, a scale)."""

    def __init__(self, scale: float):
        self.scale = scale

    def __call__(self, outputs, labels):
        return optax.softmax_cross_entropy_with_integer_labels(outputs.astype(np.float32), labels) * self.scale


def test_a_users_loss_or_optimizer_gets_steps_traced_for_its_classifier():
    """A step traced earlier would keep the state a user's loss read then: a classifier compiled with a user's loss
    traces its own train and eval steps and sees the loss as it is now (the predict step, the model's alone, is
    shared); so does one compiled with a user's optimizer, even the same object."""
    loss, losses = _ScaledLoss(1.0), []
    for scale in (1.0, 10.0):
        loss.scale = scale
        classifier = _classifier()
        classifier.compile(loss=loss)
        losses.append(classifier.evaluate(X, Y, batch_size=8, verbose=0)["loss"])
        assert _functions(classifier)[3] is _functions(_classifier())[3]
    np.testing.assert_allclose(losses[1], 10 * losses[0], rtol=1e-6)
    adam = optax.adam(1e-3)
    first, second = _classifier(), _classifier()
    for classifier in (first, second):
        classifier.compile(optimizer=adam)
    assert _functions(first)[0] is not _functions(second)[0] and _functions(first)[2] is _functions(second)[2]


def test_a_copys_optimizer_state_carries_over_between_its_fits():
    """A deep copy has an optimizer equal to, not the same as, the original's, and its own partial loss: its
    second fit continues the Adam moments and step count of its first, as the original's does (they restarted:
    the state a step returned held the optimizer of the equal classifier traced before)."""
    original = _classifier()
    original.compile(optimizer=optax.adam(1e-3), loss=functools.partial(_ScaledLoss(1.0).__call__))
    original.fit(X, Y, batch_size=8, verbose=0)
    copied = copy.deepcopy(original)  # a copy starts a new optimizer state, as after compile()
    for _ in range(2):
        copied.fit(X, Y, batch_size=8, verbose=0)
    (_, _), tx, _ = copied._steps("train", True)
    assert copied._optimizer_state[0] is tx
    assert int(copied._optimizer_state[1][0].count) == 4  # two fits of 2 steps, one Adam state


def test_at_most_max_kept_step_sets_are_kept(monkeypatch):
    monkeypatch.setattr(shared_steps, "MAX_KEPT", 3)
    classifiers = [_classifier(num_classes=n) for n in range(2, 7)]
    steps = [c._steps("predict")[0] for c in classifiers]
    assert len(shared_steps._kept) == 3
    assert _classifier(num_classes=6)._steps("predict")[0] is steps[-1]  # the latest kept
    assert _classifier(num_classes=2)._steps("predict")[0] is not steps[0]  # the oldest dropped


@pytest.mark.parametrize("activation", [None, "softmax"])
def test_the_auto_loss_and_optimizer_are_one_object_each(activation):
    backbone = flaxbert.BertBackbone(64, 1, 2, 16, 32, max_sequence_length=8)
    first, second = (flaxbert.BertTextClassifier(backbone, num_classes=2, activation=activation) for _ in range(2))
    assert first.loss is second.loss and first.optimizer is second.optimizer
    assert first.loss.keywords == {"from_logits": activation is None}
