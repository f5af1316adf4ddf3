"""A digest of every array a checkpoint saves, so that a restore can tell damaged bytes from trained ones.

Orbax checksums a checkpoint's shard index (crc32c) but not the array data: a byte flipped in a data file can decode
to other numbers, NaN among them, and a resumed run trained on from those without a word. An array's digest is the
sum, modulo 2**32, of its bit patterns as unsigned words, each times an odd weight of its position: a change to any
one word changes it (an odd weight is invertible modulo 2**32), and other damage with probability 1 - 2**-32. It runs
on the devices where the arrays live (one small program over global positions, so neither the mesh nor the process
count changes it) and brings home one word per array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_GOLDEN = np.uint32(2654435761)  # Knuth's multiplicative hash constant: spreads consecutive positions' weights


def digests(leaves: list) -> list[tuple[str, int]]:
    """(dtype, digest) of each array in `leaves`."""
    values = jax.device_get(_digests(leaves)) if leaves else []
    return [(str(leaf.dtype), int(value)) for leaf, value in zip(leaves, values, strict=True)]


@jax.jit
def _digests(leaves: list) -> list:
    return [_digest(leaf) for leaf in leaves]


def _digest(leaf: jax.Array) -> jax.Array:
    words = _words(leaf)
    weights = jnp.arange(words.size, dtype=jnp.uint32) * _GOLDEN | np.uint32(1)
    return jnp.sum(words * weights, dtype=jnp.uint32)


def _words(leaf: jax.Array) -> jax.Array:
    """A leaf's bits as a flat uint32 vector: 1- and 2-byte values widened, 8-byte ones split in two words."""
    if leaf.dtype == jnp.bool_:
        return leaf.astype(jnp.uint32).ravel()
    size = jnp.dtype(leaf.dtype).itemsize
    if size < 4:
        narrow = jax.lax.bitcast_convert_type(leaf, {1: jnp.uint8, 2: jnp.uint16}[size])
        return narrow.astype(jnp.uint32).ravel()
    return jax.lax.bitcast_convert_type(leaf, jnp.uint32).ravel()
