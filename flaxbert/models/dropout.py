"""Dropout whose masks cost a quarter of the threefry work of `flax.linen.Dropout`'s.

`nn.Dropout` draws its mask with `jax.random.bernoulli`, which (with jax's partitionable threefry, the default) runs one
threefry-2x32 block per element and keeps 32 of its 64 output bits. Here one block yields four 16-bit draws, and an
element is dropped when its draw is below `round(rate * 2**16)`. The drop probability is therefore `rate` rounded to a
multiple of 2**-16 (0.1 -> 0.1000061), and kept values are scaled by the exact inverse of the keep probability, so the
layer's output is unbiased. Masks are a pure function of (key, element index): the same on any mesh, since the block
counters are iotas over the array's global shape.

XLA:CPU, bert_tiny batch 32: the step's 4.7M mask draws take 8.5-9 ms instead of 20-24 ms (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend.random import threefry2x32_p

_LEVELS = 1 << 16  # a draw is a uniform integer in [0, 2**16)
_DRAWS_PER_BLOCK = 4  # a threefry-2x32 block gives two uint32 words = four 16-bit draws


def drop_threshold(rate: float) -> int:
    """The draws below which an element is dropped: `rate` in units of 2**-16, at most 2**16 - 1."""
    return min(round(rate * _LEVELS), _LEVELS - 1)


def keep_scale(rate: float) -> float:
    """What kept values are multiplied by: the inverse of the keep probability, `1 - drop_threshold(rate) / 2**16`."""
    return _LEVELS / (_LEVELS - drop_threshold(rate))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """A boolean array of `shape` (at least 1-D), True where an element is kept: independent draws, each dropped
    with probability `drop_threshold(rate) / 2**16`.

    `key` is any jax PRNG key, typed or raw. A threefry key's two words key the blocks, as in `jax.random.bits`;
    other implementations' keys are first turned into two words by drawing them.
    """
    blocks_shape = (*shape[:-1], -(-shape[-1] // _DRAWS_PER_BLOCK))  # the last axis, in blocks of 4 draws
    if math.prod(blocks_shape) >= 2**32:
        raise ValueError(f"dropout over an array of shape {shape} needs more than 2**32 threefry blocks.")
    k1, k2 = _threefry_key(key)
    counter = jnp.zeros(blocks_shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(blocks_shape))):  # the block's flat index in the global array
        counter = counter + jax.lax.broadcasted_iota(jnp.uint32, blocks_shape, axis) * jnp.uint32(stride)
        stride *= blocks_shape[axis]
    words = threefry2x32_p.bind(k1, k2, jnp.zeros(blocks_shape, jnp.uint32), counter)
    words = jnp.stack(words, axis=-1)  # [..., blocks, 2] uint32
    draws = jax.lax.bitcast_convert_type(words, jnp.uint16)  # [..., blocks, 2, 2] uint16
    draws = draws.reshape(*shape[:-1], -1)[..., : shape[-1]]
    return draws >= jnp.uint16(drop_threshold(rate))


def _threefry_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if data.shape != (2,):  # not a threefry key (e.g. "rbg"): draw two words from it
        data = jax.random.bits(key, (2,), jnp.uint32)
    return data[0], data[1]


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout(rate)(x, deterministic=...)`, drawing from the "dropout" rng stream."""

    rate: float

    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or drop_threshold(self.rate) == 0:
            return x
        scale = jnp.asarray(keep_scale(self.rate), x.dtype)
        return jnp.where(self.keep(x.shape), x * scale, jnp.zeros((), x.dtype))

    def keep(self, shape: tuple[int, ...]) -> jax.Array:
        """The mask `__call__` would apply to an array of `shape` (for kernels that apply it themselves)."""
        return keep_mask(self.make_rng("dropout"), shape, self.rate)
