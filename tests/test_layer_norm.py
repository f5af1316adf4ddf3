"""flaxbert's LayerNorm against flax's: the same params and outputs bit for bit, the same gradients to rounding, and
less kept for the backward pass."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxbert.models.layer_norm import LayerNorm


def _flax(dtype):
    return nn.LayerNorm(epsilon=1e-12, dtype=dtype, param_dtype=jnp.float32, use_fast_variance=False)


@pytest.mark.parametrize(
    "x_dtype, dtype",
    [(jnp.float32, jnp.float32), (jnp.bfloat16, jnp.bfloat16), (jnp.float32, jnp.bfloat16)],  # the last: embeddings
)
def test_outputs_match_flax_bit_for_bit_and_gradients_to_rounding(x_dtype, dtype):
    x = (3.0 * jax.random.normal(jax.random.key(0), (3, 5, 24)) + 1.5).astype(x_dtype)
    reference, ours = _flax(dtype), LayerNorm(epsilon=1e-12, dtype=dtype)
    params = reference.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, params)
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
    want, got = reference.apply(params, x), ours.apply(params, x)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))

    weights = jax.random.normal(jax.random.key(3), x.shape)

    def loss(module):
        return lambda p, x: jnp.sum(module.apply(p, x).astype(jnp.float32) * weights)

    want = jax.grad(loss(reference), argnums=(0, 1))(params, x)
    got = jax.grad(loss(ours), argnums=(0, 1))(params, x)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype
        # float32 params' gradients agree to float32 rounding; a bfloat16 input's gradient to one bfloat16 step
        tolerance = 1e-5 if g.dtype == jnp.float32 else 1e-2
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=tolerance, atol=tolerance)


def test_the_backward_pass_keeps_the_input_and_row_statistics_alone():
    x = jnp.ones((2, 4, 16), jnp.bfloat16)
    ours = LayerNorm(epsilon=1e-12, dtype=jnp.bfloat16)
    params = ours.init(jax.random.key(0), x)

    def saved(module):
        _, vjp = jax.vjp(lambda p, x: module.apply(p, x), params, x)
        return sorted((leaf.dtype.name, leaf.shape) for leaf in jax.tree.leaves(vjp) if leaf.ndim == 3)

    # the input [2, 4, 16] in bfloat16, a float32 mean and 1/std per row; flax keeps three float32 [2, 4, 16] arrays
    assert saved(ours) == [("bfloat16", (2, 4, 16)), ("float32", (2, 4, 1)), ("float32", (2, 4, 1))]
    assert [s for s in saved(_flax(jnp.bfloat16)) if s == ("float32", (2, 4, 16))] == [("float32", (2, 4, 16))] * 3
