"""flaxbert's Pallas attention kernels compute the XLA path's function: values and gradients, dropout mask included.

On CPU the kernels run in Pallas's interpreter, so these tests check the kernels' math (tiling, length padding, key
masking, dropout, the recomputing backward pass); whether Triton compiles them and how fast they run is a GPU matter
(benchmarks/throughput.py --frameworks flaxbert_xla,flaxbert_pallas).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend.core import jaxprs_in_params

import flaxbert
from flaxbert.models import (
    BertConfig,
    DistilBertClassifier,
    DistilBertConfig,
    DistilBertHeadConfig,
    fused_attention,
)
from flaxbert.models.abstract import dummy_inputs
from flaxbert.models.dropout import keep_mask, keep_scale
from flaxbert.parallel import batch_sharding
from flaxbert.training import programs

# Here the kernels run interpreted on purpose; test_on_cpu_the_interpreter_warns checks the warning itself.
pytestmark = pytest.mark.filterwarnings("ignore:attention_kernel='pallas' runs its GPU kernels")

_keep_mask = jax.jit(keep_mask, static_argnums=(1, 2))  # one program instead of many eager ops


def _reference(q, k, v, padding_mask, keep, scale):
    """The XLA path's math, written out: float32 scores, hidden keys at the float32 minimum, softmax, dropout."""
    s = jnp.einsum("bqhd,bshd->bhqs", q, k, preferred_element_type=jnp.float32) / math.sqrt(q.shape[-1])
    s = jnp.where(padding_mask[:, None, None, :].astype(bool), s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1)
    if keep is not None:
        p = jnp.where(keep, p * scale, 0.0)
    return jnp.einsum("bhqs,bshd->bqhd", p.astype(v.dtype), v)


def _kernel_calls(fn, *args) -> int:
    """The Pallas kernels `fn(*args)` runs: its jaxpr's `pallas_call`s, those of nested jaxprs included."""

    def count(jaxpr):
        return sum((e.primitive.name == "pallas_call") + sum(count(sub) for sub in jaxprs_in_params(e.params))
                   for e in jaxpr.eqns)  # fmt: skip

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def _inputs(batch, length, heads, head_dim, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v, cotangent = (jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), dtype) for _ in range(4))
    padding_mask = np.ones((batch, length), np.int32)
    padding_mask[0, length - 5 :] = 0  # trailing padding
    padding_mask[-1, 2] = 0  # and a hidden key in the middle
    return q, k, v, cotangent, jnp.asarray(padding_mask)


# A power of two in one block; 24 padded to 32; 40 padded to 64 and tiled in blocks of 16 queries (and keys); the
# backward pass as two kernels (the default at head size 16) and as one (its queries 16 at a time where tiled).
@pytest.mark.parametrize("one_kernel", [False, True], ids=["two backward kernels", "one backward kernel"])
@pytest.mark.parametrize("length, block_rows, rate", [(16, None, 0.3), (24, None, 0.0), (40, 16, 0.3)])
def test_values_and_gradients_match_the_xla_path(length, block_rows, rate, one_kernel):
    q, k, v, cotangent, padding_mask = _inputs(2, length, 2, 16)
    keep = _keep_mask(jax.random.key(7), (2, 2, length, length), rate) if rate else None
    scale = keep_scale(rate)

    fused_fn = functools.partial(fused_attention.attention, block_rows=block_rows, one_backward_kernel=one_kernel)

    def loss(attention, q, k, v):
        return jnp.sum(attention(q, k, v, padding_mask, keep, scale) * cotangent)

    fused_value_and_grad = jax.value_and_grad(functools.partial(loss, fused_fn), (0, 1, 2))
    assert _kernel_calls(fused_value_and_grad, q, k, v) == (2 if one_kernel else 3)  # forward + backward kernel(s)
    fused, fused_grads = jax.jit(fused_value_and_grad)(q, k, v)
    ref, ref_grads = jax.jit(jax.value_and_grad(functools.partial(loss, _reference), (0, 1, 2)))(q, k, v)
    context = jax.jit(functools.partial(fused_fn, keep_scale=scale))(q, k, v, padding_mask, keep)
    np.testing.assert_allclose(context, _reference(q, k, v, padding_mask, keep, scale), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(fused, ref, rtol=1e-5)
    for name, a, b in zip("qkv", fused_grads, ref_grads, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6 * np.abs(b).max(), rtol=1e-5, err_msg=f"d{name}")
        assert np.abs(b).max() > 0.1  # the comparison is not between zeros


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_at_bert_sizes_one_backward_kernel_gives_the_two_kernels_gradients(dtype):
    """At length 128 and head size 64 (every BERT-base preset's) the backward pass is one kernel by default, walking
    the queries 16 at a time; its gradients are the two kernels' (float32: to rounding; bf16: within one bf16 step of
    the values, the sums being taken in another order) and the XLA path's."""
    static = fused_attention._settings(128, 128, 64, keep_scale(0.1), interpret=True)
    assert static.one_backward_kernel == (16, 8) and (static.rows, static.warps) == (64, 4)
    q, k, v, cotangent, padding_mask = _inputs(1, 128, 1, 64, dtype)
    keep = _keep_mask(jax.random.key(3), (1, 1, 128, 128), 0.1)

    def grads(attention, kernels):
        def loss(q, k, v):
            out = attention(q, k, v, padding_mask, keep, keep_scale(0.1))
            return jnp.sum(out.astype(jnp.float32) * cotangent.astype(jnp.float32))

        assert _kernel_calls(jax.grad(loss, (0, 1, 2)), q, k, v) == kernels  # forward + backward kernel(s)
        return [np.asarray(g, np.float32) for g in jax.jit(jax.grad(loss, (0, 1, 2)))(q, k, v)]

    one = grads(fused_attention.attention, 2)  # the defaults
    two = grads(functools.partial(fused_attention.attention, one_backward_kernel=False), 3)
    ref = grads(_reference, 0)
    for name, a, b, c in zip("qkv", one, two, ref, strict=True):
        tolerance = (1e-5 if dtype == jnp.float32 else 1e-2) * np.abs(c).max()
        np.testing.assert_allclose(a, b, atol=tolerance, err_msg=f"d{name}, one kernel against two")
        np.testing.assert_allclose(a, c, atol=tolerance, err_msg=f"d{name}, one kernel against XLA")
        assert np.abs(c).max() > 0.1


def test_the_backward_kernels_defaults():
    """One backward kernel up to 128 padded tokens at the head sizes checked for register spills (32 and 64), 16
    queries a step on 8 warps; two kernels elsewhere. block_rows and warps, when given, apply to it too."""
    settings = functools.partial(fused_attention._settings, keep_scale=1.0, interpret=False)
    assert settings(128, 128, 64).one_backward_kernel == (16, 8)
    assert settings(100, 128, 32).one_backward_kernel == (16, 8)
    assert settings(12, 16, 64).one_backward_kernel == (16, 8)
    assert settings(129, 256, 64).one_backward_kernel is None
    assert settings(128, 128, 16).one_backward_kernel is None
    assert settings(128, 128, 128).one_backward_kernel is None
    assert settings(128, 128, 16, one_backward_kernel=True).one_backward_kernel == (16, 8)
    assert settings(128, 128, 64, one_backward_kernel=False).one_backward_kernel is None
    given = settings(128, 128, 64, block_rows=32, warps=4)
    assert given.one_backward_kernel == (32, 4) and (given.rows, given.warps) == (32, 4)


def test_hidden_keys_get_no_probability_or_gradient():
    """A key the padding mask hides changes neither the output nor gets a gradient (at length 24, computed as 32)."""
    q, k, v, cotangent, padding_mask = _inputs(1, 24, 2, 16)
    padding_mask = padding_mask.at[0, 3].set(0)

    def loss(k, v):
        return jnp.sum(fused_attention.attention(q, k, v, padding_mask) * cotangent)

    dk, dv = jax.jit(jax.grad(loss, (0, 1)))(k, v)
    hidden = ~np.asarray(padding_mask[0], bool)
    assert hidden.sum() == 7
    np.testing.assert_array_equal(dk[0, hidden], 0.0)
    np.testing.assert_array_equal(dv[0, hidden], 0.0)
    changed = v.at[0, 3].set(100.0)
    np.testing.assert_array_equal(
        fused_attention.attention(q, k, changed, padding_mask), fused_attention.attention(q, k, v, padding_mask)
    )


def test_bfloat16_inputs_give_a_bfloat16_context_close_to_the_xla_path():
    q, k, v, _, padding_mask = _inputs(2, 32, 2, 16, jnp.bfloat16)
    keep = _keep_mask(jax.random.key(1), (2, 2, 32, 32), 0.1)
    fused = fused_attention.attention(q, k, v, padding_mask, keep, keep_scale(0.1))
    assert fused.dtype == jnp.bfloat16
    ref = _reference(q, k, v, padding_mask, keep, keep_scale(0.1))
    np.testing.assert_allclose(np.asarray(fused, np.float32), np.asarray(ref, np.float32), atol=2e-2, rtol=2e-2)


def test_supported_shapes():
    assert fused_attention.supports(128, 64) and fused_attention.supports(512, 32) and fused_attention.supports(7, 16)
    assert not fused_attention.supports(513, 64)  # longer than BERT's position table
    assert not fused_attention.supports(128, 48)  # Triton needs power-of-two blocks
    assert not fused_attention.supports(128, 8)  # the matmul units' minimum
    with pytest.raises(ValueError, match="power-of-two head_dim"):
        fused_attention.attention(*(jnp.zeros((1, 8, 1, 24)),) * 3, jnp.ones((1, 8)))
    with pytest.raises(ValueError, match=r"q, k, v packed as \[B, L, 3, H, D\].*got \(1, 8, 2, 1, 16\)"):
        fused_attention.attention_packed(jnp.zeros((1, 8, 2, 1, 16)), jnp.ones((1, 8)))  # k and v only
    with pytest.raises(ValueError, match="block_rows must be a power of two from 16 to 32 for length 20, got 24"):
        fused_attention.attention(*(jnp.zeros((1, 20, 1, 16)),) * 3, jnp.ones((1, 20)), block_rows=24)
    with pytest.raises(ValueError, match="warps must be a power of two from 1 to 16"):
        fused_attention.attention(*(jnp.zeros((1, 20, 1, 16)),) * 3, jnp.ones((1, 20)), warps=6)


TINY_BERT = BertConfig(vocabulary_size=101, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=24,
                       max_sequence_length=24, dropout=0.2)  # fmt: skip
TINY_DISTIL = DistilBertConfig(vocabulary_size=101, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=24,
                               max_sequence_length=24, dropout=0.2)  # fmt: skip


def _classifier(model_cls, cfg, head, kernel: str, params=None):
    """(logits(params, train), params) of a whole classifier with the given attention kernel; train uses dropout."""
    inputs = dummy_inputs(cfg, batch_size=2, length=12)
    inputs = dict(inputs, token_ids=jnp.arange(24, dtype=jnp.int32).reshape(2, 12) % 101)
    inputs["padding_mask"] = inputs["padding_mask"].at[1, 9:].set(0)
    model = model_cls(dataclasses.replace(cfg, attention_kernel=kernel), head)
    params = params or nn.unbox(model.init(jax.random.key(0), inputs)["params"])

    def logits(params, train=True):
        return model.apply({"params": params}, inputs, train=train, rngs={"dropout": jax.random.key(5)})

    return logits, params


def test_distil_bert_applies_the_same_dropout_masks_with_either_kernel():
    fused_logits, params = _classifier(DistilBertClassifier, TINY_DISTIL, DistilBertHeadConfig(3), "pallas")
    xla_logits, _ = _classifier(DistilBertClassifier, TINY_DISTIL, DistilBertHeadConfig(3), "xla", params)
    fused = jax.jit(fused_logits)(params)
    np.testing.assert_allclose(fused, jax.jit(xla_logits)(params), rtol=1e-5, atol=1e-6)
    assert not np.allclose(fused, jax.jit(fused_logits, static_argnums=1)(params, False))  # dropout is on


def test_on_cpu_the_interpreter_warns():
    q, k, v, _, padding_mask = _inputs(1, 16, 1, 16)
    warning = r"Pallas's interpreter on CPU, many times slower .* use 'xla' or the default 'auto' on CPU"
    with pytest.warns(UserWarning, match=warning):
        fused_attention.attention(q, k, v, padding_mask)


def test_an_unknown_or_missing_attention_kernel_is_rejected():
    with pytest.raises(ValueError, match="attention_kernel='triton' is not supported; use one of"):
        dataclasses.replace(TINY_BERT, attention_kernel="triton")
    with pytest.raises(ValueError, match=r"a config needs .*attention_kernel .*got False and None"):
        dataclasses.replace(TINY_BERT, attention_kernel=None)  # None means "keep" in from_preset, not in a config


@pytest.mark.parametrize(
    "length, head_dim, dtype, dropout, kernels",
    [(128, 64, jnp.bfloat16, True, 2), (128, 32, jnp.bfloat16, False, 2), (512, 64, jnp.bfloat16, False, 3),
     (16, 16, jnp.float32, True, 3)],
)  # fmt: skip
def test_the_kernels_lower_to_triton_for_a_cuda_gpu(length, head_dim, dtype, dropout, kernels):
    """Cross-lowering for CUDA on this CPU host runs Pallas's Triton lowering of every kernel: an op without a Triton
    rule or a block shape Triton cannot take fails here rather than on a GPU (compiling the Triton IR needs one)."""
    static = fused_attention._settings(length, length, head_dim, keep_scale(0.1), interpret=False)  # the defaults
    qkv = jax.ShapeDtypeStruct((2, length, 3, 12, head_dim), dtype)  # q, k, v packed
    codes = jax.ShapeDtypeStruct((2, length), jnp.int32)
    keep = jax.ShapeDtypeStruct((2, 12, length, length), jnp.int8) if dropout else None

    def grads(qkv, codes, keep):
        def loss(qkv):
            return jnp.sum(fused_attention._attention(qkv, codes, keep, static).astype(jnp.float32))

        return jax.grad(loss)(qkv)

    lowered = jax.jit(grads).trace(qkv, codes, keep).lower(lowering_platforms=("cuda",)).as_text()
    assert lowered.count("__gpu$xla.gpu.triton") == kernels  # forward, then dq + dk + dv or dq and dk + dv


def _fit_on_a_mesh(kernel: str):
    """One fit step of a tiny classifier data-parallel over 4 x 2 devices; its history, params and lowered step."""
    # one head of 32: the backward pass is one kernel
    backbone = flaxbert.BertBackbone(vocabulary_size=101, num_layers=2, num_heads=1, hidden_dim=32, intermediate_dim=24,
                                     max_sequence_length=24, attention_kernel=kernel)  # fmt: skip
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=3)
    classifier.compile(optimizer=optax.sgd(0.1), mesh=(4, 2))
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 101, (8, 12)).astype(np.int32), "segment_ids": np.zeros((8, 12), np.int32),
         "padding_mask": (np.arange(12) < rng.integers(6, 13, (8, 1))).astype(np.int32)}  # fmt: skip
    y = rng.integers(0, 3, 8)
    history = classifier.fit(x, y, batch_size=8, epochs=1, verbose=0)
    (train_fn, create_state), _, _ = classifier._steps("train", True)
    batch = {"inputs": x, "label": y.astype(np.int32), "weight": np.ones(8, np.float32), "mask": np.ones(8, np.float32)}
    batch = jax.device_put(batch, batch_sharding(classifier.mesh))
    seed = programs.seed_array(0, classifier.mesh)
    totals = programs.zero_totals(classifier.mesh)
    lowered = train_fn.lower(create_state(classifier.params), totals, batch, seed).as_text()
    return history, classifier.params, lowered


def test_on_a_mesh_each_device_runs_the_kernels_on_its_own_rows():
    """A whole BERT classifier's train step (dropout on) gives the XLA path's loss and updated params; under fit's
    4 x 2 mesh the kernels run in a shard_map over the batch (forward and backward of the first layer: two manual
    regions, the backward pass one kernel at head size 32; the last layer computes [CLS] alone, one query row, with
    XLA's ops)."""
    (fused_history, fused_params, lowered), (xla_history, xla_params, _) = map(_fit_on_a_mesh, ("pallas", "xla"))
    assert lowered.count("sdy.manual_computation") == 2
    np.testing.assert_allclose(fused_history.history["loss"], xla_history.history["loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(fused_params), jax.tree.leaves(xla_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
