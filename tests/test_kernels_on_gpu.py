"""flaxbert's kernels run for real on an NVIDIA GPU: compiled by Triton (the Pallas kernels) or cuDNN, they compute
what XLA's operations compute.

The kernels' other tests run Pallas's interpreter on CPU (CI has no GPU): they check each kernel's math, not that
Triton compiles it and the chip computes the same. These run the kernels themselves, so they need an NVIDIA GPU of
compute capability 8.0 or later and skip elsewhere. On one (benchmarks/gpu_session.sh runs them first):

    JAX_PLATFORMS=cuda python -m pytest tests/test_kernels_on_gpu.py

The references are XLA's operations on the same GPU, with the kernels switched off where the code under test would
otherwise pick them (`applies` patched to False). Tolerances: bit for bit for the dropout masks (integer math),
the LayerNorm tests' CPU tolerances (float32 math either way), and for attention and logits a hundredth of the
largest value, what bfloat16 operands leave (a wrong mask, scale or block is off by far more: a keep scale 2% too
large fails them); a whole train step's updates are held against XLA's float32 step, as close as XLA's bfloat16 step
is to it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_dropout_kernel import MASK_SETS
from test_fused_attention import _inputs as _attention_inputs
from test_fused_attention import _reference as _attention_reference
from test_layer_norm_kernel import EPSILON, _keep, _xla, _xla_residual
from test_layer_norm_kernel import _inputs as _norm_inputs

import flaxbert
from flaxbert.models import dropout, dropout_kernel, fused_attention, layer_norm_kernel, layers
from flaxbert.models.target_device import runs_triton_kernels
from flaxbert.training import shared_steps


def _gpu():
    try:
        devices = jax.devices("gpu")
    except (RuntimeError, AssertionError):  # no GPU backend: conftest runs the suite on CPU unless JAX_PLATFORMS says
        return None  # otherwise, and jax 0.10 fails an assertion where JAX_PLATFORMS=cuda finds no CUDA
    return devices[0] if devices and runs_triton_kernels(devices[0]) else None


pytestmark = pytest.mark.skipif(
    _gpu() is None,
    reason="needs an NVIDIA GPU of compute capability 8.0+; on one: "
    "JAX_PLATFORMS=cuda python -m pytest tests/test_kernels_on_gpu.py",
)

# A BERT-base layer's three masks at batch 32 in the 512-position frame: several 4,096-word tiles a mask.
_BERT_BASE_LAYER = [((32, 12, 128, 128), (32, 12, 512, 512)), ((32, 128, 768), (32, 512, 768)), ((32, 128, 768), None)]


def _triton_calls(fn, *args) -> int:
    return jax.jit(fn).lower(*args).as_text().count("__gpu$xla.gpu.triton")


@pytest.mark.parametrize("masks", [*MASK_SETS, _BERT_BASE_LAYER], ids=["odd", "1d", "cls", "tiles of 2", "bert_base"])
@pytest.mark.parametrize("rate, as_bytes", [(0.1, False), (0.5, False), (0.1, True)], ids=["words", "half", "bytes"])
def test_dropout_kernel_draws_xlas_masks_bit_for_bit(masks, rate, as_bytes):
    key = jax.random.key(3)

    def kernel(key):
        return dropout_kernel.keep_bytes_together(key, masks, rate, as_bytes=as_bytes)

    assert _triton_calls(kernel, key) == 1
    got = jax.jit(kernel)(key)
    want = jax.jit(lambda key: dropout.keep_bytes_together(key, masks, rate))(key)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype == np.int8
        np.testing.assert_array_equal(a, b)
    assert 0 < np.mean(np.concatenate([np.ravel(b) for b in want])) < 1  # both kept and dropped elements


# BERT-base's rows at batch 32; MiniLM's width; the [CLS]-only layer's one row a sequence.
_NORM_SHAPES = [((32, 128, 768), jnp.bfloat16), ((3, 7, 384), jnp.float32), ((6, 1, 48), jnp.float32)]


def _close(got, want, dtype):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    if dtype == jnp.bfloat16:  # both round the same float32 value once; the sums' order may move it by one step
        np.testing.assert_allclose(got, want, rtol=2**-7, atol=2**-12)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("shape, dtype", _NORM_SHAPES)
def test_layer_norm_kernel_gives_xlas_gradients(monkeypatch, shape, dtype):
    monkeypatch.setattr(layer_norm_kernel, "applies", lambda *a: False)  # the reference takes XLA's backward pass
    x, dy, scale = _norm_inputs(shape, dtype)

    def kernel(x, dy, scale):
        return layer_norm_kernel.backward(x, dy, scale, EPSILON)

    assert _triton_calls(kernel, x, dy, scale) == 1
    dx, d_scale, d_bias = jax.jit(kernel)(x, dy, scale)
    want_dx, want_scale, want_bias = jax.jit(_xla)(x, dy, scale)
    assert dx.dtype == dtype
    _close(dx, want_dx, dtype)
    np.testing.assert_allclose(d_scale, want_scale, rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(d_bias, want_bias, rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize("masked", [True, False], ids=["dropout", "no dropout"])
@pytest.mark.parametrize("shape, dtype", _NORM_SHAPES)
def test_residual_layer_norm_kernel_gives_xlas_gradients(monkeypatch, shape, dtype, masked):
    """As on CPU (test_layer_norm_kernel.py): ds and dh against XLA's operations one at a time, each rounding to the
    input's dtype, and the sums, which the kernel takes in float32, against XLA's from the float32 input."""
    monkeypatch.setattr(layer_norm_kernel, "applies", lambda *a: False)  # the reference takes XLA's backward pass
    x, dy, scale = _norm_inputs(shape, dtype)
    branch = jnp.asarray(np.random.default_rng(2).standard_normal(shape), dtype)
    keep = _keep(shape) if masked else None
    keep_scale = float(np.asarray(1 / 0.9, dtype))

    def kernel(x, branch, keep, dy, scale):
        return layer_norm_kernel.residual_backward(x, branch, keep, dy, scale, EPSILON, keep_scale)

    assert _triton_calls(kernel, x, branch, keep, dy, scale) == 1
    got = jax.jit(kernel)(x, branch, keep, dy, scale)
    want = _xla_residual(x, branch, keep, dy, scale, keep_scale)
    for name, a, b in zip(("ds", "dh"), got[:2], want[:2], strict=True):
        assert a.dtype == dtype, name
        _close(a, b, dtype)
    s = x + (branch if keep is None else jnp.where(keep != 0, branch * jnp.asarray(keep_scale, dtype), 0))
    wide = _xla_residual(s.astype(jnp.float32), jnp.zeros(shape), keep, dy.astype(jnp.float32), scale, keep_scale)
    for name, a, b in zip(("d_scale", "d_bias", "d_h_bias"), got[2:], wide[2:], strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4, err_msg=name)


def _value_and_grads(attention, q, k, v, cotangent):
    """The context (float32) and the gradients of q, k and v of `attention(q, k, v)` for `cotangent`, jitted."""

    def loss(q, k, v):
        out = attention(q, k, v).astype(jnp.float32)
        return jnp.sum(out * cotangent.astype(jnp.float32)), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(q, k, v)
    return out, grads


def _assert_attention_matches(got, want):
    """Context and gradients within a hundredth of the reference's largest value, the gradients not all zero."""
    (out, grads), (want_out, want_grads) = got, want
    np.testing.assert_allclose(out, want_out, atol=1e-2 * np.abs(want_out).max())
    for name, a, b in zip("qkv", grads, want_grads, strict=True):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.abs(b).max() > 0.1  # the comparison is not between zeros
        np.testing.assert_allclose(a, b, atol=1e-2 * np.abs(b).max(), err_msg=f"d{name}")


# BERT-base's heads at length 128 (one backward kernel by default), 100 padded to 128, and 512 (two kernels).
@pytest.mark.parametrize("one_kernel", [None, False], ids=["default backward", "two backward kernels"])
@pytest.mark.parametrize("batch, length", [(4, 128), (2, 100), (1, 512)])
def test_attention_kernels_give_xlas_values_and_gradients(batch, length, one_kernel):
    q, k, v, cotangent, padding_mask = _attention_inputs(batch, length, 12, 64, jnp.bfloat16)
    keep = dropout.keep_mask(jax.random.key(7), (batch, 12, length, length), 0.1)
    scale = dropout.keep_scale(0.1)
    fused = functools.partial(fused_attention.attention, one_backward_kernel=one_kernel)
    expected_kernels = 2 if one_kernel is None and length <= 128 else 3  # forward + backward kernel(s)
    assert _triton_calls(jax.value_and_grad(lambda q: jnp.sum(fused(q, k, v, padding_mask, keep, scale))), q) == (
        expected_kernels
    )
    _assert_attention_matches(
        _value_and_grads(lambda q, k, v: fused(q, k, v, padding_mask, keep, scale), q, k, v, cotangent),
        _value_and_grads(lambda q, k, v: _attention_reference(q, k, v, padding_mask, keep, scale), q, k, v, cotangent),
    )


_DIMS = dict(vocabulary_size=1000, num_layers=2, num_heads=12, hidden_dim=768, intermediate_dim=3072,
             max_sequence_length=128, dtype="bfloat16", seed=0)  # fmt: skip


def _batch(rows=8, length=128):
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 1000, (rows, length)).astype(np.int32),
         "segment_ids": np.zeros((rows, length), np.int32),
         "padding_mask": (np.arange(length) < rng.integers(40, length + 1, (rows, 1))).astype(np.int32)}  # fmt: skip
    return x, rng.integers(0, 3, rows)


def _fresh_classifier(**backbone_options):
    """A classifier whose steps are traced afresh (no kept layer functions or steps of another arm serve it)."""
    layers._layer_apply.cache_clear()
    shared_steps.clear()
    backbone = flaxbert.BertBackbone(**{**_DIMS, **backbone_options})
    return flaxbert.BertTextClassifier(backbone, num_classes=3, seed=0)


def _record_calls(monkeypatch, module, name, calls):
    original = getattr(module, name)

    def recorded(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recorded)


def _norm(a) -> float:
    return float(np.linalg.norm(a))


def test_a_bert_base_layers_train_step_with_the_kernels_is_as_close_to_float32_as_xlas(monkeypatch):
    """Two BERT-base-wide layers in bfloat16, two SGD steps of a padded batch with dropout. flaxbert's defaults on the
    GPU (the fused attention, dropout and LayerNorm kernels, all traced into the step) and XLA's operations alone,
    which draw the same dropout masks, both against XLA's float32 step at full matmul precision: each parameter's
    update is as close to float32's as XLA's bfloat16 update is (within 3x, and 10% of its size), and the loss is
    XLA's to 1%.

    On CPU with the kernels interpreted (each leaf's distance from float32's, kernels / XLA): 0.47-1.28x, the most
    at the first layer's query and key kernels, where the attention's backward kernel rounds the score gradients to
    bfloat16 for its matmuls (as FlashAttention does; XLA multiplies them in float32).
    The key biases' gradients are zero in exact arithmetic (softmax ignores a shift of every score of a row): their
    updates are rounding noise, held against the query biases'."""
    x, y = _batch()

    def fit(**backbone_options):
        classifier = _fresh_classifier(**backbone_options)
        before = jax.tree.map(np.asarray, classifier.params)  # copied: fit donates the params' buffers
        classifier.compile(optimizer=optax.sgd(0.1))
        history = classifier.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0)
        deltas = jax.tree.map(lambda a, b: np.asarray(a, np.float32) - b, classifier.params, before)
        return history.history["loss"][0], deltas

    calls = []
    for module, name in [(fused_attention, "attention_packed"), (dropout_kernel, "keep_bytes_together"),
                         (layer_norm_kernel, "backward"), (layer_norm_kernel, "residual_backward")]:  # fmt: skip
        _record_calls(monkeypatch, module, name, calls)
    kernel_loss, kernel_deltas = fit()
    assert set(calls) == {"attention_packed", "keep_bytes_together", "backward", "residual_backward"}, calls
    calls.clear()
    monkeypatch.setattr(dropout_kernel, "applies", lambda *a: False)
    monkeypatch.setattr(layer_norm_kernel, "applies", lambda *a: False)
    xla_loss, xla_deltas = fit(attention_kernel="xla")
    with jax.default_matmul_precision("highest"):  # no TF32: float32 as the reference
        wide_loss, wide_deltas = fit(attention_kernel="xla", dtype="float32")
    assert calls == []
    np.testing.assert_allclose(kernel_loss, xla_loss, rtol=1e-2)
    np.testing.assert_allclose(xla_loss, wide_loss, rtol=1e-2)
    kernel_flat, xla_flat, wide_flat = map(_by_name, (kernel_deltas, xla_deltas, wide_deltas))
    assert kernel_flat.keys() == xla_flat.keys() == wide_flat.keys()
    for name, wide in wide_flat.items():
        if name.endswith("['key']['bias']"):  # noise: against the query bias's update
            query_bias = wide_flat[name.replace("['key']['bias']", "['query']['bias']")]
            assert _norm(kernel_flat[name]) < 0.1 * _norm(query_bias), name
            continue
        kernel, xla = _norm(kernel_flat[name] - wide), _norm(xla_flat[name] - wide)
        assert _norm(wide) > 0, name  # the steps moved it
        assert kernel <= 3 * xla + 1e-7 and kernel <= 0.1 * _norm(wide), f"{name}: {kernel} vs XLA's {xla}"


def _by_name(tree) -> dict:
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_cudnn_attention_gives_xlas_values_and_gradients():
    """Attention without dropout (predict, and training at dropout 0) through cuDNN's fused kernel, with key padding
    spread over the queries as cuDNN takes it: XLA's values and gradients."""
    q, k, v, cotangent, padding_mask = _attention_inputs(4, 128, 12, 64, jnp.bfloat16)

    def attention(cudnn):
        return lambda q, k, v: layers.attention_without_dropout(q, k, v, padding_mask, cudnn=cudnn)

    assert "cudnn" in jax.jit(attention(True)).lower(q, k, v).compile().as_text().lower()  # not XLA's fallback
    _assert_attention_matches(
        _value_and_grads(attention(True), q, k, v, cotangent), _value_and_grads(attention(False), q, k, v, cotangent)
    )


@pytest.mark.parametrize("kernel", ["cudnn", "pallas"])
def test_predict_with_an_attention_kernel_is_xlas(monkeypatch, kernel):
    """A BERT-base-wide classifier's predict (no dropout) through cuDNN's fused attention or the Pallas kernels (each
    traced into the program: checked): XLA's logits."""
    x, _ = _batch()
    calls, attention = [], jax.nn.dot_product_attention
    monkeypatch.setattr(jax.nn, "dot_product_attention",
                        lambda *a, **k: calls.append(k.get("implementation")) or attention(*a, **k))  # fmt: skip
    _record_calls(monkeypatch, fused_attention, "attention_packed", calls)
    logits = {}
    for name in (kernel, "xla"):
        calls.clear()
        logits[name] = _fresh_classifier(attention_kernel=name).predict(x, batch_size=8, verbose=0)
        traced = {"cudnn": "cudnn" in calls, "pallas": "attention_packed" in calls}[kernel]
        assert traced == (name == kernel), (name, calls)
    assert np.abs(logits["xla"]).max() > 0.1
    np.testing.assert_allclose(logits[kernel], logits["xla"], atol=1e-2 * np.abs(logits["xla"]).max())
