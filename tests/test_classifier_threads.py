"""One classifier used from several threads at once, as a service does: predicting in worker threads while another
thread fine-tunes it, assigns its params, compiles or copies it. Each test forces the interleaving that used to go
wrong (a patched function waits inside the other thread's call), so none depends on timing luck."""

import copy
import functools
import pickle
import threading
import time

import jax
import numpy as np
import pytest

import flaxbert
from flaxbert import backbones
from flaxbert.tasks import text_classifier

ONES = np.ones((8, 8), np.int32)
X = {"token_ids": ONES * np.arange(8)[:, None] + 5, "segment_ids": 0 * ONES, "padding_mask": ONES}
Y = np.arange(8) % 2


def _classifier(seed: int = 0):
    backbone = flaxbert.BertBackbone(50, 1, 2, 8, 16, max_sequence_length=8, seed=seed)
    return flaxbert.BertTextClassifier(backbone, num_classes=2, seed=seed)


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def _equal(a, b) -> bool:
    a, b = jax.tree.leaves(_host(a)), jax.tree.leaves(_host(b))
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_a_predict_during_an_assignment_reads_the_old_params_or_the_new_never_a_mix(monkeypatch):
    """The params property read the backbone's and the head's params one after the other, unlocked, while an
    assignment (or a fit's end) replaces them one after the other: a predict in between ran the new backbone with the
    old head."""
    old, new = _classifier(0), _classifier(1)
    old_logits, new_logits = old.predict(X, verbose=0), new.predict(X, verbose=0)
    classifier = _classifier(0)
    classifier.params = old.params
    real = backbones.Backbone.params
    backbone_set = threading.Event()

    def slow_set(self, value):  # the backbone's params replaced, the head's not yet
        real.fset(self, value)
        backbone_set.set()
        time.sleep(0.5)

    monkeypatch.setattr(backbones.Backbone, "params", property(real.fget, slow_set))
    assigning = threading.Thread(target=lambda: setattr(classifier, "params", new.params))
    assigning.start()
    assert backbone_set.wait(30)
    during = classifier.predict(X, verbose=0)
    assigning.join(30)
    assert np.array_equal(during, old_logits) or np.array_equal(during, new_logits)
    np.testing.assert_array_equal(classifier.predict(X, verbose=0), new_logits)


def test_an_assignment_while_a_predict_keeps_its_placed_params_is_not_undone(monkeypatch):
    """A predict keeps the params it placed if they are still the classifier's. `head_params = ...` and
    `backbone.params = ...` did not take the lock that check-and-keep holds: landing between the two, they were
    overwritten with the old params."""
    classifier, other = _classifier(0), _classifier(1)
    new_head = _host(other.head_params)
    classifier.params = _host(classifier.params)  # as a preset's come in: the next predict places them
    real = text_classifier._same_arrays
    checked, armed = threading.Event(), [True]

    def slow_check(these, those):  # inside the check-and-keep, between the check and the keep
        same = real(these, those)
        if armed[0] and backbones.PARAMS_LOCK._is_owned():
            armed[0] = False
            checked.set()
            time.sleep(0.5)
        return same

    monkeypatch.setattr(text_classifier, "_same_arrays", slow_check)
    predicting = threading.Thread(target=lambda: classifier.predict(X, verbose=0))
    predicting.start()
    assert checked.wait(30)
    classifier.head_params = new_head
    predicting.join(30)
    assert _equal(classifier.head_params, new_head)


def test_compile_while_fit_runs_is_refused_and_the_next_fit_starts_a_new_optimizer_state():
    """compile() from on_log (or another thread) reset the optimizer state, and then the running fit handed its own
    on to the next fit anyway; with a new mesh, the fit failed with jax's sharding errors at its validation."""
    classifier = _classifier()
    refusals = []

    def compile_once(row):
        if not refusals:
            with pytest.raises(RuntimeError, match="compile was called on this classifier while its fit is running"):
                classifier.compile()
            refusals.append(row)

    classifier.fit(X, Y, batch_size=8, epochs=1, verbose=0, seed=7, on_log=compile_once, log_every=1,
                   validation_data=(X, Y))  # fmt: skip
    assert len(refusals) == 1
    alone = _classifier()
    alone.fit(X, Y, batch_size=8, epochs=1, verbose=0, seed=7, validation_data=(X, Y))
    assert _equal(classifier.params, alone.params)  # the refused compile changed nothing
    classifier.compile()  # after the fit: a new optimizer state for the next one
    alone.compile()
    classifier.fit(X, Y, batch_size=8, epochs=1, verbose=0, seed=8)
    alone.fit(X, Y, batch_size=8, epochs=1, verbose=0, seed=8)
    assert _equal(classifier.params, alone.params)


def test_a_compile_that_overlaps_a_predict_building_its_step_leaves_the_new_meshs_step(monkeypatch):
    """compile() replaced the step cache while a predict built its step for the old mesh, which was then stored in
    the new cache: every later predict ran the old mesh's step (or failed with jax's sharding error)."""
    classifier = _classifier()
    one_device = jax.sharding.Mesh(np.array(jax.devices()[1:2]).reshape(1, 1), ("data", "fsdp"))
    real = text_classifier.shared_steps.predict_step
    building = threading.Event()

    def slow_build(*args, **kwargs):
        step = real(*args, **kwargs)
        if not building.is_set():
            building.set()
            time.sleep(0.5)
        return step

    monkeypatch.setattr(text_classifier.shared_steps, "predict_step", slow_build)
    predicting = threading.Thread(target=lambda: classifier.predict(X, verbose=0))
    predicting.start()
    assert building.wait(30)
    classifier.compile(mesh=one_device)
    predicting.join(30)
    step_meshes = {sharding.mesh for sharding in jax.tree.leaves(classifier._steps("predict")[1])}
    assert step_meshes == {one_device}
    np.testing.assert_allclose(classifier.predict(X, verbose=0), _classifier().predict(X, verbose=0), atol=1e-6)


@pytest.mark.parametrize("kind", ["predict", "evaluate"])
def test_a_call_that_a_compile_with_a_new_mesh_overlaps_runs_on_the_mesh_it_started_with(monkeypatch, kind):
    """predict and evaluate read `self.mesh` again after taking their step: a `compile(mesh=...)` landing in between
    fed the old mesh's step batches laid out for the new one, and the call failed with jax's sharding error."""
    one_device = jax.sharding.Mesh(np.array(jax.devices()[1:2]).reshape(1, 1), ("data", "fsdp"))
    expected = _classifier().evaluate(X, Y, verbose=0) if kind == "evaluate" else _classifier().predict(X, verbose=0)
    classifier = _classifier()
    real = text_classifier.TextClassifier._placed
    compiled = []

    def placed_then_compiled(self, shardings):  # the step and its params taken; the mesh replaced before the loop
        result = real(self, shardings)
        if not compiled:
            compiled.append(self.compile(mesh=one_device))
        return result

    monkeypatch.setattr(text_classifier.TextClassifier, "_placed", placed_then_compiled)
    call = classifier.predict if kind == "predict" else functools.partial(classifier.evaluate, y=Y)
    during = call(X, verbose=0)
    assert compiled and classifier.mesh is one_device
    if kind == "predict":
        np.testing.assert_allclose(during, expected, atol=1e-6)
        np.testing.assert_allclose(classifier.predict(X, verbose=0), expected, atol=1e-6)
    else:
        assert during == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_taken_as_a_fit_ends_holds_the_params_and_count_of_before_or_after(monkeypatch, how):
    """A copy read the head's params, and the backbone's only later (as pickle walked the state): a fit ending in
    between gave it the trained backbone with the old head."""
    before = _classifier()
    after = _classifier()
    after.fit(X, Y, batch_size=8, epochs=1, verbose=0, seed=5)
    classifier = _classifier()
    real = text_classifier.TextClassifier._set_params
    ending = threading.Event()

    def slow_set(self, params):  # a fit's end: the backbone's params set, the head's not yet
        self.backbone._params = params["backbone"]
        ending.set()
        time.sleep(0.5)
        real(self, params)

    monkeypatch.setattr(text_classifier.TextClassifier, "_set_params", slow_set)
    fitting = threading.Thread(target=lambda: classifier.fit(X, Y, batch_size=8, epochs=1, verbose=0, seed=5))
    fitting.start()
    assert ending.wait(60)
    copied = copy.deepcopy(classifier) if how == "deepcopy" else pickle.loads(pickle.dumps(classifier))
    fitting.join(60)
    assert (_equal(copied.params, before.params) and copied._fits == 0) or (
        _equal(copied.params, after.params) and copied._fits == 1
    )
