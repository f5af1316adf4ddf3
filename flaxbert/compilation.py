"""Opt-in persistent XLA compilation cache: a second process that builds the same steps loads them from disk."""

from __future__ import annotations

import os
import pathlib

import jax

DEFAULT_DIR = pathlib.Path("~/.cache/flaxbert/jax")


def enable_compilation_cache(path=None, *, min_compile_time_s: float = 1.0) -> pathlib.Path:
    """Turns on jax's persistent compilation cache for this process and returns its directory.

    Call it once, before the first step compiles (train.py and the benchmarks call it at start-up). Programs that took
    at least `min_compile_time_s` to compile are written to `path`; later processes with the same program, jax version
    and device load them instead of compiling (a BERT-base train step: tens of seconds on GPU).

    Args:
        path: the cache directory; default `$FLAXBERT_COMPILATION_CACHE`, else `~/.cache/flaxbert/jax`.
        min_compile_time_s: compiles faster than this are not cached.
    """
    path = pathlib.Path(path or os.environ.get("FLAXBERT_COMPILATION_CACHE") or DEFAULT_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)
    return path
