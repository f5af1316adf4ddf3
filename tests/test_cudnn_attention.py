"""`attention_kernel="cudnn"`: cuDNN's fused attention where no probability dropout applies, XLA's ops elsewhere.

cuDNN runs only on an NVIDIA GPU, so here the tests check what decides and feeds the call: where the kernel applies,
that the model computes the XLA path's numbers wherever it does not (this CPU, training with dropout), and that on a
GPU it hands `jax.nn.dot_product_attention(implementation="cudnn")` the mask in the shape cuDNN takes. Its speed and
its agreement with XLA on a GPU are `benchmarks/attention_kernels.py`'s to show.
"""

from __future__ import annotations

import dataclasses
import functools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxbert.models import BertClassifier, BertConfig, BertHeadConfig, layers
from flaxbert.models.abstract import dummy_inputs

TINY = BertConfig(vocabulary_size=101, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=24,
                  max_sequence_length=24, dropout=0.2)  # fmt: skip


def _model(kernel: str, dropout: float = 0.2):
    cfg = dataclasses.replace(TINY, attention_kernel=kernel, dropout=dropout)
    inputs = dummy_inputs(cfg, batch_size=2, length=12)
    inputs = dict(inputs, token_ids=jnp.arange(24, dtype=jnp.int32).reshape(2, 12) % 101)
    inputs["padding_mask"] = inputs["padding_mask"].at[1, 8:].set(0).at[0, 3].set(0)  # trailing and inner padding
    model = BertClassifier(cfg, BertHeadConfig(3, dropout=dropout))
    params = nn.unbox(model.init(jax.random.key(0), inputs)["params"])

    @functools.partial(jax.jit, static_argnums=1)
    def logits(params, train: bool = False):
        return model.apply({"params": params}, inputs, train=train, rngs={"dropout": jax.random.key(5)})

    return logits, params


def test_cudnn_applies_to_sixteen_bit_attention_on_a_gpu(monkeypatch):
    assert not layers.cudnn_applies(jnp.bfloat16, 64, 128)  # this CPU
    monkeypatch.setattr(layers, "target_device", lambda: types.SimpleNamespace(platform="gpu"))
    assert layers.cudnn_applies(jnp.bfloat16, 64, 128) and layers.cudnn_applies(jnp.float16, 128, 24)
    assert not layers.cudnn_applies(jnp.float32, 64, 128)  # cuDNN's fused attention has no float32 form
    assert not layers.cudnn_applies(jnp.bfloat16, 256, 128) and not layers.cudnn_applies(jnp.bfloat16, 20, 128)
    assert not layers.cudnn_applies(jnp.bfloat16, 64, 127)  # jax's cuDNN call refuses odd lengths with a mask


def test_where_cudnn_does_not_apply_the_model_is_the_xla_path():
    """On this CPU a "cudnn" model is the default model, dropout masks included: a preset saved with the option runs
    anywhere."""
    cudnn, params = _model("cudnn")
    xla, _ = _model("xla")
    evaluation, training = cudnn(params, False), cudnn(params, True)
    np.testing.assert_array_equal(evaluation, xla(params, False))
    np.testing.assert_array_equal(training, xla(params, True))
    assert not np.allclose(evaluation, training), "dropout is on in training and off in evaluation"


def test_on_a_gpu_attention_without_dropout_calls_cudnn_with_a_mask_row_per_query(monkeypatch, request):
    """With cuDNN applying, attention without dropout (here evaluation and training at dropout 0) goes to
    `jax.nn.dot_product_attention(implementation="cudnn")` with the key mask spread to [B, 1, L, L]: cuDNN takes a
    mask only as a bias with the query length as its third dimension. The stand-in computes with XLA's ops, so the
    logits must equal the XLA model's; training with dropout must not reach it."""
    real = jax.nn.dot_product_attention
    calls = []

    def stand_in(q, k, v, *, mask, scale, implementation=None):
        calls.append((implementation, mask.shape, mask.dtype, q.shape))
        return real(q, k, v, mask=mask, scale=scale)

    monkeypatch.setattr(layers, "cudnn_applies", lambda dtype, head_dim, length: True)
    monkeypatch.setattr(jax.nn, "dot_product_attention", stand_in)
    jax.clear_caches()  # the stand-in acts at trace time: no layer function traced by an earlier test may be reused,
    request.addfinalizer(jax.clear_caches)  # and no later test may reuse one traced with it
    for dropout, train in ((0.2, False), (0.0, True)):
        cudnn, params = _model("cudnn", dropout)
        xla, _ = _model("xla", dropout)
        calls.clear()  # after both inits: from here, the cudnn model's own trace alone
        out = cudnn(params, train)
        # The layers before the last share one traced layer function, so one call stands for them all; the last
        # layer, which computes [CLS] alone (one query row), keeps XLA's ops.
        whole, first_token = ("cudnn", (2, 1, 12, 12), np.dtype(bool), (2, 12, 2, 16)), (None, (2, 1, 1, 12))
        assert calls == [whole, (*first_token, np.dtype(bool), (2, 1, 2, 16))], calls
        np.testing.assert_allclose(out, xla(params, train), rtol=1e-6, atol=1e-7)
    cudnn, params = _model("cudnn", 0.2)
    calls.clear()  # after init, which traces the evaluation path
    cudnn(params, True)
    assert calls == [], "training with dropout keeps flaxbert's own masks (the XLA path)"
