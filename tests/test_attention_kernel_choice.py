"""`attention_kernel="auto"`, the default: flaxbert's Pallas kernels where they were measured faster than XLA's ops (a
recent NVIDIA GPU computing in 16 bits), XLA's ops everywhere else."""

from __future__ import annotations

import dataclasses
import functools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from flaxbert.models import BertClassifier, BertConfig, BertHeadConfig, DistilBertConfig, fused_attention, layers
from flaxbert.models.abstract import dummy_inputs
from flaxbert.models.target_device import target_device
from flaxbert.parallel import make_mesh

TINY = BertConfig(vocabulary_size=101, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=24,
                  max_sequence_length=24, dropout=0.2)  # fmt: skip


def _gpu(capability: str, version: str = "cuda 13.0; cudnn 9.10"):
    return types.SimpleNamespace(platform="gpu", compute_capability=capability,
                                 client=types.SimpleNamespace(platform_version=version))  # fmt: skip


H200 = _gpu("9.0")


def test_auto_is_the_default_of_both_configs():
    assert TINY.attention_kernel == "auto"
    assert DistilBertConfig(vocabulary_size=9, num_layers=1, num_heads=1, hidden_dim=8, intermediate_dim=8)\
        .attention_kernel == "auto"  # fmt: skip


def test_auto_picks_the_pallas_kernels_on_a_recent_nvidia_gpu_in_16_bits_at_the_measured_sizes():
    assert layers.auto_attention_kernel(jnp.bfloat16, 128, 64, H200) == "pallas"  # as measured (bert_base)
    assert layers.auto_attention_kernel("float16", 128, 64, _gpu("8.0")) == "pallas"  # A100
    assert layers.auto_attention_kernel("bfloat16", 16, 32, _gpu("10.0")) == "pallas"  # a short bucket, MiniLM's heads
    assert layers.auto_attention_kernel("float32", 128, 64, H200) == "xla"  # measured in bfloat16 only
    assert layers.auto_attention_kernel("bfloat16", 128, 64, _gpu("7.0")) == "xla"  # V100: no Triton bfloat16 dots
    assert layers.auto_attention_kernel("bfloat16", 256, 64, H200) == "xla"  # longer than measured
    assert layers.auto_attention_kernel("bfloat16", 128, 128, H200) == "xla"  # larger heads than measured
    assert layers.auto_attention_kernel("bfloat16", 128, 24, H200) == "xla"  # head size not a power of two
    rocm = _gpu("gfx90a", version="rocm 6.3")
    assert layers.auto_attention_kernel("bfloat16", 128, 64, rocm) == "xla"
    assert layers.auto_attention_kernel("bfloat16", 128, 64, types.SimpleNamespace(platform="tpu")) == "xla"
    assert layers.auto_attention_kernel("bfloat16", 128, 64, jax.devices("cpu")[0]) == "xla"


def test_auto_decides_for_the_device_the_program_runs_on(monkeypatch):
    """The mesh a step is traced under, else jax's default device: a CPU mesh (or `jax.default_device("cpu")`) on a
    GPU host must not get the GPU kernels, nor cuDNN's, nor the kernels' Triton lowering when forced."""
    cpu_mesh = make_mesh().abstract_mesh  # this host's devices: CPUs
    monkeypatch.setattr(jax, "devices", lambda *args: [H200])  # as on a GPU host
    assert target_device() is H200 and layers.cudnn_applies(jnp.bfloat16, 64, 128)
    with jax.sharding.use_abstract_mesh(cpu_mesh):
        assert target_device().platform == "cpu" and not layers.cudnn_applies(jnp.bfloat16, 64, 128)
    with jax.default_device("cpu"):
        assert target_device().platform == "cpu"
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        assert target_device().platform == "cpu"


def _logits(kernel: str, dtype: str = "float32", abstract: bool = False, **changes):
    """The jitted logits of a tiny classifier with `kernel`, and its params (their shapes alone with `abstract`)."""
    cfg = dataclasses.replace(TINY, attention_kernel=kernel, dtype=dtype, **changes)
    inputs = dummy_inputs(cfg, batch_size=2, length=16)
    inputs = dict(inputs, token_ids=jnp.arange(32, dtype=jnp.int32).reshape(2, 16) % 101)
    inputs["padding_mask"] = inputs["padding_mask"].at[1, 10:].set(0)
    model = BertClassifier(cfg, BertHeadConfig(3, dropout=0.2))
    init = lambda: nn.unbox(model.init(jax.random.key(0), inputs)["params"])  # noqa: E731
    params = jax.eval_shape(init) if abstract else init()

    @functools.partial(jax.jit, static_argnums=1)
    def logits(params, train: bool):
        return model.apply({"params": params}, inputs, train=train, rngs={"dropout": jax.random.key(5)})

    return logits, params


def test_on_this_cpu_auto_is_the_xla_path_bit_for_bit():
    """The same programs, not just close numbers: "auto" lowers to the "xla" model's StableHLO, training and eval."""
    auto, params = _logits("auto", "bfloat16", abstract=True)  # 16 bits, but no GPU
    xla, _ = _logits("xla", "bfloat16", abstract=True)
    for train in (False, True):
        assert auto.lower(params, train).as_text() == xla.lower(params, train).as_text()


@pytest.mark.filterwarnings("ignore:attention_kernel='pallas' runs its GPU kernels")  # interpreted here on purpose
def test_where_auto_picks_pallas_the_model_runs_the_kernels(monkeypatch, request):
    calls = []
    kernels = fused_attention.attention_packed

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return kernels(*args, **kwargs)

    monkeypatch.setattr(fused_attention, "attention_packed", spy)
    picked, rule = [], layers.auto_attention_kernel

    def on_an_h200(dtype, length, head_dim, device):
        picked.append(device)
        return rule(dtype, length, head_dim, H200)

    monkeypatch.setattr(layers, "auto_attention_kernel", on_an_h200)
    # The encoder layer's program is cached per config: this test's must be traced with the stand-in device, and no
    # later test in this process may get the trace it leaves (a config no other test uses, and the cache cleared).
    layers._layer_apply.cache_clear()
    request.addfinalizer(layers._layer_apply.cache_clear)
    auto, params = _logits("auto", "bfloat16", abstract=True, intermediate_dim=40)
    calls.clear()
    auto.lower(params, True)  # traced, not run: the kernels' numbers are tests/test_fused_attention.py's
    # every layer but the last (a classifier runs its last layer for [CLS] alone, with XLA's ops)
    assert calls == [(2, 16, 3, 2, 16)] * (TINY.num_layers - 1)  # q, k, v packed and picked[-1] == jax.devices()[0]


def test_flaxbert_pallas_kernels_0_turns_off_every_kernel_flaxbert_picks(monkeypatch):
    """$FLAXBERT_PALLAS_KERNELS=0: XLA's operations where flaxbert's Pallas kernels would run (attention, dropout
    masks, LayerNorm backward), the way out where a jax version cannot lower them; a value other than 0 or 1 is
    refused with both."""
    from flaxbert.models import dropout_kernel, layer_norm_kernel

    def picks():
        attention = layers.auto_attention_kernel("bfloat16", 128, 64, H200)
        masks = dropout_kernel.applies(H200, [((8, 2, 6, 6), None)])
        return attention, masks, layer_norm_kernel.applies(H200, (32, 768))

    monkeypatch.delenv("FLAXBERT_PALLAS_KERNELS", raising=False)
    assert picks() == ("pallas", True, True)
    monkeypatch.setenv("FLAXBERT_PALLAS_KERNELS", "1")
    assert picks() == ("pallas", True, True)
    monkeypatch.setenv("FLAXBERT_PALLAS_KERNELS", "0")
    assert picks() == ("xla", False, False)
    monkeypatch.setenv("FLAXBERT_PALLAS_KERNELS", "off")
    with pytest.raises(ValueError, match=r"\$FLAXBERT_PALLAS_KERNELS='off': set it to 1 \(the default.*or 0 \(XLA's"):
        picks()
