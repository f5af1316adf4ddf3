"""flaxbert's dropout: 16-bit threefry draws four per block, the drop rate, unbiased scaling, any mesh."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32
from jax.sharding import NamedSharding, PartitionSpec

from flaxbert.models import (
    BertClassifier,
    BertConfig,
    BertHeadConfig,
    DistilBertClassifier,
    DistilBertConfig,
    DistilBertHeadConfig,
    dropout_layer,
)
from flaxbert.models.abstract import abstract_params, dummy_inputs
from flaxbert.models.dropout import drop_threshold, keep_bytes, keep_bytes_together, keep_mask, threefry2x32
from flaxbert.models.dropout_layer import Dropout, keep_masks
from flaxbert.parallel import make_mesh


def _reference_mask(key, shape, rate, mask_index=0, masks=1):
    """The mask from jax's public threefry_2x32: block j of row i (the index along the first axis; a 1-D array is one
    row) is threefry(k, (i * masks + mask_index, j)), j counting blocks of four along the row's other axes
    flattened; its two uint32 words give four little-endian 16-bit draws for elements 4j .. 4j+3 of the last axis."""
    k = np.asarray(jax.random.key_data(key))
    given, shape = tuple(shape), tuple(shape) if len(shape) > 1 else (1, *shape)
    rows, inner, last = shape[0], int(np.prod(shape[1:-1])), shape[-1]
    blocks = -(-last // 4)
    row = np.repeat(np.arange(rows, dtype=np.uint32) * masks + mask_index, inner * blocks).astype(np.uint32)
    counters = np.tile(np.arange(inner * blocks, dtype=np.uint32), rows)
    n = row.size
    words = np.asarray(threefry_2x32(k, np.concatenate([row, counters])))
    words = np.stack([words[:n], words[n:]], -1)  # [blocks, 2]: (first, second) output
    draws = words.view(np.uint16).reshape(rows * inner, blocks * 4)[:, :last]
    return (draws >= drop_threshold(rate)).reshape(given)


def test_written_out_threefry_equals_jax_threefry_bit_for_bit():
    rng = np.random.default_rng(0)
    extremes = np.array([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], np.uint32)
    x0 = np.concatenate([extremes, np.repeat(extremes, 5), rng.integers(0, 2**32, 1000, dtype=np.uint32)])
    x1 = np.concatenate([extremes[::-1], np.tile(extremes, 5), rng.integers(0, 2**32, 1000, dtype=np.uint32)])
    keys = [np.array(k, np.uint32) for k in ((0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0x1BD11BDA, 0))]
    keys += [rng.integers(0, 2**32, 2, dtype=np.uint32) for _ in range(3)]
    for k in keys:
        expected = np.asarray(threefry_2x32(k, np.concatenate([x0, x1])))
        for fn in (threefry2x32, jax.jit(threefry2x32)):
            got = np.concatenate([np.asarray(w) for w in fn(jnp.uint32(k[0]), jnp.uint32(k[1]), x0, x1)])
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 8), (7,), (1, 6)])
def test_mask_equals_the_reference_threefry_layout(shape):
    key = jax.random.key(3)
    np.testing.assert_array_equal(keep_mask(key, shape, 0.3), _reference_mask(key, shape, 0.3))


@pytest.mark.parametrize(("shape", "within"), [((2, 1, 6), (2, 5, 6)), ((2, 3, 1, 9), (2, 3, 9, 9)), ((1, 3), (4, 7))])
def test_a_corner_gets_the_larger_arrays_mask_there(shape, within):
    key = jax.random.key(5)
    corner = tuple(slice(0, n) for n in shape)
    np.testing.assert_array_equal(keep_mask(key, shape, 0.3, within), _reference_mask(key, within, 0.3)[corner])
    with pytest.raises(ValueError, match="not a leading corner of shape"):
        keep_mask(key, within, 0.3, shape)


def test_masks_drawn_together_are_each_the_reference_layout_of_their_own_row_words():
    """One threefry call for several masks (a layer's three): mask s of n takes row words row * n + s, so each is the
    reference layout of its own words, a leading corner of its frame, as bytes 0 / 1; one mask alone is keep_bytes."""
    key = jax.random.key(7)
    masks = [((2, 3, 1, 9), (2, 3, 9, 9)), ((2, 1, 6), (2, 5, 6)), ((2, 5, 6), None)]
    drawn = keep_bytes_together(key, masks, 0.3)
    for index, ((shape, within), got) in enumerate(zip(masks, drawn, strict=True)):
        assert got.dtype == jnp.int8 and got.shape == shape and set(np.unique(got)) <= {0, 1}
        frame = shape if within is None else within
        corner = tuple(slice(0, n) for n in shape)
        np.testing.assert_array_equal(got != 0, _reference_mask(key, frame, 0.3, index, len(masks))[corner])
    assert not np.array_equal(np.asarray(drawn[1]), np.asarray(drawn[2])[:, :1])  # the same frame, other draws
    (shape, within), alone = masks[0], keep_bytes_together(key, masks[:1], 0.3)[0]
    np.testing.assert_array_equal(alone, keep_bytes(key, shape, 0.3, within))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
@pytest.mark.parametrize(
    "masks",
    [
        [((2, 3, 1, 9), (2, 3, 9, 9)), ((2, 1, 6), (2, 5, 6)), ((2, 5, 6), None)],
        [((7,), None), ((3, 5), (4, 7))],
        [((4, 2, 16, 16), None), ((4, 16, 24), None), ((4, 1, 24), (4, 16, 24))],  # a layer's three
    ],
)
def test_masks_packed_by_a_reduction_are_the_same_bytes(masks, rate):
    """What the models draw on CPU (`packed_by_reduction`): the same bytes as the elementwise packing, eagerly and
    jitted."""
    key = jax.random.key(11)
    want = keep_bytes_together(key, masks, rate)
    for draw in (keep_bytes_together, jax.jit(keep_bytes_together, static_argnums=(1, 2, 3))):
        got = draw(key, tuple(masks), rate, True)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype == jnp.int8
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("packed_by_reduction", [False, True])
def test_empty_masks_are_empty(packed_by_reduction):
    masks = [((0, 5), None), ((2, 0, 4), (2, 3, 4)), ((3, 0), None), ((0,), None), ((2, 5), None)]
    drawn = keep_bytes_together(jax.random.key(0), masks, 0.1, packed_by_reduction)
    assert [m.shape for m in drawn] == [shape for shape, _ in masks] and {m.dtype for m in drawn} == {jnp.dtype("int8")}
    np.testing.assert_array_equal(drawn[-1], keep_bytes_together(jax.random.key(0), masks, 0.1)[-1])


def test_on_cpu_the_layers_masks_are_packed_by_a_reduction_the_same_on_any_mesh():
    masks = [((8, 2, 16, 16), None), ((8, 16, 24), (8, 32, 24)), ((8, 1, 24), (8, 32, 24))]
    key = jax.random.key(5)
    rows = NamedSharding(make_mesh(data=4, fsdp=2), PartitionSpec(("data", "fsdp")))

    @jax.jit
    def sharded(key):
        return [jax.lax.with_sharding_constraint(m, rows) for m in keep_masks(key, masks, 0.1)]

    for got, want in zip(sharded(key), keep_bytes_together(key, masks, 0.1), strict=True):
        assert len(got.sharding.device_set) == 8
        np.testing.assert_array_equal(got, want)


def _cipher_fusions(compiled_text: str) -> int:
    """The computations of a compiled program that hold a whole threefry cipher (20 rounds: 20 xors, and more)."""
    return sum(1 for body in re.split(r"\n(?=\S)", compiled_text) if body.count(" xor(") >= 20)


def test_xla_cpu_compiles_each_masks_cipher_once_however_many_users_read_it(monkeypatch):
    """A train step reads a layer's masks in several fusions (forward, backward, gradient reductions). XLA:CPU copies
    an elementwise cipher into each of them, which its compile time paid for (BERT-base: 104 copies of 14 ciphers);
    packed by a reduction, each cipher is one fusion. This 2-layer classifier's grad draws 4 masks' ciphers: the
    embeddings', each layer's and the head's."""
    cfg = BertConfig(vocabulary_size=101, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=24,
                     max_sequence_length=20)  # fmt: skip
    model = BertClassifier(cfg, BertHeadConfig(num_classes=2))
    params = nn.unbox(abstract_params(model, cfg))
    inputs = dummy_inputs(cfg, batch_size=2, length=8)

    def compiled():
        def loss(p):
            return jnp.sum(model.apply({"params": p}, inputs, train=True, rngs={"dropout": jax.random.key(0)}))

        return jax.jit(jax.grad(loss)).lower(params).compile().as_text()

    assert _cipher_fusions(compiled()) == 4
    elementwise = dropout_layer.dropout.keep_bytes_together
    monkeypatch.setattr(dropout_layer.dropout, "keep_bytes_together",
                        lambda key, masks, rate, packed_by_reduction: elementwise(key, masks, rate))  # fmt: skip
    assert _cipher_fusions(compiled()) > 8  # what the reduction saves: copies in the users


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropped_fraction_matches_the_rate_and_neighbours_are_independent(rate):
    mask = np.asarray(keep_mask(jax.random.key(0), (256, 1024), rate))
    p = drop_threshold(rate) / 2**16
    assert abs(p - rate) <= 2**-17
    sigma = np.sqrt(p * (1 - p) / mask.size)
    assert abs((~mask).mean() - p) < 5 * sigma
    for lag in (1, 2, 3, 4):  # draws inside a block and across the block boundary
        both = (~mask[:, :-lag] & ~mask[:, lag:]).mean()
        assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / mask[:, lag:].size)
    rows = (~mask[:-1] & ~mask[1:]).mean()
    assert abs(rows - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / mask[1:].size)


def test_masks_depend_on_the_key_only():
    a, b, c = (keep_mask(jax.random.key(k), (4, 64), 0.5) for k in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert 0.3 < float(jnp.mean(a != c)) < 0.7  # another key: an independent mask
    np.testing.assert_array_equal(keep_mask(jax.random.PRNGKey(1), (4, 64), 0.5), a)  # a raw uint32 key: the same
    rbg = keep_mask(jax.random.key(1, impl="rbg"), (4, 64), 0.5)  # another implementation's key works too
    assert rbg.shape == (4, 64) and 0.3 < float(jnp.mean(rbg)) < 0.7
    with pytest.raises(TypeError, match="a dropout key must be a jax PRNG key .* got an array of int32"):
        keep_mask(jnp.asarray([0, 1], jnp.int32), (4, 64), 0.5)


def test_layer_scales_kept_values_by_the_inverse_keep_probability():
    x = jnp.full((64, 512), 3.0)
    out = Dropout(0.1).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
    kept = np.asarray(out) != 0
    scale = 2**16 / (2**16 - drop_threshold(0.1))
    np.testing.assert_allclose(np.asarray(out)[kept], np.float32(3.0) * np.float32(scale), rtol=0)
    assert abs(float(out.mean()) - 3.0) < 0.02  # unbiased
    np.testing.assert_array_equal(Dropout(0.1).apply({}, x, deterministic=True), x)
    np.testing.assert_array_equal(Dropout(0.0).apply({}, x, deterministic=False), x)  # needs no rng at rate 0
    half = Dropout(0.2).apply({}, x.astype(jnp.bfloat16), deterministic=False, rngs={"dropout": jax.random.key(0)})
    assert half.dtype == jnp.bfloat16


def test_mask_is_the_same_on_any_mesh():
    mesh = make_mesh(data=4, fsdp=2)
    x = jnp.ones((8, 16, 24))
    layer = Dropout(0.5)

    def drop(x):
        return layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(7)})

    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec(("data", "fsdp"))))
    out = jax.jit(drop)(sharded)
    assert len(out.sharding.device_set) == 8
    np.testing.assert_array_equal(out, jax.jit(drop)(x))


@pytest.mark.parametrize("arch", ["bert", "distil_bert"])
def test_each_heads_dropout_drops_what_feeds_its_logits_in_training_only(arch):
    """keras-hub's heads drop the pooled output (BERT) or the relu'd `pooled_dense` output (DistilBERT) just before
    `logits`. With the encoder's dropout off and `logits` made the identity, a train-mode output is that vector with
    each entry dropped or scaled by 1 / keep, about half of them dropped at rate 0.5."""
    shape = dict(vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=24,
                 max_sequence_length=12, dropout=0.0)  # fmt: skip
    if arch == "bert":
        model = BertClassifier(BertConfig(**shape), BertHeadConfig(16, dropout=0.5))
    else:
        model = DistilBertClassifier(DistilBertConfig(**shape), DistilBertHeadConfig(16, dropout=0.5))
    rng = np.random.default_rng(0)
    batch = {"token_ids": rng.integers(1, 40, (16, 6)).astype(np.int32), "padding_mask": np.ones((16, 6), np.int32)}
    if arch == "bert":
        batch["segment_ids"] = np.zeros((16, 6), np.int32)
    params = dict(model.init(jax.random.key(0), batch)["params"])
    params["logits"] = {"kernel": jnp.eye(16), "bias": jnp.zeros(16)}
    fed = np.asarray(model.apply({"params": params}, batch))  # what the head's dropout gets
    dropped = np.asarray(model.apply({"params": params}, batch, train=True, rngs={"dropout": jax.random.key(1)}))
    live = fed != 0  # DistilBERT's relu zeroes some entries before any dropout
    assert live.sum() > 100
    gone = live & (dropped == 0)
    assert 0.4 < gone.sum() / live.sum() < 0.6
    np.testing.assert_allclose(dropped[live & ~gone], fed[live & ~gone] / 0.5, rtol=1e-5)
