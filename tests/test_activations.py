"""The GELUs: jax.nn.gelu's outputs bit for bit, its gradients to rounding, only the input kept for the backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxbert.models.activations import ACTIVATION_FNS, gelu


@pytest.mark.parametrize("approximate", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gelu_matches_jax_and_its_float32_gradient(approximate, dtype):
    x = (4.0 * jax.random.normal(jax.random.key(0), (512,))).astype(dtype)
    np.testing.assert_array_equal(np.asarray(gelu(x, approximate), np.float32),
                                  np.asarray(jax.nn.gelu(x, approximate=approximate), np.float32))  # fmt: skip
    weights = jax.random.normal(jax.random.key(1), x.shape)
    # differentiated, the forward value is the same GELU's too (a custom_vjp computes it apart, as training does)
    value, _ = jax.vjp(lambda x: gelu(x, approximate), x)
    np.testing.assert_array_equal(np.asarray(value, np.float32),
                                  np.asarray(jax.nn.gelu(x, approximate=approximate), np.float32))  # fmt: skip
    got = jax.grad(lambda x: jnp.sum(gelu(x, approximate).astype(jnp.float32) * weights))(x)
    # the reference: jax's GELU differentiated in float32, rounded once to the input's dtype as ours is
    wide = jax.grad(lambda x: jnp.sum(jax.nn.gelu(x, approximate=approximate) * weights))(x.astype(jnp.float32))
    assert got.dtype == dtype
    tolerance = 2e-6 if dtype == jnp.float32 else 8e-3
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(wide.astype(dtype), np.float32),
                               rtol=tolerance, atol=tolerance)  # fmt: skip


def test_the_config_names_map_to_the_right_forms():
    x = jnp.linspace(-3.0, 3.0, 13)
    np.testing.assert_array_equal(ACTIVATION_FNS["gelu"](x), jax.nn.gelu(x, approximate=False))
    np.testing.assert_array_equal(ACTIVATION_FNS["gelu_approximate"](x), jax.nn.gelu(x, approximate=True))
    np.testing.assert_array_equal(ACTIVATION_FNS["relu"](x), jax.nn.relu(x))


def test_the_backward_pass_keeps_the_input_alone():
    x = jnp.ones((2, 8, 32), jnp.bfloat16)
    _, vjp = jax.vjp(lambda x: gelu(x, True), x)
    assert [(leaf.dtype.name, leaf.shape) for leaf in jax.tree.leaves(vjp) if leaf.ndim == 3] == [
        ("bfloat16", (2, 8, 32))
    ]
