import functools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

import flaxbert
from flaxbert import compilation
from flaxbert.models import BertClassifier, BertConfig, BertHeadConfig
from flaxbert.parallel import make_mesh
from flaxbert.training import steps


def test_enable_compilation_cache_writes_compiled_programs(tmp_path):
    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    try:
        first = flaxbert.enable_compilation_cache(tmp_path / "first", min_compile_time_s=0.0)
        jax.jit(lambda x: jnp.cos(x) * 5.0 - 2.0)(jnp.arange(5.0)).block_until_ready()  # jax opens this cache
        path = flaxbert.enable_compilation_cache(tmp_path / "cache")
        assert path == tmp_path / "cache" and path.is_dir() and any(first.iterdir())
        jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
        # the second call switched caches, and by default caches a program that compiles in milliseconds
        assert any(path.iterdir())
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        compilation_cache.reset_cache()  # this worker's later compiles use the cache they used before


def test_cpu_inference_options_are_used_and_keep_the_numbers():
    mesh = make_mesh()
    options = compilation.inference_compiler_options(mesh)
    assert options == {"xla_cpu_experimental_ynn_fusion_type": ""}  # this jaxlib knows the option
    cfg = BertConfig(vocabulary_size=97, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)
    model = BertClassifier(cfg, BertHeadConfig(num_classes=3))
    inputs = {"token_ids": jnp.arange(4 * 16).reshape(4, 16) % 97, "segment_ids": jnp.zeros((4, 16), jnp.int32),
              "padding_mask": jnp.ones((4, 16), jnp.int32).at[1, 9:].set(0)}  # fmt: skip
    params = nn.unbox(model.init(jax.random.key(0), inputs)["params"])
    step = functools.partial(steps.predict_step, model=model)
    plain = jax.jit(step)(params, inputs)
    tuned = jax.jit(step, compiler_options=options)(params, inputs)
    np.testing.assert_allclose(tuned, plain, rtol=1e-5, atol=1e-6)
    assert "ynn" in jax.jit(step).lower(params, inputs).compile().as_text()  # default: YNNPACK fusions
    assert "ynn" not in jax.jit(step, compiler_options=options).lower(params, inputs).compile().as_text()


def test_unknown_compiler_options_fall_back_to_the_defaults(monkeypatch):
    unknown = {("cpu", "inference"): {"xla_cpu_no_such_option_in_any_version": "1"}}
    monkeypatch.setattr(compilation, "_OPTIONS", unknown)
    assert compilation.inference_compiler_options(make_mesh()) is None


def test_nvidia_gpu_programs_compile_with_cublas_matmuls_alone(monkeypatch):
    """On an NVIDIA GPU the train, eval and predict programs skip XLA's Triton GEMM candidates (measured there:
    benchmarks/RESULTS.md); a ROCm GPU, a TPU and the CPU's train step keep XLA's defaults, and an option the user's
    $XLA_FLAGS sets is left to it."""
    cuda = types.SimpleNamespace(
        platform="gpu", client=types.SimpleNamespace(platform_version="PJRT C API\ncuda 13000")
    )
    rocm = types.SimpleNamespace(platform="gpu", client=types.SimpleNamespace(platform_version="rocm 70000"))
    assert [compilation._target(d) for d in (cuda, rocm, jax.devices()[0])] == ["cuda", "gpu", "cpu"]
    monkeypatch.setattr(compilation, "_accepted", lambda platform, options: platform == "gpu")  # no GPU here

    def mesh(device):
        return types.SimpleNamespace(devices=np.array([device], dtype=object))

    assert compilation.train_compiler_options(mesh(cuda)) == {"xla_gpu_enable_triton_gemm": False}
    assert compilation.inference_compiler_options(mesh(cuda)) == {"xla_gpu_enable_triton_gemm": False}
    assert compilation.train_compiler_options(mesh(rocm)) is None
    assert compilation.train_compiler_options(mesh(types.SimpleNamespace(platform="tpu"))) is None
    assert compilation.train_compiler_options(make_mesh()) is None
    flags = "--xla_force_host_platform_device_count=8 --xla_gpu_enable_triton_gemm=true"
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert compilation.train_compiler_options(mesh(cuda)) is None
    assert compilation.inference_compiler_options(mesh(cuda)) is None


def test_the_train_step_compiles_with_the_train_options(monkeypatch):
    """Whatever `train_compiler_options` gives reaches XLA: an option no XLA knows fails the train step's compile."""
    import optax

    from flaxbert.models.abstract import dummy_inputs
    from flaxbert.training import programs

    mesh = make_mesh(1, 1, devices=jax.devices()[:1])
    seen = []

    def options(m):
        seen.append(m)
        return {"xla_no_such_option_for_this_test": True}

    monkeypatch.setattr(programs, "train_compiler_options", options)
    cfg = BertConfig(vocabulary_size=97, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32)
    model = BertClassifier(cfg, BertHeadConfig(num_classes=3))
    tx = optax.sgd(0.1)
    _, shardings = programs.state_shardings(model, cfg, tx, mesh)
    train = programs.jit_train_step(model, mesh, shardings, loss_fn=steps.sparse_categorical_crossentropy)
    assert seen == [mesh]
    params = nn.unbox(model.init(jax.random.key(0), dummy_inputs(cfg))["params"])
    state = programs.create_state(params, tx, shardings)
    inputs = {k: np.asarray(v) for k, v in dummy_inputs(cfg).items()}
    rows = len(inputs["token_ids"])
    batch = {"inputs": inputs, "label": np.zeros(rows, np.int32), "weight": np.ones(rows, np.float32),
             "mask": np.ones(rows, np.float32)}  # fmt: skip
    lowered = train.lower(state, programs.zero_totals(mesh), batch, programs.seed_array(0, mesh))
    with pytest.raises(Exception, match="xla_no_such_option_for_this_test"):
        lowered.compile()
