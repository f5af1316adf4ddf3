"""Dropout whose masks cost a quarter of the threefry work of `flax.linen.Dropout`'s.

`nn.Dropout` draws its mask with `jax.random.bernoulli`, which (with jax's partitionable threefry, the default) runs one
threefry-2x32 block per element and keeps 32 of its 64 output bits. Here one block yields four 16-bit draws, and an
element is dropped when its draw is below `round(rate * 2**16)`. The drop probability is therefore `rate` rounded to a
multiple of 2**-16 (0.1 -> 0.1000061), and kept values are scaled by the exact inverse of the keep probability, so the
layer's output is unbiased. Masks are a pure function of (key, element index): the same on any mesh, since the block
counters are iotas over the array's global shape. The index can be taken in a larger frame (`within`): the encoder
draws its masks in a `max_sequence_length` frame, so a position's mask does not depend on how wide its batch was
padded, and length-bucketed training trains as fixed-length training does.

The cipher is written out here in uint32 arithmetic (`threefry2x32`), bit for bit jax's `threefry2x32_p`: on CPU jax
lowers that primitive to a loop of five passes over whole arrays, each reading and writing every word, where the
written-out rounds fuse with the counters and the comparison into one elementwise kernel. On NVIDIA GPUs the models
draw the same masks with a Pallas kernel instead (`dropout_kernel`, chosen by `dropout_layer`): XLA:GPU takes
seconds to fuse these chains of integer operations. On CPU they pack the keep bits by a reduction
(`keep_bytes_together`'s `packed_by_reduction`), which XLA:CPU does not copy into each of the masks' users.

XLA:CPU, bert_tiny batch 32, packed elementwise (session 13): the step's 4.7M mask draws take 7.5-8.3 ms, against
13.3-14.7 ms with the primitive and 33-37 ms with `jax.random.bernoulli`, and the train step compiles in 3.0-3.2 s
instead of 4.6-5.1 s (`benchmarks/dropout_masks.py`, benchmarks/RESULTS.md). Packed by a reduction (session 37),
the draws take 2.7-3.0 ms against 5.6-6.3 ms packed elementwise in the same run.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_LEVELS = 1 << 16  # a draw is a uniform integer in [0, 2**16)
_DRAWS_PER_BLOCK = 4  # a threefry-2x32 block gives two uint32 words = four 16-bit draws
# Threefry-2x32's rotation distances, four rounds at a time alternating (Salmon et al., SC'11, table 4), and the
# constant its key schedule's third word is made with.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = 0x1BD11BDA


def drop_threshold(rate: float) -> int:
    """The draws below which an element is dropped: `rate` in units of 2**-16, at most 2**16 - 1."""
    return min(round(rate * _LEVELS), _LEVELS - 1)


def keep_scale(rate: float) -> float:
    """What kept values are multiplied by: the inverse of the keep probability, `1 - drop_threshold(rate) / 2**16`."""
    return _LEVELS / (_LEVELS - drop_threshold(rate))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float, within: tuple[int, ...] | None = None) -> jax.Array:
    """A boolean array of `shape` (at least 1-D), True where an element is kept: independent draws, each dropped
    with probability `drop_threshold(rate) / 2**16`.

    `key` is any jax PRNG key, typed or raw. A threefry key's two words key the blocks, as in `jax.random.bits`;
    other implementations' keys are first turned into two words by drawing them.

    `within`: the shape of a larger array whose leading corner (`[:shape[0], :shape[1], ...]`) this one is; the mask
    is then that corner of the larger array's mask, bit for bit, drawn without the rest (a layer that computes only
    its first positions drops what the whole layer would have dropped there; a batch padded to 32 positions gets
    the first 32 of the masks a batch padded to 512 gets).

    Block `j` of row `i` (the index along the first axis; 1-D arrays are one row) is the threefry block of the
    counter words `(i, j)`, where `j` counts blocks of four draws along the row's other axes, flattened.
    """
    return keep_bytes(key, shape, rate, within) != 0


def keep_bytes(key: jax.Array, shape: tuple[int, ...], rate: float, within: tuple[int, ...] | None = None) -> jax.Array:
    """`keep_mask` as int8, 1 where kept, 0 where dropped: one byte an element, as a kernel reads it.

    Each threefry block's four keep bits are written as the four bytes of one uint32 and the array of those words is
    reinterpreted as bytes: the program computes each block once and writes one byte per element, which its users
    read as they are (a bool array built from four 16-bit draws instead came out of XLA:GPU as the draws, 2 bytes an
    element, converted to int8 by one more kernel for the attention kernels). Signed bytes: XLA:GPU's Triton fusions
    take int8 inputs and not uint8 ones, so a block's LayerNorm fusion can apply its branch's mask itself
    (`layer_norm.residual_layer_norm`)."""
    return keep_bytes_together(key, [(shape, within)], rate)[0]


def keep_bytes_together(key: jax.Array, masks: list[tuple[tuple[int, ...], tuple[int, ...] | None]], rate: float,
                        packed_by_reduction: bool = False) -> list:  # fmt: skip
    """`keep_bytes` of several masks, each `(shape, within)`, drawn by one threefry call over all their blocks.

    A compiler sees one cipher (~130 operations) instead of one per mask: XLA:GPU's fusion passes take time with the
    length of these chains, and a BERT-base train step's 37 masks were ~15 s of its ~21 s compile (benchmarks/
    RESULTS.md, session 31; on NVIDIA GPUs the layers draw theirs with `dropout_kernel`, the same masks). Mask `s` of
    `n` is keyed by `key` with the row word `row * n + s` (for one mask, `row`: `keep_bytes`' draws), so the masks are
    independent of each other, and each keeps `keep_bytes`' properties: a pure function of the element's index in its
    `within` frame, whose leading corners it is.

    `packed_by_reduction`: the same masks, each block's keep bytes gathered by a reduction over its four draws
    (`packed_keep_reduced`). XLA:CPU copies a chain of elementwise operations into every fusion that reads it, and a
    train step reads a mask in ~7 (forward, backward, gradient reductions), so it compiled each cipher ~7 times; a
    reduction it does not copy, so the cipher is compiled and run once a call, its words kept in memory. The models
    ask for it on CPU: BERT-base's train step compiled in 3.9-5.0 s instead of 5.8-8.2 s, and a bert_tiny layer's
    three masks at batch 32 are drawn in 1.7 ms instead of 5.5 (benchmarks/RESULTS.md, session 37). Elsewhere the
    lanes it adds would cost (a TPU pads a minor axis of 4 to 128)."""
    k1, k2 = threefry_key(key)
    rows, counters, layouts = [], [], []
    for index, (shape, within) in enumerate(masks):
        layout = block_layout(tuple(shape), tuple(shape) if within is None else tuple(within))
        row, counter = _block_counters(layout)
        rows.append(lax.add(lax.mul(row, np.uint32(len(masks))), np.uint32(index)).reshape(-1))
        counters.append(counter.reshape(-1))
        layouts.append((tuple(shape), layout.blocks_shape))
    row, counter, threshold = jnp.concatenate(rows), jnp.concatenate(counters), drop_threshold(rate)
    if packed_by_reduction:
        packed = packed_keep_reduced(k1, k2, row, counter, threshold)
    else:
        packed = packed_keep(*threefry2x32(k1, k2, row, counter), threshold)
    out, start = [], 0
    for shape, blocks_shape in layouts:
        size = math.prod(blocks_shape)
        out.append(unpacked(packed[start : start + size].reshape(blocks_shape), shape))
        start += size
    return out


def packed_keep(w0: jax.Array, w1: jax.Array, threshold: int) -> jax.Array:
    """The four keep bits of each threefry block `(w0, w1)` as the four bytes of one uint32, byte c 1 where draw c is
    at least `threshold`. Draws 0-3 of a block are the low and high 16 bits of w0, then of w1 (the words' halves in
    memory order, as a bitcast of the words to uint16 reads them); byte c is in memory order too."""
    threshold = np.uint32(threshold)
    halves = (lax.bitwise_and(w0, np.uint32(0xFFFF)), lax.shift_right_logical(w0, np.uint32(16)),
              lax.bitwise_and(w1, np.uint32(0xFFFF)), lax.shift_right_logical(w1, np.uint32(16)))  # fmt: skip
    packed = None
    for byte, draw in enumerate(halves):
        kept = lax.shift_left(lax.convert_element_type(lax.ge(draw, threshold), jnp.uint32), np.uint32(8 * byte))
        packed = kept if packed is None else lax.bitwise_or(packed, kept)
    return packed


def packed_keep_reduced(k1: jax.Array, k2: jax.Array, row: jax.Array, counter: jax.Array, threshold: int) -> jax.Array:
    """`packed_keep(*threefry2x32(k1, k2, row, counter), threshold)` for 1-D counter words, as a reduction: the
    blocks broadcast over a lane axis of four, lane c takes draw c and shifts its keep bit to byte c, and the lanes
    are OR-ed together. Each lane computes its own draw rather than masking byte c out of `packed_keep`'s whole word:
    that shorter form sent XLA:CPU's algebraic simplifier into a loop (it logged "likely stuck in a circular
    simplification loop" 363 times over a mesh test's compiles)."""
    lanes = (row.shape[0], _DRAWS_PER_BLOCK)
    w0, w1 = threefry2x32(k1, k2, lax.broadcast_in_dim(row, lanes, (0,)), lax.broadcast_in_dim(counter, lanes, (0,)))
    lane = lax.broadcasted_iota(jnp.uint32, lanes, 1)
    word = lax.select(lax.lt(lane, np.uint32(2)), w0, w1)  # draws 0, 1 in w0; 2, 3 in w1
    draw = lax.bitwise_and(lax.shift_right_logical(word, lax.mul(lax.bitwise_and(lane, np.uint32(1)), np.uint32(16))),
                           np.uint32(0xFFFF))  # fmt: skip
    kept = lax.convert_element_type(lax.ge(draw, np.uint32(threshold)), jnp.uint32)
    return lax.reduce(lax.shift_left(kept, lax.mul(lane, np.uint32(8))), np.uint32(0), lax.bitwise_or, (1,))


def unpacked(words: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A mask of `shape` as int8 from its blocks' packed words (`packed_keep`, shaped as `block_layout`'s
    `blocks_shape`): the words reinterpreted as their bytes, which are the elements in order."""
    keep = jax.lax.bitcast_convert_type(words, jnp.int8)  # [..., blocks, 4]
    return keep.reshape(*shape[:-1], keep.shape[-2] * keep.shape[-1])[..., : shape[-1]]  # no -1: sizes may be 0


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """How a mask's elements map to threefry blocks (`keep_mask`): `blocks_shape` is the mask's shape with its last
    axis counted in blocks of four draws; `first` the first axis counted within a row (1, or 0 for a 1-D mask, one
    row); `strides[a]` the counter step of axis `a` (in the `within` frame; unused below `first`)."""

    blocks_shape: tuple[int, ...]
    first: int
    strides: tuple[int, ...]


def block_layout(shape: tuple[int, ...], within: tuple[int, ...]) -> BlockLayout:
    """The `BlockLayout` of a mask of `shape` taken as the leading corner of one of shape `within`."""
    if len(within) != len(shape) or any(n > m for n, m in zip(shape, within, strict=True)):
        raise ValueError(f"a dropout mask of shape {shape} is not a leading corner of shape {within}.")
    blocks_shape = (*shape[:-1], -(-shape[-1] // _DRAWS_PER_BLOCK))  # the last axis, in blocks of 4 draws
    global_blocks = (*within[:-1], -(-within[-1] // _DRAWS_PER_BLOCK))
    first = 1 if len(shape) > 1 else 0  # the first axis of a row (a 1-D array is one row)
    if math.prod(global_blocks[first:]) >= 2**32:
        raise ValueError(f"dropout over an array of shape {within} needs more than 2**32 threefry blocks per row.")
    strides = [0] * len(shape)
    stride = 1
    for axis in reversed(range(first, len(shape))):
        strides[axis] = stride
        stride *= global_blocks[axis]
    return BlockLayout(blocks_shape, first, tuple(strides))


def _block_counters(layout: BlockLayout) -> tuple[jax.Array, jax.Array]:
    """The threefry counter words (row, block in the row) of each block of `layout`."""
    blocks_shape = layout.blocks_shape
    first_axis = jax.lax.broadcasted_iota(jnp.uint32, blocks_shape, 0)
    row = first_axis if layout.first else jnp.zeros(blocks_shape, jnp.uint32)
    counter = jnp.zeros(blocks_shape, jnp.uint32)
    for axis in reversed(range(layout.first, len(blocks_shape))):  # the block's index in its row
        counter = counter + jax.lax.broadcasted_iota(jnp.uint32, blocks_shape, axis) * jnp.uint32(layout.strides[axis])
    return row, counter


def threefry2x32(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds: the block cipher of the words (x0, x1) under the key (k1, k2), all uint32
    (the key words scalars, the blocks any one shape); equal bit for bit to `jax.extend.random.threefry_2x32`.

    In `lax` operations, which trace straight to their primitives (~130 of them a call): with jnp's operators, each
    a jitted function, a mask's trace took 3x as long, the same program (11 ms against 3.5 ms on a 2-core CPU, and a
    BERT train step draws 8 masks)."""
    schedule = (k1, k2, lax.bitwise_xor(lax.bitwise_xor(k1, k2), np.uint32(_KEY_PARITY)))
    x0, x1 = lax.add(x0, schedule[0]), lax.add(x1, schedule[1])
    for group in range(5):  # five groups of four rounds, each group followed by a key injection
        for distance in _ROTATIONS[group % 2]:
            x0 = lax.add(x0, x1)
            rotated = lax.shift_left(x1, np.uint32(distance))
            x1 = lax.bitwise_or(rotated, lax.shift_right_logical(x1, np.uint32(32 - distance)))
            x1 = lax.bitwise_xor(x1, x0)
        x0 = lax.add(x0, schedule[(group + 1) % 3])
        x1 = lax.add(lax.add(x1, schedule[(group + 2) % 3]), np.uint32(group + 1))
    return x0, x1


def threefry_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two uint32 words that key the masks' threefry blocks: a threefry key's own (typed or raw), else two words
    drawn from the key."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not typed and key.dtype != jnp.uint32:
        raise TypeError(
            f"a dropout key must be a jax PRNG key (jax.random.key(seed)) or a raw uint32 one (jax.random.PRNGKey), "
            f"got an array of {key.dtype}."
        )
    data = jax.random.key_data(key) if typed else key
    if data.shape != (2,):  # not a threefry key (e.g. "rbg"): draw two words from it
        data = jax.random.bits(key, (2,), jnp.uint32)
    return data[0], data[1]


def dropped(x: jax.Array, keep: jax.Array | None, rate: float) -> jax.Array:
    """`x` with its elements dropped where `keep` is 0 (or False) and the rest multiplied by `keep_scale(rate)`; None
    keeps `x` as it is."""
    if keep is None:
        return x
    return jnp.where(keep != 0, x * jnp.asarray(keep_scale(rate), x.dtype), jnp.zeros((), x.dtype))
