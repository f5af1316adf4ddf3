"""How flaxbert compiles: the opt-in persistent XLA compilation cache, and per-platform options for its programs."""

from __future__ import annotations

import functools
import os
import pathlib

import jax
import jax.numpy as jnp
from jax.experimental.compilation_cache import compilation_cache

from flaxbert.models.target_device import is_cuda

DEFAULT_DIR = pathlib.Path("~/.cache/flaxbert/jax")


def enable_compilation_cache(path=None, *, min_compile_time_s: float = 0.0) -> pathlib.Path:
    """Turns on jax's persistent compilation cache for this process and returns its directory.

    Call it once, before the first step compiles (train.py and the benchmarks call it at start-up). Programs that took
    at least `min_compile_time_s` to compile are written to `path`; later processes with the same program, jax version
    and device load them instead of compiling (a BERT-base train step: tens of seconds on GPU).

    Every program is cached by default (jax's own default skips those under 1 s): a fit compiles a handful of small
    ones besides its step (the train state, the continued optimizer state, and until session 24 the random init),
    and with jax's threshold every process compiled them again. BERT-base classifier on CPU, warm cache, 3
    interleaved pairs of fresh processes (`python benchmarks/warm_start.py`): XLA's compile-or-load time 2.01 / 2.04
    / 2.23 -> 1.50 / 1.38 / 1.51 s, time to first step 6.21 / 6.36 / 6.75 -> 5.97 / 6.07 / 6.54 s (a GPU compiles
    each small program slower than a CPU does).

    Args:
        path: the cache directory; default `$FLAXBERT_COMPILATION_CACHE`, else `~/.cache/flaxbert/jax`.
        min_compile_time_s: compiles faster than this are not cached.
    """
    path = pathlib.Path(path or os.environ.get("FLAXBERT_COMPILATION_CACHE") or DEFAULT_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)
    # jax opens its cache once, at the first compile; one opened earlier in this process (say from
    # $JAX_COMPILATION_CACHE_DIR) would otherwise keep serving instead of `path`.
    compilation_cache.reset_cache()
    return path


# XLA:CPU (jaxlib 0.10) hands matmuls to YNNPACK and, by default, grows each YNNPACK fusion over the elementwise ops
# and reductions around it. In the encoder's forward pass that swallows a layer's FFN, GELU and LayerNorms into one
# subgraph that runs slower than its parts: compiling inference programs without YNNPACK fusions takes bert_tiny
# predict from ~300 to ~535 examples/s and bert_small from 21 to 30 on a 2-core VM (benchmarks/RESULTS.md). The
# train step is not faster without them, so it keeps XLA's default.
_CPU_INFERENCE_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}

# XLA:GPU on NVIDIA offers every matmul to Triton GEMM fusions as well as cuBLAS, and autotunes between them by
# compiling and timing Triton candidates. With cuBLAS alone (its epilogues take the bias adds) BERT's steps compile
# faster and run faster: bert_base bfloat16 batch 32 train step on an H200 (jax 0.11.2, session 23,
# benchmarks/gpu_kernel_profile.py under XLA_FLAGS), first step with its cold compile 30.0 -> 18.9 s, step 9.34 ->
# 8.74 ms; across runs, not A/B'd: batch 256 5,002 -> 5,401 examples/s, predict 20,023 -> 23,679 (RESULTS.md).
# Turning autotuning off instead left Triton's matmuls in with untuned tiles: 128 ms a step.
_CUDA_OPTIONS = {"xla_gpu_enable_triton_gemm": False}

_OPTIONS = {
    ("cpu", "inference"): _CPU_INFERENCE_OPTIONS,
    ("cuda", "train"): _CUDA_OPTIONS,
    ("cuda", "inference"): _CUDA_OPTIONS,
}


@functools.cache
def _accepted(platform: str, options: tuple[tuple[str, object], ...]) -> bool:
    """Whether this jaxlib's compiler for `platform` knows every option (the option names change between versions)."""
    probe = jax.device_put(jnp.zeros((), jnp.float32), jax.devices(platform)[0])  # compile for that platform
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(probe).compile()
    except Exception:  # an unknown option or an invalid value: compile without them
        return False
    return True


def _target(device) -> str:
    """`device`'s key in `_OPTIONS`: "cuda" for an NVIDIA GPU, else its platform ("cpu", "tpu", a ROCm "gpu")."""
    return "cuda" if is_cuda(device) else device.platform


def _named_in_xla_flags() -> set[str]:
    """The options `$XLA_FLAGS` sets (`--name=value` or `--name`)."""
    return {flag.lstrip("-").split("=")[0] for flag in os.environ.get("XLA_FLAGS", "").split() if flag.startswith("--")}


def _options(mesh, program: str) -> dict | None:
    """flaxbert's options for `program` on `mesh`'s devices, less any that `$XLA_FLAGS` sets: per-program options
    override the environment's, so a user's `XLA_FLAGS=--xla_gpu_enable_triton_gemm=true` would otherwise be ignored."""
    device = mesh.devices.flat[0]
    options = _OPTIONS.get((_target(device), program), {})
    users = _named_in_xla_flags()
    options = {name: value for name, value in options.items() if name not in users}
    if not options or not _accepted(device.platform, tuple(options.items())):
        return None
    return options


def train_compiler_options(mesh) -> dict | None:
    """The compiler options of flaxbert's train steps on `mesh`'s devices (None: XLA's defaults)."""
    return _options(mesh, "train")


def inference_compiler_options(mesh) -> dict | None:
    """The compiler options flaxbert uses for its eval and predict programs on `mesh`'s devices (None: defaults)."""
    return _options(mesh, "inference")
