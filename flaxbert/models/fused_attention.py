"""Training-time attention as Pallas kernels: scores, key padding, softmax and dropout fused with both matmuls.

XLA runs BERT's attention as separate passes over the [B, H, L, L] scores and probabilities, with transposes between
the [B, L, H, D] projections and the per-head matmuls (on an H100, bert_base batch 256: most of the non-matmul half of
the train step; benchmarks/RESULTS.md). These kernels read q, k and v in their projection layout (packed as one
[B, L, 3, H, D] array: one matmul by the three kernels side by side gives it, and the backward pass writes the
gradient the same way), keep a block's scores on chip, and in the backward pass recompute them from the rows'
log-sum-exp. Up to 128 padded tokens the backward pass is one kernel a (sequence, head): all its keys in one program,
which walks the queries a block at a time, writes each block's dq and sums dk and dv; longer sequences take two
kernels, one by blocks of queries (dq) and one by blocks of keys (dk, dv), each recomputing the scores.

The function is the XLA path's (`layers.attention_with_dropout`): float32 scores divided by sqrt(head_dim), masked
keys replaced by the float32 minimum, softmax, dropout of the probabilities with a given keep mask and scale, and the
probabilities cast to v's dtype for the second matmul. Sequences up to 512 tokens: each kernel holds whole rows (or
columns) of a block's scores, so there is no online softmax. Lengths that are not a power of two are padded to one
(Triton's block shapes must be); padded keys get exactly zero probability.

On a multi-device mesh (flaxbert's loops trace their steps under it) each device runs the kernels on its own rows.
On CPU the kernels run in Pallas's interpreter (slow: for the tests that compare them with the XLA path), with a
warning that says so.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from flaxbert.models.target_device import target_device
from flaxbert.parallel.mesh import warning_stacklevel

_ATTEND, _MASKED, _PADDING = 1, 0, -1  # per-key codes: a real key, a key the padding mask hides, length padding
# The packed layout's axis 2: keys and values first, so that the backward pass's dk, dv kernel writes both as one
# block of two, and dq into the third slot of the same array.
PACKED_ORDER = ("key", "value", "query")
_KEYS, _VALUES, _QUERIES = 0, 1, 2  # their slots: keys and values are block 0 of a two-slot block
# Where the backward pass is one kernel by default: sequences padded to at most this many tokens, whose programs hold
# every key's dk and dv sums (2 x 128 x head_dim float32s at 128) beside one block of scores...
ONE_BACKWARD_KERNEL_UP_TO = 128
# ...and these head sizes, at which the kernel's default (queries a step, warps) compiles for sm_90a with no register
# spills and no ptxas performance notes at every padded length up to 128 (32 queries a step wait on wgmma results at
# head size 64 and spill at 32; benchmarks/results/kernel_registers_attention_h200_session34.txt). Other head sizes
# take the two kernels.
ONE_BACKWARD_KERNEL_HEAD_SIZES = (32, 64)
ONE_BACKWARD_KERNEL_BLOCK = (16, 8)


CPU_WARNING = (
    "attention_kernel='pallas' runs its GPU kernels in Pallas's interpreter on CPU, many times slower than "
    "attention_kernel='xla' (the interpreter is there for tests); use 'xla' or the default 'auto' on CPU."
)


def supports(length: int, head_dim: int) -> bool:
    """Whether the kernels handle this attention shape (longer sequences and odd head sizes use the XLA path)."""
    return length <= 512 and head_dim >= 16 and head_dim & (head_dim - 1) == 0


def attention(
    q, k, v, padding_mask, keep=None, keep_scale: float = 1.0, *, block_rows=None, warps=None, one_backward_kernel=None
):
    """Softmax attention over [B, L, H, D] q, k, v; returns the [B, L, H, D] context in v's dtype.

    Args:
        padding_mask: [B, L], nonzero where a key is attended.
        keep: optional [B, H, L, L] dropout keep mask for the probabilities (nonzero keeps), e.g.
            `dropout.keep_bytes`.
        keep_scale: what kept probabilities are multiplied by (the inverse keep probability).
        block_rows: queries (forward, dq) or keys (dk, dv) per program, or the queries the one backward kernel
            takes a step, a power of two >= 16; default: as many as keep a block's scores within 8K float32s (the one
            backward kernel: `ONE_BACKWARD_KERNEL_BLOCK`'s 16).
        warps: Triton warps per program; default 4, or 8 when a block holds more than 8K scores (the one backward
            kernel: `ONE_BACKWARD_KERNEL_BLOCK`'s 8).
        one_backward_kernel: the backward pass as one kernel a (sequence, head) instead of two; default: where the
            sequence pads to at most `ONE_BACKWARD_KERNEL_UP_TO` tokens at a head size in
            `ONE_BACKWARD_KERNEL_HEAD_SIZES`.
    """
    packed = jnp.stack([{"query": q, "key": k, "value": v}[name] for name in PACKED_ORDER], axis=2)
    return attention_packed(packed, padding_mask, keep, keep_scale, block_rows=block_rows, warps=warps,
                            one_backward_kernel=one_backward_kernel)  # fmt: skip


def attention_packed(qkv, padding_mask, keep=None, keep_scale: float = 1.0, *, block_rows=None, warps=None,
                     one_backward_kernel=None):  # fmt: skip
    """`attention` of keys, values and queries packed as one [B, L, 3, H, D] array in `PACKED_ORDER` along axis 2,
    the layout one matmul of the input by the three projections' kernels side by side (in that order) gives: the
    kernels read their blocks of each straight from it, where three separate arrays would be three strided copies,
    and the backward pass writes the gradient in the same layout."""
    batch, length, three, heads, head_dim = qkv.shape
    if three != 3 or not supports(length, head_dim):
        raise ValueError(f"fused attention needs q, k, v packed as [B, L, 3, H, D], length <= 512 and a power-of-two "
                         f"head_dim >= 16; got {qkv.shape}.")  # fmt: skip
    padded = max(16, pl.next_power_of_2(length))
    codes = jnp.where(padding_mask.astype(bool), _ATTEND, _MASKED).astype(jnp.int32)
    if padded != length:
        extra = padded - length
        qkv = jnp.pad(qkv, ((0, 0), (0, extra), (0, 0), (0, 0), (0, 0)))
        codes = jnp.pad(codes, ((0, 0), (0, extra)), constant_values=_PADDING)
        keep = None if keep is None else jnp.pad(keep, ((0, 0), (0, 0), (0, extra), (0, extra)))
    keep = None if keep is None else keep.astype(jnp.int8)  # `layer_keep_masks`' bytes as they are; a bool mask cast
    backend = target_device().platform  # the mesh's platform: a CPU mesh on a GPU host interprets the kernels
    if backend not in ("cpu", "gpu"):
        raise ValueError(f"flaxbert's attention kernels are written for GPUs (Triton); on {backend} use "
                         f"attention_kernel='xla'.")  # fmt: skip
    if backend == "cpu":
        warnings.warn(CPU_WARNING, stacklevel=warning_stacklevel(2))
    static = _settings(length, padded, head_dim, keep_scale, block_rows, warps, one_backward_kernel,
                       interpret=backend == "cpu")  # fmt: skip
    return _sharded(qkv, codes, keep, static)[:, :length]


def _sharded(qkv, codes, keep, static: _Static):
    """The kernels on each device's rows when traced under a multi-device mesh (flaxbert's loops set it), with the
    batch split over every mesh axis as flaxbert shards it; XLA cannot partition a Triton call by itself and would
    otherwise gather the whole batch onto every device."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return _attention(qkv, codes, keep, static)
    rows = jax.sharding.PartitionSpec(mesh.axis_names)
    args = (qkv, codes) + (() if keep is None else (keep,))

    def local(qkv, codes, keep=None):
        return _attention(qkv, codes, keep, static)

    return jax.shard_map(local, mesh=mesh, in_specs=(rows,) * len(args), out_specs=rows, check_vma=False)(*args)


def _settings(length: int, padded: int, head_dim: int, keep_scale: float, block_rows=None, warps=None,
              one_backward_kernel=None, *, interpret: bool):  # fmt: skip
    """The kernels' compile-time settings for a sequence of `length` padded to `padded`, defaults filled in."""
    if block_rows is not None and (block_rows < 16 or block_rows & (block_rows - 1) or block_rows > padded):
        raise ValueError(
            f"block_rows must be a power of two from 16 to {padded} for length {length}, got {block_rows}."
        )
    if warps is not None and warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"warps must be a power of two from 1 to 16 (Triton's num_warps), got {warps}.")
    rows = block_rows or max(16, min(padded, 8192 // padded))
    if one_backward_kernel is None:
        one_backward_kernel = padded <= ONE_BACKWARD_KERNEL_UP_TO and head_dim in ONE_BACKWARD_KERNEL_HEAD_SIZES
    backward = None
    if one_backward_kernel:
        step, step_warps = ONE_BACKWARD_KERNEL_BLOCK
        backward = (block_rows or step, warps or step_warps)
    return _Static(rows, warps or (4 if rows * padded <= 8192 else 8), float(keep_scale), backward, interpret)


@dataclasses.dataclass(frozen=True)
class _Static:
    """The kernels' compile-time settings."""

    rows: int  # queries or keys per program (the forward kernel, the two backward kernels)
    warps: int
    keep_scale: float
    one_backward_kernel: tuple[int, int] | None  # (queries a step, warps) of the one backward kernel, if it runs
    interpret: bool  # CPU: run the kernels in Pallas's interpreter


def _scores(q, k, codes, scale):
    """A block's float32 scores q k^T / scale with hidden keys at the float32 minimum and padding at -inf."""
    s = jnp.dot(q, k.T, preferred_element_type=jnp.float32) / scale
    hidden = jnp.where(codes == _MASKED, jnp.finfo(jnp.float32).min, -jnp.inf)
    return jnp.where(codes[None, :] == _ATTEND, s, hidden[None, :])


def _dropped(p, keep, keep_scale):
    return p if keep is None else jnp.where(keep != 0, p * keep_scale, 0.0)


def _forward_kernel(q_ref, k_ref, v_ref, codes_ref, *refs, scale, keep_scale, dropout):
    keep_ref, o_ref, lse_ref = refs if dropout else (None, *refs)
    v = v_ref[...]
    s = _scores(q_ref[...], k_ref[...], codes_ref[...], scale)
    top = jnp.max(s, axis=1)
    e = jnp.exp(s - top[:, None])
    total = jnp.sum(e, axis=1)
    p = _dropped(e / total[:, None], None if keep_ref is None else keep_ref[...], keep_scale)
    o_ref[...] = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32).astype(o_ref.dtype)
    lse_ref[...] = top + jnp.log(total)


def _score_grads(q, k, v, codes, keep, do, lse, delta, scale, keep_scale):
    """(p, ds) for a block: the probabilities, recomputed from the saved log-sum-exp, and the gradient of the scores
    before their 1/sqrt(D) scaling (delta = rowsum(dO * O) = rowsum(dP * P), dropout included)."""
    p = jnp.exp(_scores(q, k, codes, scale) - lse[:, None])
    dp = _dropped(jnp.dot(do, v.T, preferred_element_type=jnp.float32), keep, keep_scale)
    ds = jnp.where(codes[None, :] == _ATTEND, p * (dp - delta[:, None]), 0.0) / scale
    return p, ds


def _dq_kernel(q_ref, k_ref, v_ref, codes_ref, *refs, scale, keep_scale, dropout):
    keep_ref, do_ref, lse_ref, delta_ref, dq_ref = refs if dropout else (None, *refs)  # dq: its slot of the packed grad
    k = k_ref[...]
    keep = None if keep_ref is None else keep_ref[...]
    _, ds = _score_grads(q_ref[...], k, v_ref[...], codes_ref[...], keep, do_ref[...], lse_ref[...], delta_ref[...],
                         scale, keep_scale)  # fmt: skip
    dq_ref[...] = jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32).astype(dq_ref.dtype)


def _dkv_kernel(q_ref, k_ref, v_ref, codes_ref, *refs, scale, keep_scale, dropout):
    # grads_in: the packed grad with dq written (aliased to the output, not read); dkv: the keys' and values' slots
    keep_ref, do_ref, lse_ref, delta_ref, _, dkv_ref = refs if dropout else (None, *refs)
    q, do = q_ref[...], do_ref[...]
    keep = None if keep_ref is None else keep_ref[...]
    p, ds = _score_grads(q, k_ref[...], v_ref[...], codes_ref[...], keep, do, lse_ref[...], delta_ref[...], scale,
                         keep_scale)  # fmt: skip
    pd = _dropped(p, keep, keep_scale).astype(do.dtype)
    dkv_ref[:, _VALUES, :] = jnp.dot(pd.T, do, preferred_element_type=jnp.float32).astype(dkv_ref.dtype)
    dkv_ref[:, _KEYS, :] = jnp.dot(ds.astype(q.dtype).T, q, preferred_element_type=jnp.float32).astype(dkv_ref.dtype)


def _backward_kernel(q_ref, k_ref, v_ref, codes_ref, *refs, scale, keep_scale, dropout, rows):
    """dq, dk and dv of one (sequence, head): every query, key and value in the program. It walks the queries `rows`
    at a time; each block's dq is complete when written, and dk, dv are sums over the blocks, written at the end."""
    keep_ref, do_ref, o_ref, lse_ref, grads_ref = refs if dropout else (None, *refs)  # grads: [L, 3, D], all slots
    k, v, codes = k_ref[...], v_ref[...], codes_ref[...]
    padded, head_dim = k.shape

    def block(i, sums):
        dk, dv = sums
        at = pl.ds(pl.multiple_of(i * rows, rows), rows)
        q, do = q_ref[at, :], do_ref[at, :]
        keep = None if keep_ref is None else keep_ref[at, :]
        delta = jnp.sum(do.astype(jnp.float32) * o_ref[at, :].astype(jnp.float32), axis=1)  # rowsum(dO * O)
        p, ds = _score_grads(q, k, v, codes, keep, do, lse_ref[at], delta, scale, keep_scale)
        grads_ref[at, _QUERIES, :] = jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32).astype(
            grads_ref.dtype
        )
        pd = _dropped(p, keep, keep_scale).astype(do.dtype)
        dv = dv + jnp.dot(pd.T, do, preferred_element_type=jnp.float32)
        dk = dk + jnp.dot(ds.astype(q.dtype).T, q, preferred_element_type=jnp.float32)
        return dk, dv

    zeros = jnp.zeros((padded, head_dim), jnp.float32)
    dk, dv = jax.lax.fori_loop(0, padded // rows, block, (zeros, zeros))
    grads_ref[:, _KEYS, :] = dk.astype(grads_ref.dtype)
    grads_ref[:, _VALUES, :] = dv.astype(grads_ref.dtype)


def _call(kernel, static: _Static, dropout: bool, out_shape, in_specs, out_specs, *args, aliased: bool = False,
          blocks=None, warps=None, **bind):  # fmt: skip
    """One pallas_call over the grid (batch, head, block of rows) with the kernel's static arguments (and `bind`)
    bound; the kernel's q, k and v are `args[0]`, the packed [B, L, 3, H, D] array, passed three times. `aliased`: the
    last argument is the output's buffer (written in place where the kernel writes, kept elsewhere). `blocks` and
    `warps`: the grid's blocks of rows and the warps a program, if not `static.rows` at a time and `static.warps`."""
    batch, padded, _, heads, head_dim = args[0].shape
    bound = functools.partial(kernel, scale=math.sqrt(head_dim), keep_scale=static.keep_scale, dropout=dropout, **bind)
    return pl.pallas_call(
        bound,
        grid=(batch, heads, blocks or padded // static.rows),
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        compiler_params=None if static.interpret else _triton_params(warps or static.warps),
        interpret=static.interpret,
        input_output_aliases={len(args) + 1: 0} if aliased else {},
    )(args[0], args[0], *args)


def _triton_params(warps: int):
    from jax.experimental.pallas import triton as pl_triton

    return pl_triton.CompilerParams(num_warps=warps, num_stages=2)


def _specs(padded: int, head_dim: int, rows: int, by: str, dropout: bool, backward: bool) -> tuple[list, object]:
    """(in_specs, rows_spec): BlockSpecs for q, k, v (their slots of the packed array), codes [B, L],
    keep [B, H, L, L] and, backward, dO [B, L, H, D] and the row statistics lse, delta [B, H, L]; and the spec of a
    [B, L, H, D] array blocked as q is (dO; the context and dq outputs).

    by="query": a block of query rows sees every key; by="key": a block of keys sees every query.
    """

    def packed(part: int, block: bool):
        if block:
            return pl.BlockSpec((None, rows, None, None, head_dim), lambda b, h, i: (b, i, part, h, 0))
        return pl.BlockSpec((None, padded, None, None, head_dim), lambda b, h, i: (b, 0, part, h, 0))

    if by == "query":
        qkv = [packed(_QUERIES, True), packed(_KEYS, False), packed(_VALUES, False)]
        q_rows = pl.BlockSpec((None, rows, None, head_dim), lambda b, h, i: (b, i, h, 0))
        codes = pl.BlockSpec((None, padded), lambda b, h, i: (b, 0))
        keep = pl.BlockSpec((None, None, rows, padded), lambda b, h, i: (b, h, i, 0))
        stats = pl.BlockSpec((None, None, rows), lambda b, h, i: (b, h, i))
    else:
        qkv = [packed(_QUERIES, False), packed(_KEYS, True), packed(_VALUES, True)]
        q_rows = pl.BlockSpec((None, padded, None, head_dim), lambda b, h, i: (b, 0, h, 0))
        codes = pl.BlockSpec((None, rows), lambda b, h, i: (b, i))
        keep = pl.BlockSpec((None, None, padded, rows), lambda b, h, i: (b, h, 0, i))
        stats = pl.BlockSpec((None, None, padded), lambda b, h, i: (b, h, 0))
    specs = qkv + [codes] + ([keep] if dropout else []) + ([q_rows, stats, stats] if backward else [])
    return specs, q_rows


def _forward(qkv, codes, keep, static: _Static):
    batch, padded, _, heads, head_dim = qkv.shape
    dropout = keep is not None
    in_specs, rows_spec = _specs(padded, head_dim, static.rows, "query", dropout, backward=False)
    out_specs = [rows_spec, pl.BlockSpec((None, None, static.rows), lambda b, h, i: (b, h, i))]
    out_shape = [jax.ShapeDtypeStruct((batch, padded, heads, head_dim), qkv.dtype),
                 jax.ShapeDtypeStruct((batch, heads, padded), jnp.float32)]  # fmt: skip
    args = (qkv, codes) + ((keep,) if dropout else ())
    return _call(_forward_kernel, static, dropout, out_shape, in_specs, out_specs, *args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _attention(qkv, codes, keep, static: _Static):
    return _forward(qkv, codes, keep, static)[0]


def _attention_fwd(qkv, codes, keep, static: _Static):
    o, lse = _forward(qkv, codes, keep, static)
    return o, (qkv, codes, keep, o, lse)


def _attention_bwd(static: _Static, residuals, do):
    """The packed gradient [B, L, 3, H, D], written where the attention's input was read."""
    qkv, codes, keep, o, lse = residuals
    do = do.astype(qkv.dtype)
    if static.one_backward_kernel is not None:
        return _one_kernel_backward(qkv, codes, keep, o, lse, do, static), None, None
    return _two_kernel_backward(qkv, codes, keep, o, lse, do, static), None, None


def _one_kernel_backward(qkv, codes, keep, o, lse, do, static: _Static):
    """dq, dk and dv from one program a (sequence, head) (`_backward_kernel`): every slot of its head written."""
    padded, head_dim = qkv.shape[1], qkv.shape[4]
    dropout = keep is not None
    whole, rows_spec = _specs(padded, head_dim, padded, "key", dropout, backward=True)  # every row, one block
    in_specs = whole[:-2] + [rows_spec, whole[-1]]  # dO, O (for delta), lse
    slots = pl.BlockSpec((None, padded, 3, None, head_dim), lambda b, h, i: (b, 0, 0, h, 0))
    args = (qkv, codes) + ((keep,) if dropout else ()) + (do, o, lse)
    out_shape = jax.ShapeDtypeStruct(qkv.shape, qkv.dtype)
    rows, warps = static.one_backward_kernel
    return _call(_backward_kernel, static, dropout, out_shape, in_specs, slots, *args, blocks=1, warps=warps, rows=rows)


def _two_kernel_backward(qkv, codes, keep, o, lse, do, static: _Static):
    """dq into its slot by one kernel, then dk and dv (one block of two slots) by the other, in the same buffer."""
    padded, head_dim, rows = qkv.shape[1], qkv.shape[4], static.rows
    packed_shape = jax.ShapeDtypeStruct(qkv.shape, qkv.dtype)
    delta = jnp.einsum("blhd,blhd->bhl", do.astype(jnp.float32), o.astype(jnp.float32))  # rowsum(dP * P), per head
    dropout = keep is not None
    args = (qkv, codes) + ((keep,) if dropout else ()) + (do, lse, delta)
    by_query, _ = _specs(padded, head_dim, rows, "query", dropout, backward=True)
    q_slot = pl.BlockSpec((None, rows, None, None, head_dim), lambda b, h, i: (b, i, _QUERIES, h, 0))
    grads = _call(_dq_kernel, static, dropout, packed_shape, by_query, q_slot, *args)
    by_key, _ = _specs(padded, head_dim, rows, "key", dropout, backward=True)
    kv_slots = pl.BlockSpec((None, rows, 2, None, head_dim), lambda b, h, i: (b, i, 0, h, 0))
    return _call(_dkv_kernel, static, dropout, packed_shape, [*by_key, kv_slots], kv_slots, *args, grads, aliased=True)


_attention.defvjp(_attention_fwd, _attention_bwd)
