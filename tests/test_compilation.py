import jax
import jax.numpy as jnp

import flaxbert


def test_enable_compilation_cache_writes_compiled_programs(tmp_path):
    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    try:
        path = flaxbert.enable_compilation_cache(tmp_path / "cache", min_compile_time_s=0.0)
        assert path == tmp_path / "cache" and path.is_dir()
        jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
        assert any(path.iterdir())
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
