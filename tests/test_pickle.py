"""Classifiers and backbones pickle and deep-copy: the copy predicts and trains as the original (in another process
too)."""

import copy
import pickle
import subprocess
import sys
import warnings

import jax
import numpy as np
import optax
import pytest

import flaxbert

VOCAB = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "The", "quick", "brown", "fox", "jumped", "."]
TEXTS = ["The quick brown fox jumped.", "The fox.", "quick quick brown", "jumped ."]
LABELS = ["good", "bad", "bad", "good"]

pytestmark = pytest.mark.filterwarnings("ignore:batch_size=4 does not split")


def per_example_loss(outputs, labels):
    """A loss defined at module level: pickle stores it by name."""
    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels) * 2.0


def _classifier(arch: str = "bert"):
    bert = arch == "bert"
    tokenizer = (flaxbert.BertTokenizer if bert else flaxbert.DistilBertTokenizer)(vocabulary=VOCAB)
    preprocessor = (flaxbert.BertTextClassifierPreprocessor if bert else flaxbert.DistilBertTextClassifierPreprocessor)(
        tokenizer=tokenizer, sequence_length=16
    )
    backbone = (flaxbert.BertBackbone if bert else flaxbert.DistilBertBackbone)(
        vocabulary_size=len(VOCAB),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )
    cls = flaxbert.BertTextClassifier if bert else flaxbert.DistilBertTextClassifier
    return cls(backbone, num_classes=2, preprocessor=preprocessor, label_names=["bad", "good"])


def _equal(a, b) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_a_pickled_classifier_predicts_and_trains_as_the_original(arch):
    classifier = _classifier(arch)
    classifier.compile(loss=per_example_loss, mesh=(4, 2))
    classifier.fit(TEXTS, LABELS, batch_size=4, verbose=0)
    classifier.bucket = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default optimizer and a module-level loss pickle: nothing is said
        restored = pickle.loads(pickle.dumps(classifier))
    assert type(restored) is type(classifier) and restored.label_names == ("bad", "good")
    assert _equal(restored.params, classifier.params)
    assert (
        restored.bucket is False
        and restored.loss is per_example_loss
        and dict(restored.mesh.shape)
        == {
            "data": 4,
            "fsdp": 2,
        }
    )
    np.testing.assert_array_equal(restored.predict(TEXTS, verbose=0), classifier.predict(TEXTS, verbose=0))
    for leaf in jax.tree.leaves(restored.params):  # on the mesh, not host arrays copied over at every predict
        assert isinstance(leaf, jax.Array) and leaf.sharding.mesh.shape == {"data": 4, "fsdp": 2}
    # The copy's next fit draws the seed the original's would (its count of fits) and trains the same steps from a
    # new optimizer state, as the original does after compile().
    classifier.compile(loss=per_example_loss, mesh=(4, 2))
    for model in (classifier, restored):
        model.fit(TEXTS, LABELS, batch_size=4, epochs=2, verbose=0)
    assert _equal(restored.params, classifier.params)
    assert not _equal(restored.params, pickle.loads(pickle.dumps(_classifier(arch))).params)


def test_an_optimizer_that_cannot_be_pickled_becomes_auto_with_a_warning_and_deepcopy_shares_it():
    classifier = _classifier()
    adamw = optax.adamw(1e-3)
    classifier.compile(optimizer=adamw)
    with pytest.warns(UserWarning, match=r"optimizer .* cannot be pickled, so the pickled copy has optimizer='auto'"):
        data = pickle.dumps(classifier)
    restored = pickle.loads(data)
    assert restored.optimizer is not adamw and restored._compiled_with["optimizer"] == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        copied = copy.deepcopy(classifier)
    assert copied.optimizer.update is adamw.update and _equal(copied.params, classifier.params)
    copied.backbone.params = jax.tree.map(lambda x: x + 1.0, copied.backbone.params)
    assert not _equal(copied.params, classifier.params)  # a copy, not a view


def test_a_deep_copy_keeps_the_originals_mesh():
    """A model pinned to some devices (here 2 of 8) stays there when copied (the copy took every device)."""
    from flaxbert.parallel import make_mesh

    classifier = _classifier()
    classifier.compile(mesh=make_mesh(1, 2, devices=jax.devices()[4:6]))
    copied = copy.deepcopy(classifier)
    assert copied.mesh is classifier.mesh
    kernel = copied.params["backbone"]["transformer_layer_0"]["self_attention"]["query"]["kernel"]
    assert kernel.sharding.device_set == set(jax.devices()[4:6])


def test_a_mesh_that_does_not_fit_the_loading_devices_becomes_data_parallel(monkeypatch):
    classifier = _classifier()
    classifier.compile(mesh=(1, 8))
    data = pickle.dumps(classifier)
    monkeypatch.setattr(jax, "device_count", lambda: 6)
    with pytest.warns(UserWarning, match="fsdp mesh axis of 8, which does not divide the 6 devices"):
        restored = pickle.loads(data)
    assert restored.mesh.shape["fsdp"] == 1


def test_a_backbone_pickles_with_its_params_made_or_not():
    backbone = flaxbert.BertBackbone(vocabulary_size=11, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
                                     max_sequence_length=16, seed=3)  # fmt: skip
    unmade = pickle.loads(pickle.dumps(backbone))  # the copy makes the same random params from the seed
    backbone.trainable = False
    made = pickle.loads(pickle.dumps(backbone))
    assert _equal(unmade.params, backbone.params) and _equal(made.params, backbone.params)
    assert made.trainable is False and unmade.trainable is True and made.config == backbone.config


def test_a_pickle_loads_in_a_fresh_process(tmp_path):
    classifier = _classifier()
    classifier.fit(TEXTS, LABELS, batch_size=4, verbose=0)
    (tmp_path / "classifier.pkl").write_bytes(pickle.dumps(classifier))
    script = (
        "import pickle, sys, numpy as np\n"
        "classifier = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "np.save(sys.argv[2], classifier.predict(sys.argv[3:], verbose=0))\n"
    )
    out = tmp_path / "logits.npy"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "classifier.pkl"), str(out), *TEXTS], check=True)
    np.testing.assert_array_equal(np.load(out), classifier.predict(TEXTS, verbose=0))
