"""The dropout mask kernel draws `dropout.keep_bytes_together`'s masks bit for bit, alone or split over a mesh, and
the models take their masks from it where it applies (NVIDIA GPUs).

On CPU the kernel runs in Pallas's interpreter, so these tests check its index arithmetic and cipher; that Triton
compiles it is checked by compiling the train step for a GPU on a CPU host (benchmarks/gpu_offline.py).
"""

from __future__ import annotations

import functools
import types

import jax
import numpy as np
import pytest
from mesh_fit import fit_on_a_mesh, fit_through_kernel

from flaxbert.models import BertConfig, dropout, dropout_kernel, dropout_layer, layer_norm_kernel, layers
from flaxbert.models.layers import TransformerLayer
from flaxbert.parallel import make_mesh

_interpreted = functools.partial(dropout_kernel.keep_bytes_together, interpret=True)

# (shape, within) lists: a layer's three masks in a larger frame with an odd length; a 1-D mask; the [CLS]-only
# layer's one query row; masks whose block counts share only a factor of 2 (tiles of 2 words).
MASK_SETS = [
    [((2, 3, 5, 7), (2, 3, 9, 9)), ((2, 5, 16), (2, 9, 16)), ((2, 5, 16), None)],
    [((37,), (64,))],
    [((3, 2, 1, 10), (3, 2, 12, 12)), ((3, 1, 24), (3, 12, 24)), ((3, 1, 24), (3, 12, 24))],
    [((2, 13), None), ((6, 4, 5), (6, 8, 5))],
]


@pytest.mark.parametrize("masks", MASK_SETS)
@pytest.mark.parametrize("rate, as_bytes", [(0.1, False), (0.5, False), (0.1, True)])
def test_kernel_draws_the_masks_of_keep_bytes_together_bit_for_bit(masks, rate, as_bytes):
    """The same masks whether the kernel writes the packed words or their bytes."""
    key = jax.random.key(3)
    want = dropout.keep_bytes_together(key, masks, rate)
    got = _interpreted(key, masks, rate, as_bytes=as_bytes)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype == np.int8
        np.testing.assert_array_equal(a, b)
    assert 0 < np.mean(np.concatenate([np.ravel(b) for b in want])) < 1  # both kept and dropped elements


def test_a_bert_base_layers_masks_are_tiled_across_programs():
    """A layer's masks at BERT-base widths (4,096-word tiles, several per mask), in the 512-position frame."""
    key = jax.random.key(11)
    hidden = ((2, 128, 768), (2, 512, 768))
    masks = [((2, 12, 128, 128), (2, 12, 512, 512)), hidden, hidden]
    for a, b in zip(_interpreted(key, masks, 0.1), dropout.keep_bytes_together(key, masks, 0.1), strict=True):
        np.testing.assert_array_equal(a, b)


def test_on_a_mesh_each_device_draws_its_own_rows():
    """Traced under a 4 x 2 mesh, the kernel runs per device (one manual region) on its part of the batch and the
    masks are those of one device, row for row."""
    mesh = make_mesh(data=4, fsdp=2)
    masks = [((8, 2, 6, 6), (8, 2, 16, 16)), ((8, 6, 12), (8, 16, 12))]
    key = jax.random.key(5)
    draw = jax.jit(lambda key: _interpreted(key, masks, 0.3))
    with jax.set_mesh(mesh):
        lowered = draw.lower(key)
        sharded = lowered.compile()(key)
    assert lowered.as_text().count("sdy.manual_computation") == 1
    for a, b in zip(sharded, dropout.keep_bytes_together(key, masks, 0.3), strict=True):
        assert len(a.sharding.device_set) == 8
        np.testing.assert_array_equal(a, b)


def _device(platform="gpu", version="cuda 12.9", capability="9.0"):
    return types.SimpleNamespace(platform=platform, client=types.SimpleNamespace(platform_version=version),
                                 compute_capability=capability)  # fmt: skip


def test_applies_to_recent_nvidia_gpus_and_batch_first_masks_on_a_mesh():
    layer_masks = [((8, 2, 6, 6), None), ((8, 6, 12), None)]
    assert dropout_kernel.applies(_device(), layer_masks)
    assert dropout_kernel.applies(_device(), [((37,), None)])  # one device: any mask
    assert not dropout_kernel.applies(_device(capability="7.5"), layer_masks)
    assert not dropout_kernel.applies(_device(version="rocm 6.0", capability=None), layer_masks)
    assert not dropout_kernel.applies(jax.devices("cpu")[0], layer_masks)
    assert not dropout_kernel.applies(_device(), [((8, 0, 12), None)])  # nothing to draw
    with jax.sharding.use_abstract_mesh(make_mesh(data=4, fsdp=2).abstract_mesh):
        assert dropout_kernel.applies(_device(), layer_masks)
        assert not dropout_kernel.applies(_device(), [((6, 5), None)])  # 6 rows do not split over 8 devices
        assert not dropout_kernel.applies(_device(), [((16,), None)])  # a 1-D mask has no batch axis
        assert not dropout_kernel.applies(_device(), [((8, 4), None), ((16, 4), None)])  # not one batch


def _training_layer():
    """(a TransformerLayer at dropout 0.3, its params, an input [2, 7, 16], its padding mask)."""
    cfg = BertConfig(vocabulary_size=11, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=24,
                     max_sequence_length=12, dropout=0.3)  # fmt: skip
    layer = TransformerLayer(cfg)
    x = jax.random.normal(jax.random.key(0), (2, 7, 16))
    padding_mask = np.ones((2, 7), np.int32)
    return layer, layer.init(jax.random.key(1), x, padding_mask, False), x, padding_mask


def test_layers_take_their_masks_from_the_kernel_where_it_applies(monkeypatch):
    """A training TransformerLayer draws its three masks through `dropout_layer.keep_masks`, keyed by its
    `dropout_key` as it is: on CPU by XLA, and with the kernel applying, from the kernel (here interpreted), the same
    masks either way."""
    layer, params, x, padding_mask = _training_layer()
    key = jax.random.key(2)

    def run():
        return jax.jit(lambda p, x, key: layer.apply(p, x, padding_mask, True, key))

    by_xla = run()(params, x, key)
    calls = []

    def kernel(key, masks, rate, as_bytes):
        calls.append((key, masks))
        return _interpreted(key, masks, rate, as_bytes=as_bytes)

    monkeypatch.setattr(dropout_kernel, "applies", lambda device, masks: True)
    monkeypatch.setattr(dropout_kernel, "keep_bytes_together", kernel)
    by_kernel = run()(params, x, key)
    assert [len(masks) for _, masks in calls] == [3]
    # the same masks; the programs differ (a mask read from a kernel's output, not fused), so XLA:CPU may round the
    # LayerNorms' sums differently: float32 rounding apart, where one other mask would move values by ~1
    np.testing.assert_allclose(by_kernel, by_xla, rtol=0, atol=2e-6)
    assert not np.array_equal(by_xla, layer.apply(params, x, padding_mask, False))  # dropout did drop
    with pytest.raises(ValueError, match="draws its masks from dropout_key"):
        layer.apply(params, x, padding_mask, True)


def test_a_layer_has_its_masks_written_as_bytes_where_the_layer_norm_kernel_applies(monkeypatch):
    """Bytes where the LayerNorm kernel takes the block's backward pass (its forward fusion then reads them), the
    packed words elsewhere: the same masks."""
    layer, params, x, padding_mask = _training_layer()
    asked = []

    def kernel(key, masks, rate, as_bytes):
        asked.append(as_bytes)
        return _interpreted(key, masks, rate, as_bytes=as_bytes)

    monkeypatch.setattr(dropout_kernel, "applies", lambda device, masks: True)
    monkeypatch.setattr(dropout_kernel, "keep_bytes_together", kernel)
    outputs = []
    for norm_kernel in (False, True):
        monkeypatch.setattr(layer_norm_kernel, "applies", lambda device, shape, on=norm_kernel: on)
        outputs.append(jax.jit(lambda p, x: layer.apply(p, x, padding_mask, True, jax.random.key(2)))(params, x))
    assert asked == [False, True]
    # the same masks; the programs differ (the residual LayerNorm's forward keeps less), so XLA:CPU may round the
    # LayerNorms' sums differently: float32 rounding apart, where one other mask would move values by ~1
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=0, atol=2e-6)


def test_a_layers_masks_are_keyed_by_its_dropout_key_as_it_is(monkeypatch):
    """No key is folded inside the layer (each fold is one more cipher for XLA to fuse): the masks are
    `layer_keep_masks` of the key the layer is given."""
    layer, params, x, padding_mask = _training_layer()
    seen = []
    real = dropout_layer.keep_masks
    monkeypatch.setattr(layers, "keep_masks", lambda key, *args: seen.append(key) or real(key, *args))
    layer.apply(params, x, padding_mask, True, jax.random.key(9))
    assert len(seen) == 1
    np.testing.assert_array_equal(jax.random.key_data(seen[0]), jax.random.key_data(jax.random.key(9)))


def test_the_dropout_module_takes_its_mask_from_the_kernel_where_it_applies(monkeypatch):
    x = np.ones((4, 9), np.float32)

    def run():
        return jax.jit(lambda x: dropout_layer.Dropout(0.5).apply({}, x, False, rngs={"dropout": jax.random.key(4)}))

    by_xla = run()(x)
    calls = []
    monkeypatch.setattr(dropout_kernel, "applies", lambda device, masks: True)
    monkeypatch.setattr(dropout_kernel, "keep_bytes_together",
                        lambda *args, **kw: calls.append(args) or _interpreted(*args, **kw))  # fmt: skip
    np.testing.assert_array_equal(run()(x), by_xla)
    assert len(calls) == 1
    assert set(np.unique(by_xla)) == {0.0, 2.0}


def _fit_on_a_mesh(monkeypatch, kernel: bool):
    """One epoch of a tiny classifier data-parallel over 4 x 2 devices, its masks by the kernel (interpreted) or by
    XLA; its history, params and the draws the kernel traced."""
    drawn = []  # (mesh size, the first mask's shape) of each draw the kernel traced

    def drawing(key, masks, rate, as_bytes=False):
        drawn.append((jax.sharding.get_abstract_mesh().size, tuple(masks[0][0])))
        return _interpreted(key, masks, rate, as_bytes=as_bytes)

    fitted = (
        fit_through_kernel(monkeypatch, dropout_kernel, "keep_bytes_together", drawing) if kernel else fit_on_a_mesh()
    )
    return (*fitted, drawn)


def test_a_fit_on_a_mesh_with_the_kernels_masks_trains_as_with_xlas(monkeypatch):
    """The whole path on a multi-device mesh: the encoder's layers, traced under fit's 4 x 2 mesh inside its jitted
    layer function, draw their masks in the kernel's shard_map, each device its own rows; the embeddings' and the
    head's too. The fit's loss and params are those of the fit whose masks XLA drew."""
    with monkeypatch.context() as patched:
        by_kernel = _fit_on_a_mesh(patched, kernel=True)
    by_xla = _fit_on_a_mesh(monkeypatch, kernel=False)
    # the embeddings', each layer's (the last at [CLS] alone) and the head's, on the global batch of 8 over 8 devices
    assert sorted(by_kernel[2]) == [(8, (8, 2, 1, 12)), (8, (8, 2, 12, 12)), (8, (8, 12, 32)), (8, (8, 32))]
    assert by_xla[2] == []
    np.testing.assert_allclose(by_kernel[0]["loss"], by_xla[0]["loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(by_kernel[1]), jax.tree.leaves(by_xla[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
