"""Random params drawn on the host: the modules' initializers leaf by leaf, reproducible parts, nothing compiled."""

import logging

import flax.linen as nn
import jax
import numpy as np
import pytest

import flaxbert
from flaxbert.models import (
    BertClassifier,
    BertConfig,
    BertHeadConfig,
    DistilBertClassifier,
    DistilBertConfig,
    DistilBertHeadConfig,
    lora,
)
from flaxbert.models.abstract import abstract_params, dummy_inputs
from flaxbert.models.random_init import random_params

DIMS = dict(vocabulary_size=301, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=96, max_sequence_length=64)
MODELS = {
    "bert": (BertClassifier, BertConfig(**DIMS), BertHeadConfig(3)),
    "distil_bert": (DistilBertClassifier, DistilBertConfig(**DIMS), DistilBertHeadConfig(3, hidden_dim=40)),
}
WITH_LORA = {"bert_lora": (BertClassifier, BertConfig(**DIMS, lora_rank=4, lora_targets=lora.TARGETS["BertConfig"]),
                           BertHeadConfig(3))}  # fmt: skip


@pytest.mark.parametrize("name", [*MODELS, *WITH_LORA])
def test_every_leaf_follows_the_initializer_flax_init_uses(name):
    """Zeros where flax's init gives zeros, ones where ones, LoRA's first factors Keras' He-uniform, and elsewhere
    the same truncated normal: inside two stddevs of 0.02, with flax's spread (a leaf of 64 values or more: within
    sampling error)."""
    cls, cfg, head = {**MODELS, **WITH_LORA}[name]
    model = cls(cfg, head)
    drawn = random_params(abstract_params(model, cfg), seed=0)
    flax_init = nn.unbox(model.init(jax.random.key(0), dummy_inputs(cfg))["params"])
    assert jax.tree.structure(drawn) == jax.tree.structure(flax_init)
    normal = 0
    ours_with_paths = jax.tree_util.tree_leaves_with_path(drawn)
    for (path, ours), theirs in zip(ours_with_paths, jax.tree.leaves(flax_init), strict=True):
        theirs = np.asarray(theirs)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.float32, path
        if np.all(theirs == 0) or np.all(theirs == 1):
            np.testing.assert_array_equal(ours, theirs, err_msg=str(path))
            continue
        if path[-1].key == "lora_kernel_a":  # uniform in +-sqrt(6 / fan_in), Keras' fan_in (lora.he_uniform_limit)
            limit = np.sqrt(6 / np.prod(ours.shape[:-1]))
            for values in (ours, theirs):
                assert np.abs(values).max() <= limit and abs(values.std() - limit / np.sqrt(3)) < 0.15 * limit, path
            continue
        normal += 1
        assert np.abs(ours).max() <= 0.04 and np.abs(theirs).max() <= 0.04, path
        if ours.size >= 64:
            spread = 0.02 * 0.8796  # a standard normal cut at +-2 has standard deviation 0.8796
            tolerance = 4 * spread / np.sqrt(ours.size) + 0.15 * spread
            assert abs(ours.std() - spread) < tolerance and abs(theirs.std() - spread) < tolerance, path
            assert abs(ours.mean()) < 4 * spread / np.sqrt(ours.size), path
    assert normal >= 10  # the kernels and embeddings were compared, not only the zeros and ones


def test_a_part_drawn_alone_is_that_part_of_the_whole_and_seeds_differ():
    _, cfg, _ = MODELS["bert"]
    abstract = abstract_params(flaxbert.BertBackbone.from_config(cfg).encoder, cfg)
    whole = random_params(abstract, seed=3)
    alone = random_params(abstract["pooled_dense"], seed=3, path=("pooled_dense",))
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(whole["pooled_dense"]), strict=True):
        np.testing.assert_array_equal(a, b)
    again, other = random_params(abstract, seed=3), random_params(abstract, seed=4)
    kernel = ("transformer_layer_1", "self_attention", "query", "kernel")

    def leaf(tree):
        for key in kernel:
            tree = tree[key]
        return tree

    np.testing.assert_array_equal(leaf(again), leaf(whole))
    assert not np.array_equal(leaf(other), leaf(whole))
    assert not np.array_equal(whole["transformer_layer_0"]["self_attention"]["query"]["kernel"], leaf(whole))
    negative = random_params(abstract, seed=-1)  # jax keys take any int; numpy's entropy only non-negative ones
    assert not np.array_equal(leaf(negative), leaf(whole))
    with pytest.raises(ValueError, match="no random init is defined for the parameter encoder/gate"):
        random_params({"encoder": {"gate": jax.ShapeDtypeStruct((2,), np.float32)}}, seed=0)


def test_building_a_random_classifier_compiles_nothing():
    """The backbone's and the head's init were XLA programs (BERT-base's: 3.6 s of compile on a 2-core CPU)."""
    compiled = []

    class Compiles(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Finished XLA compilation"):
                compiled.append(record.getMessage())

    logger, handler = logging.getLogger("jax"), Compiles()
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            backbone = flaxbert.DistilBertBackbone(**DIMS, seed=5)
            classifier = flaxbert.DistilBertTextClassifier(backbone, num_classes=3, seed=5)
            jax.block_until_ready(classifier.params)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    assert compiled == []
    want = random_params(backbone.abstract_params(), seed=5)
    for got, expected in zip(jax.tree.leaves(backbone.params), jax.tree.leaves(want), strict=True):
        assert len(got.sharding.device_set) == jax.device_count()  # placed on the classifier's whole mesh
        np.testing.assert_array_equal(np.asarray(got), expected)
