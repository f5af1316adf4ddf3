"""Dropout masks drawn by a Pallas kernel on NVIDIA GPUs: `dropout.keep_bytes_together`'s masks, bit for bit.

XLA:GPU's fusion pass prices each candidate fusion by walking it, so the threefry cipher, a chain of ~130 integer
operations, costs it ~0.3 s of compile time for every mask draw (a BERT-base train step makes 14). Here the cipher
is a Triton kernel, one call per draw (a layer's three masks together): XLA sees a custom call and compiles nothing of
it. The bert_base bfloat16 train step compiled for an H200 on a 2-core CPU host (no autotuning; benchmarks/
gpu_offline.py, RESULTS.md session 32): 12.7-13.3 -> 9.0-9.3 s at batch 32, 13.8-14.5 -> 10.0-10.6 s at batch 256.
The kernel writes one byte a mask element, as XLA's fusion did, but the forward pass now reads the hidden states'
masks back instead of computing them where it applies them: +0.9% (batch 32) to +1.4% (batch 256) bytes a step,
and 16 more kernels.

A mask is computed as the packed words of `dropout.keep_bytes_together` (each the four keep bytes of one threefry
block), written out as words or as their bytes (`keep_bytes_together`'s `as_bytes`), over the flat index of the
mask's blocks, tiled by a power of two that divides their count (Triton's arrays are powers of two): no
padding to slice off, and Pallas's interpreter (CPU, for the tests) computes exactly what Triton does.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from flaxbert.models import dropout
from flaxbert.models.target_device import mesh_devices, runs_triton_kernels

_TILE = 4096  # words a program computes at most (16K mask bytes)


def applies(device, masks: list[tuple[tuple[int, ...], tuple[int, ...] | None]]) -> bool:
    """Whether the kernel draws these masks in a program for `device` traced under the current mesh: an NVIDIA GPU of
    compute capability 8.0 or later (where the attention kernels run too), and on a multi-device mesh masks whose
    first axis is one batch, which flaxbert splits over every mesh axis (each device draws its own rows)."""
    if not runs_triton_kernels(device) or any(math.prod(shape) == 0 for shape, _ in masks):
        return False  # an empty mask has no tile to compute (XLA's path gives it as it is)
    devices = mesh_devices()
    batches = {shape[0] if len(shape) > 1 else None for shape, _ in masks}
    return devices == 1 or (len(batches) == 1 and None not in batches and batches.pop() % devices == 0)


def keep_bytes_together(key: jax.Array, masks: list[tuple[tuple[int, ...], tuple[int, ...] | None]], rate: float,
                        *, as_bytes: bool = False, interpret: bool = False) -> list[jax.Array]:  # fmt: skip
    """`dropout.keep_bytes_together(key, masks, rate)`, all the masks by one kernel call. `interpret`: run the kernel
    in Pallas's interpreter (CPU). Traced under a multi-device mesh, each device draws the rows of its part of the
    batch (`applies`), the same rows of the same masks.

    `as_bytes`: the kernel writes each mask as a flat array of bytes rather than of the words that pack them, the
    same values. XLA's Triton fusions read a flat byte array reshaped to the mask as it is, and the words'
    bytes ([N, 4] reshaped) not: where the LayerNorm kernel takes a block's backward pass, its forward LayerNorm fusion
    then applies the branch's mask itself (`layer_norm.residual_layer_norm`). Elsewhere XLA lays out its own
    LayerNorms' reductions around flat bytes worse (a BERT-base bf16 batch-32 step compiled for an H100 with XLA's
    LayerNorm backward: 639 kernels with words, 804 with bytes), so words are the default."""
    k1, k2 = dropout.threefry_key(key)
    threshold = dropout.drop_threshold(rate)
    mesh, devices = jax.sharding.get_abstract_mesh(), mesh_devices()

    def draw(first_row):  # the masks' rows from `first_row` on, as many as a device holds
        words = jnp.stack([k1, k2, first_row.astype(jnp.uint32), jnp.zeros((), jnp.uint32)])
        shapes, layouts = [], []
        for shape, within in masks:
            shape, within = tuple(shape), tuple(shape if within is None else within)
            if devices > 1:
                shape, within = (shape[0] // devices, *shape[1:]), (shape[0] // devices, *within[1:])
            shapes.append(shape)
            layouts.append(dropout.block_layout(shape, within))
        drawn = _keep_bytes(words, layouts, threshold, as_bytes, interpret)
        pieces = zip(drawn, layouts, shapes, strict=True)
        if as_bytes:
            return [keep.reshape(*layout.blocks_shape[:-1], -1)[..., : shape[-1]] for keep, layout, shape in pieces]
        return [dropout.unpacked(packed.reshape(layout.blocks_shape), shape) for packed, layout, shape in pieces]

    if devices == 1:
        return draw(jnp.zeros((), jnp.uint32))
    rows = jax.sharding.PartitionSpec(mesh.axis_names)

    def local():
        return draw(jax.lax.axis_index(mesh.axis_names) * (masks[0][0][0] // devices))

    # the device's first row: its index over the mesh axes, batch-major as flaxbert splits the batch, times its rows
    return jax.shard_map(local, mesh=mesh, in_specs=(), out_specs=[rows] * len(masks), check_vma=False)()


def _keep_bytes(words, layouts: list, threshold: int, as_bytes: bool, interpret: bool) -> list[jax.Array]:
    """Each mask's flat [N] packed keep words (`layouts[s]`'s N blocks), or `as_bytes` their [4 N] bytes in order,
    all from one kernel call: the grid runs the first mask's tiles, then the second's, and so on. `words`: the key's
    two, the first row, 0."""
    sizes = [math.prod(layout.blocks_shape) for layout in layouts]
    tile = min(_TILE, *(size & -size for size in sizes))  # the largest power of two up to _TILE dividing every size
    starts = np.cumsum([0] + [size // tile for size in sizes]).tolist()
    kernel = functools.partial(_dropout_masks_kernel, layouts=tuple(layouts), starts=tuple(starts),
                               threshold=threshold, tile=tile, as_bytes=as_bytes)  # fmt: skip
    per_word = 4 if as_bytes else 1

    def blocks_of(mask):  # program i writes tile i - start of its mask; the others' index maps stay in range, unused
        last = starts[mask + 1] - starts[mask] - 1
        return pl.BlockSpec((tile * per_word,), lambda i: (jnp.clip(i - starts[mask], 0, last),))

    return pl.pallas_call(
        kernel,
        grid=(starts[-1],),
        in_specs=[pl.BlockSpec((4,), lambda i: (0,))],
        out_specs=[blocks_of(mask) for mask in range(len(layouts))],
        out_shape=[jax.ShapeDtypeStruct((size * per_word,), jnp.int8 if as_bytes else jnp.uint32) for size in sizes],
        compiler_params=None if interpret else _triton_params(tile),
        interpret=interpret,
    )(words)


def _triton_params(tile: int):
    from jax.experimental.pallas import triton as pl_triton

    return pl_triton.CompilerParams(num_warps=max(1, min(8, tile // 256)), num_stages=1)


def _dropout_masks_kernel(words_ref, *out_refs, layouts: tuple, starts: tuple, threshold: int, tile: int,
                          as_bytes: bool):  # fmt: skip
    program = pl.program_id(0)
    count = np.uint32(len(layouts))
    row_word = counter = None
    for mask, layout in enumerate(layouts):  # the counter words of this program's tile, in its mask's layout
        first = lax.mul(lax.sub(program, starts[mask]).astype(jnp.uint32), np.uint32(tile))  # in uint32: no overflow
        flat = lax.add(lax.broadcasted_iota(jnp.uint32, (tile,), 0), first)
        row, position = _row_and_counter(flat, layout)
        row = lax.add(row, words_ref[2])  # the device's first row
        word = lax.add(lax.mul(row, count), np.uint32(mask))
        if row_word is None:
            row_word, counter = word, position
        else:
            here = program >= starts[mask]
            row_word, counter = jnp.where(here, word, row_word), jnp.where(here, position, counter)
    w0, w1 = dropout.threefry2x32(words_ref[0], words_ref[1], row_word, counter)
    packed = dropout.packed_keep(w0, w1, threshold)
    for mask, out_ref in enumerate(out_refs):

        @pl.when((program >= starts[mask]) & (program < starts[mask + 1]))
        def _store(out_ref=out_ref):
            if not as_bytes:
                out_ref[...] = packed
                return
            for c in range(4):  # byte c of every block: every fourth byte from c (the words' bytes in memory order)
                out_ref[pl.ds(c, tile, stride=4)] = lax.shift_right_logical(packed, np.uint32(8 * c)).astype(jnp.int8)


def _row_and_counter(flat: jax.Array, layout) -> tuple[jax.Array, jax.Array]:
    """The threefry counter words (row, block in the row) of the blocks at these flat indices of `layout`'s
    blocks array: what `dropout.keep_bytes_together` builds from iotas, computed from the index."""
    dims = layout.blocks_shape
    counter = jnp.zeros_like(flat)
    rest = flat
    for axis in reversed(range(layout.first, len(dims))):
        size = np.uint32(dims[axis])
        position = lax.rem(rest, size)
        rest = lax.div(rest, size)
        counter = lax.add(counter, lax.mul(position, np.uint32(layout.strides[axis])))
    row = rest if layout.first else jnp.zeros_like(flat)
    return row, counter
