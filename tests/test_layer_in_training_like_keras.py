"""A TransformerLayer in training against keras-hub's TransformerEncoder in training, given the same dropout masks.

The inference parity tests never run the training-time attention (`layers.attention_with_dropout`: a dropout rate
above 0, in training), and masks drawn by two libraries never agree: a wrong scale of its scores passed the whole
suite (session 50's mutation sweep). So keras' three Dropout layers (the attention probabilities', the attention
output's, the feed-forward output's) are handed the masks flaxbert's layer draws from its key, and the two layers
must then compute the same outputs, and the same gradients (keras' by jax's autodiff on its JAX backend; flaxbert's
through its own LayerNorm and GELU backward passes).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxbert.models.config import BertConfig
from flaxbert.models.layers import TransformerLayer, layer_keep_masks

# 0.25 is a multiple of 2**-16, so flaxbert's keep scale (the inverse of its 16-bit keep probability) is Keras' 4/3
RATE = 0.25
CFG = BertConfig(vocabulary_size=11, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=24,
                 max_sequence_length=8, dropout=RATE)  # fmt: skip
BATCH, LENGTH = 3, 6


def _random_params(seed: int) -> dict:
    """The layer's params, every leaf drawn: init's zero biases and unit LayerNorm scales would hide a misplaced one."""
    x, padding_mask = jnp.ones((1, LENGTH, CFG.hidden_dim)), jnp.ones((1, LENGTH))
    shapes = nn.unbox(TransformerLayer(CFG).init(jax.random.key(0), x, padding_mask, False)["params"])
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: (0.3 * rng.standard_normal(a.shape)).astype(np.float32), shapes)


def _by_keras_names(params) -> dict:
    """A tree of the layer's params (or their gradients) keyed by keras-hub's module and weight names."""
    attention = params["self_attention"]
    tree = {
        "self_attention_layer/query": attention["query"], "self_attention_layer/key": attention["key"],
        "self_attention_layer/value": attention["value"], "self_attention_layer/attention_output": attention["output"],
        "feedforward_intermediate_dense": params["feedforward_intermediate_dense"],
        "feedforward_output_dense": params["feedforward_output_dense"],
    }  # fmt: skip
    for norm in ("self_attention_layer_norm", "feedforward_layer_norm"):
        tree[norm] = {"gamma": params[norm]["scale"], "beta": params[norm]["bias"]}
    return tree


def _keras_encoder(keras_hub, keras, params, masks):
    """keras-hub's TransformerEncoder (BERT's settings) holding `params`, its Dropout layers applying `masks`."""
    encoder = keras_hub.layers.TransformerEncoder(
        intermediate_dim=CFG.intermediate_dim, num_heads=CFG.num_heads, dropout=RATE,
        activation=lambda x: keras.activations.gelu(x, approximate=True), layer_norm_epsilon=CFG.layer_norm_epsilon,
    )  # fmt: skip
    encoder.build((BATCH, LENGTH, CFG.hidden_dim))
    tree = _by_keras_names(params)
    for weight in encoder.trainable_variables:
        weight.assign(_keras_weight(tree, weight.path))

    probs_keep, attended_keep, output_keep = masks
    dropouts = [encoder._self_attention_layer._dropout_layer, encoder._self_attention_dropout,
                encoder._feedforward_dropout]  # fmt: skip
    applied = []
    for layer, keep in zip(dropouts, (probs_keep, attended_keep, output_keep), strict=True):

        def call(inputs, training=False, keep=keep, layer=layer):
            if not training:
                return inputs
            assert inputs.shape == keep.shape, (layer.name, inputs.shape, keep.shape)
            applied.append(layer.name)
            return inputs * keras.ops.where(keep, 1.0 / (1.0 - RATE), 0.0)

        layer.call = call
    return encoder, applied


def _keras_weight(tree, path: str):
    """The leaf of `tree` (a `_by_keras_names` tree) under keras' weight `path` (its layer's own name dropped)."""
    module, name = path.split("/", 1)[1].rsplit("/", 1)
    return tree[module][name]


@pytest.mark.parametrize("first_token_only", [False, True], ids=["every position", "first token only"])
def test_a_layer_in_training_equals_keras_hubs_given_its_dropout_masks(keras_hub, keras, first_token_only):
    """With `first_token_only` (the classifiers' last layer) the layer's masks are the first query row of the whole
    layer's, so its output is keras-hub's first row."""
    params = _random_params(seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((BATCH, LENGTH, CFG.hidden_dim)).astype(np.float32)
    padding_mask = np.ones((BATCH, LENGTH), np.int32)
    padding_mask[0, 4:] = 0  # trailing padding
    padding_mask[2, 1] = 0  # and a hidden key inside the text
    key = jax.random.key(5)
    layer = TransformerLayer(CFG, first_token_only)
    ours = layer.apply({"params": params}, x, padding_mask, True, key)
    masks = [np.asarray(m) for m in layer_keep_masks(CFG, key, BATCH, LENGTH, LENGTH)]  # the whole layer's
    assert all(0.5 < m.mean() < 0.95 for m in masks)  # each drops some and keeps most
    encoder, applied = _keras_encoder(keras_hub, keras, params, masks)
    theirs = np.asarray(encoder(x, padding_mask=padding_mask.astype(bool), training=True))
    assert len(applied) == 3  # each mask went where keras drops
    queries = 1 if first_token_only else LENGTH
    assert ours.shape == (BATCH, queries, CFG.hidden_dim)
    np.testing.assert_allclose(ours, theirs[:, :queries], rtol=1e-5, atol=2e-6)
    # the masks matter: keras-hub without them (its inference) is far from the layer in training
    assert np.abs(np.asarray(encoder(x, padding_mask=padding_mask.astype(bool)))[:, :queries] - ours).max() > 0.1

    # The gradients of a loss of the output, as a train step takes them, against keras' on its JAX backend.
    cotangent = rng.standard_normal((BATCH, queries, CFG.hidden_dim)).astype(np.float32)

    def our_loss(params, x):
        out = layer.apply({"params": params}, x, padding_mask, True, key)
        return jnp.sum(out * cotangent)

    seeds = [v.value for v in encoder.non_trainable_variables]  # its Dropout layers' seed states, unread here

    def keras_loss(weights, x):
        out, _ = encoder.stateless_call(weights, seeds, x, padding_mask=padding_mask.astype(bool), training=True)
        return jnp.sum(out[:, :queries] * cotangent)

    our_params_grad, our_x_grad = jax.grad(our_loss, (0, 1))(params, x)
    keras_weights_grad, keras_x_grad = jax.grad(keras_loss, (0, 1))([v.value for v in encoder.trainable_variables], x)
    np.testing.assert_allclose(our_x_grad, keras_x_grad, rtol=1e-5, atol=2e-6 * np.abs(keras_x_grad).max())
    our_grads = _by_keras_names(our_params_grad)
    # rounding is measured against the largest gradient: the key bias's is zero but for it (softmax ignores a shift)
    largest = max(float(np.abs(g).max()) for g in keras_weights_grad)
    for weight, keras_grad in zip(encoder.trainable_variables, keras_weights_grad, strict=True):
        np.testing.assert_allclose(_keras_weight(our_grads, weight.path), keras_grad, rtol=1e-5, atol=1e-6 * largest,
                                   err_msg=weight.path)  # fmt: skip
