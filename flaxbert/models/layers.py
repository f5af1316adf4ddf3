"""Layers shared by BERT and DistilBERT: the post-norm transformer block and the dtype-keeping factories.

Every parameter carries logical axis names (vocab, embed, positions, segments, norm, heads, kv, mlp, pooled, classes);
`flaxbert.parallel` maps them to the device mesh with one rules table. Params are float32; `cfg.dtype` is the compute
dtype. Attention logits, softmax and LayerNorm statistics always run in float32.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxbert.models import fused_attention, lora
from flaxbert.models import layer_norm as layer_norms  # the module; `layer_norm` here is the factory below
from flaxbert.models.activations import ACTIVATION_FNS
from flaxbert.models.dropout import dropped, keep_scale
from flaxbert.models.dropout_layer import Dropout, keep_masks
from flaxbert.models.layer_norm import Branch, LayerNorm
from flaxbert.models.params import ParamShapeError, param
from flaxbert.models.target_device import runs_triton_kernels, target_device

# keras-hub and HF both initialise every kernel and embedding from a normal truncated at +-2 sigma, sigma = 0.02
# (flaxbert's objects draw it on the host: `random_init.py`).
INIT_STDDEV = 0.02
_TRUNCATED_NORMAL = jax.nn.initializers.truncated_normal(INIT_STDDEV)
# Keras' "he_uniform" of a LoRA adapter's first factor: fan_in is its second-last axis times the axes before it
_HE_UNIFORM = jax.nn.initializers.he_uniform(in_axis=-2, out_axis=-1)


def _partitioned(init, axes):
    return nn.with_logical_partitioning(init, axes)


class Projection(nn.Module):
    """A dense layer over the last `contract` input axes, computed as one 2-D matmul of the flattened arrays.

    The params are flax's `Dense` / `DenseGeneral`'s (`kernel` [*input axes, *features], `bias` [*features], the same
    random draws; `axes` names the kernel's axes), and so are the values. Flax contracts a [B, L, D] input as it is,
    and its weight gradient then contracts B and L of two 3-D arrays, which XLA:CPU computes after transposing
    copies of both: bert_tiny's feed-forward block takes 30-38 ms forward and backward so against 24-27 ms flattened
    to [B * L, D], and its whole train step ~11% less time (benchmarks/RESULTS.md, session 14). The reshapes are
    free (row-major bitcasts) on every backend.

    Called with `weights_only`, it returns its kernel as an [inputs, features] matrix and its bias, both in the
    compute dtype, without applying them: for a caller that multiplies by several projections' kernels side by side.
    Called with `bias_apart`, it returns the product without the bias, as the matmul's [rows, features], and the
    bias: for a caller that adds it itself (a block's residual LayerNorm, `layer_norm.Branch`).

    With a `lora_rank`, it also has keras-hub's LoRA adapter (`models/lora.py`): `lora_kernel_a` [*kernel's axes but
    the last, rank] and `lora_kernel_b` [rank, kernel's last axis], and multiplies by `kernel + a @ b` (Keras'
    `EinsumDense.kernel`), merged in float32 before the cast to the compute dtype. (Under a mixed policy Keras merges
    the bfloat16 casts instead: the two differ by bfloat16 rounding.)
    """

    features: tuple[int, ...]
    axes: tuple[str, ...]
    dtype: object
    contract: int = 1
    lora_rank: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, weights_only: bool = False, bias_apart: bool = False):
        inputs = x.shape[-self.contract :]
        kernel = param(self, "kernel", _partitioned(_TRUNCATED_NORMAL, self.axes), (*inputs, *self.features))
        bias_init = _partitioned(nn.initializers.zeros_init(), self.axes[self.contract :])
        bias = param(self, "bias", bias_init, self.features)
        if self.lora_rank:
            a_init = _partitioned(_HE_UNIFORM, (*self.axes[:-1], "lora"))
            a = param(self, "lora_kernel_a", a_init, (*kernel.shape[:-1], self.lora_rank))
            b_init = _partitioned(nn.initializers.zeros_init(), ("lora", self.axes[-1]))
            b = param(self, "lora_kernel_b", b_init, (self.lora_rank, kernel.shape[-1]))
            kernel = kernel + a @ b
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        rows = x.reshape(-1, math.prod(inputs))
        if weights_only:
            return kernel.reshape(rows.shape[-1], -1), bias.reshape(-1)
        y = rows @ kernel.reshape(rows.shape[-1], -1)
        if bias_apart:
            return y, bias.reshape(-1)
        return (y + bias.reshape(-1)).reshape(*x.shape[: -self.contract], *self.features)


def dense(cfg, features: int, axes: tuple[str, str], name: str) -> Projection:
    """A dense layer with float32 params, `cfg.dtype` compute and truncated-normal(0.02) kernels."""
    return Projection((features,), axes, cfg.dtype, lora_rank=lora.rank_of(cfg, name), name=name)


def layer_norm(cfg, name: str) -> LayerNorm:
    """LayerNorm with keras-hub's epsilon; statistics in float32 and the exact (two-pass) variance for parity."""
    return LayerNorm(
        epsilon=cfg.layer_norm_epsilon,
        dtype=cfg.dtype,
        scale_init=_partitioned(nn.initializers.ones_init(), ("norm",)),
        bias_init=_partitioned(nn.initializers.zeros_init(), ("norm",)),
        name=name,
    )


class Embedding(nn.Module):
    """A lookup table `embedding` [num_embeddings, features], float32: flax's `nn.Embed`, its param and its values,
    with the param checked as `params.param` checks it (flax's check traces the initializer on every apply)."""

    num_embeddings: int
    features: int
    axes: tuple[str, str]

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(f"{self.name} looks up integer ids, got an array of {ids.dtype}.")
        shape = (self.num_embeddings, self.features)
        table = param(self, "embedding", _partitioned(_TRUNCATED_NORMAL, self.axes), shape)
        # An id outside [0, num_embeddings) reads NaN (jit cannot raise on values; `inputs.check_inputs` refuses them
        # on the host), negative ones too: jnp.take, as numpy, read -1 as the last row, a wrong result without a sign.
        if self.num_embeddings == 1:  # nn.Embed broadcasts its one row to every id
            return jnp.where((ids == 0)[..., None], table[0], jnp.nan)
        return table.at[ids].get(mode="fill", fill_value=jnp.nan, wrap_negative_indices=False)


def embed(num_embeddings: int, features: int, axes: tuple[str, str], name: str) -> Embedding:
    """An embedding table; lookups stay float32 so the embedding sum is exact before the first LayerNorm."""
    return Embedding(num_embeddings, features, axes, name=name)


class PositionEmbedding(nn.Module):
    """A learned position table [max_sequence_length, D]; returns its first L rows."""

    max_sequence_length: int
    features: int

    @nn.compact
    def __call__(self, length: int) -> jax.Array:
        table = param(
            self,
            "embedding",
            _partitioned(_TRUNCATED_NORMAL, ("positions", "embed")),
            (self.max_sequence_length, self.features),
        )
        return table[:length]  # [L, D]


def draws_dropout(cfg, train: bool) -> bool:
    """Whether a pass of the encoder draws dropout masks (and so needs dropout keys): in training, at a rate above 0."""
    return train and cfg.dropout > 0


class SelfAttention(nn.Module):
    """Multi-head self-attention; padding masks keys only, dropout hits the attention probabilities.

    With `first_token_only` only position 0 attends (keys and values still come from every position): the output is
    [B, 1, D], the first row of the whole layer's output, dropout masks included. The output comes without its
    projection's bias, and the bias beside it, for the block's residual LayerNorm to add (`layer_norm.Branch`).
    """

    cfg: object
    first_token_only: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, padding_mask: jax.Array, probs_keep: jax.Array | None = None):
        """x: [B, L, D]; probs_keep: the dropout mask of the probabilities, [B, H, Q, L] (`layer_keep_masks`), or
        None for no dropout. Returns the output less its bias, as [B * Q, D] rows, and the bias [D]."""
        cfg = self.cfg

        def projection(name):
            rank = lora.rank_of(cfg, name)
            return Projection((cfg.num_heads, cfg.head_dim), ("embed", "heads", "kv"), cfg.dtype, lora_rank=rank,
                              name=name)  # fmt: skip

        def output(context):  # [B, Q, H, K] -> [B * Q, D] (less its bias), [D]
            rank = lora.rank_of(cfg, "attention_output")  # keras-hub's name of this layer
            dense = Projection((cfg.hidden_dim,), ("heads", "kv", "embed"), cfg.dtype, contract=2, lora_rank=rank,
                               name="output")  # fmt: skip
            return dense(context, bias_apart=True)

        kernel = cfg.attention_kernel
        if kernel == "auto":
            kernel = auto_attention_kernel(cfg.dtype, x.shape[1], cfg.head_dim, target_device())
        # the kernels take square attention (every position queries); one query row keeps XLA's ops
        if not self.first_token_only and kernel == "pallas" and fused_attention.supports(x.shape[1], cfg.head_dim):
            # One matmul by the three kernels side by side, read by the kernels as it is: the input read once, one
            # weight gradient and one input gradient, 2 kernels fewer forward and ~8 backward per layer than three
            # projections (benchmarks/RESULTS.md, session 31). XLA's ops would need q, k and v copied out of it
            # (bert_tiny's CPU train step 8% slower), so the other paths keep three projections.
            weights = [projection(name)(x, weights_only=True) for name in fused_attention.PACKED_ORDER]
            matrix, bias = (jnp.concatenate(parts, axis=-1) for parts in zip(*weights, strict=True))
            packed = x.reshape(-1, x.shape[-1]) @ matrix + bias
            packed = packed.reshape(*x.shape[:2], 3, cfg.num_heads, cfg.head_dim)  # [B, L, 3, H, K]: k, v, q
            # The same function as the branches below, dropout mask included.
            context = fused_attention.attention_packed(packed, padding_mask, probs_keep, keep_scale(cfg.dropout))
            return output(context)
        queries = x[:, :1] if self.first_token_only else x
        q = projection("query")(queries)  # [B, Q, H, K]
        k, v = (projection(name)(x) for name in ("key", "value"))  # [B, L, H, K]
        if probs_keep is not None:
            context = attention_with_dropout(q, k, v, padding_mask, probs_keep, cfg.dropout, cfg.head_dim)
        else:
            context = attention_without_dropout(q, k, v, padding_mask, cudnn=kernel == "cudnn")
        return output(context)


def auto_attention_kernel(dtype, length: int, head_dim: int, device) -> str:
    """What `attention_kernel="auto"` runs on `device` (`target_device()` when a step is traced): "pallas", the fused
    kernels, where one measurement says they beat XLA's ops, and "xla" elsewhere. Measured on one H200 (bert_base,
    batch 256, bfloat16, length 128, head size 64: train step +10%, predict +12%, attention alone within bfloat16
    rounding of XLA's with padding and dropout; benchmarks/RESULTS.md, session 22), so: an NVIDIA GPU of compute
    capability 8.0 or later (Triton's 16-bit matmuls; only 9.0 was measured), 16-bit q/k/v, and shapes no larger than
    measured, lengths up to 128 (shorter buckets need less of each kernel's on-chip memory) and head sizes up to 64
    that the kernels take. Longer sequences, larger heads, float32, CPUs, TPUs and other GPUs run XLA's ops until
    measured there."""
    measured = length <= 128 and head_dim <= 64 and fused_attention.supports(length, head_dim)
    return "pallas" if runs_triton_kernels(device) and _sixteen_bit(dtype) and measured else "xla"


def _sixteen_bit(dtype) -> bool:
    return jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def attention_without_dropout(q, k, v, padding_mask, *, cudnn: bool = False) -> jax.Array:
    """Attention where no probability dropout applies (predict, evaluate, training at dropout 0), as one op.

    The math of `attention_with_dropout` without its dropout (float32 logits and softmax, padding masks keys) as
    `jax.nn.dot_product_attention`, which XLA fuses better (+13% bert_tiny predict on CPU, benchmarks/RESULTS.md).
    With `cudnn`, cuDNN's fused attention kernel where `cudnn_applies` and every position queries; elsewhere XLA's
    ops.

    q: [B, Q, H, K], the first Q <= L positions' queries; k, v: [B, L, H, K]; padding_mask: [B, L], nonzero where a
    key is attended.
    """
    batch, length, _, head_dim = k.shape
    keep = padding_mask[:, None, None, :].astype(bool)  # [B, 1, 1, L]
    scale = 1.0 / math.sqrt(head_dim)
    if cudnn and q.shape[1] == length and cudnn_applies(q.dtype, head_dim, length):
        # cuDNN takes a mask as an additive bias with a row per query, so the key mask is spread over the queries.
        keep = jnp.broadcast_to(keep, (batch, 1, length, length))
        return jax.nn.dot_product_attention(q, k, v, mask=keep, scale=scale, implementation="cudnn")
    return jax.nn.dot_product_attention(q, k, v, mask=keep, scale=scale)


def cudnn_applies(dtype, head_dim: int, length: int) -> bool:
    """Whether `attention_kernel="cudnn"` runs cuDNN's kernel: for a program that runs on a GPU (`target_device()`),
    16-bit q/k/v (cuDNN's fused attention has no float32 form), a head size that is a multiple of 8 up to 128 and an
    even length (what jax's cuDNN flash attention takes on every GPU it supports, with a mask, in training too)."""
    shape_ok = head_dim % 8 == 0 and head_dim <= 128 and length % 2 == 0
    return target_device().platform == "gpu" and _sixteen_bit(dtype) and shape_ok


def attention_with_dropout(q, k, v, padding_mask, keep, rate: float, head_dim: int) -> jax.Array:
    """keras-hub's training-time attention: dropout on the attention probabilities, which no fused kernel offers.

    q: [B, Q, H, K], the first Q <= L positions' queries; k, v: [B, L, H, K]; padding_mask: [B, L] (masks keys only);
    keep: the probabilities' [B, H, Q, L] dropout mask (nonzero keeps, `layer_keep_masks`) at dropout `rate`.
    """
    key_mask = padding_mask[:, None, None, :].astype(bool)  # [B, 1, 1, L]
    scores = jnp.einsum("bqhk,bshk->bhqs", q, k, preferred_element_type=jnp.float32)
    scores = scores / math.sqrt(head_dim)  # [B, H, Q, L]
    scores = jnp.where(key_mask, scores, jnp.finfo(jnp.float32).min)
    probs = dropped(jax.nn.softmax(scores, axis=-1), keep, rate)
    return jnp.einsum("bhqs,bshk->bqhk", probs.astype(v.dtype), v)  # [B, Q, H, K]


def layer_keep_masks(cfg, key: jax.Array, batch: int, length: int, queries: int) -> tuple:
    """A TransformerLayer's three dropout masks, drawn by one threefry call (`keep_bytes_together`): the attention
    probabilities' [B, H, Q, L] and the attention output's and feed-forward output's [B, Q, D], where Q is the
    positions the layer computes (all `length`, or 1 for `first_token_only`). Each is the leading corner of its mask
    over `cfg.max_sequence_length` positions, so a position's masks do not depend on how wide its batch was padded,
    and a layer that computes position 0 alone drops what the whole layer drops there."""
    frame = cfg.max_sequence_length
    hidden = ((batch, queries, cfg.hidden_dim), (batch, frame, cfg.hidden_dim))
    probs = ((batch, cfg.num_heads, queries, length), (batch, cfg.num_heads, frame, frame))
    # as bytes where the LayerNorm kernel takes the blocks' backward passes: their forward fusions then read them
    as_bytes = layer_norms.residual_kernel_applies(hidden[0])
    return tuple(keep_masks(key, [probs, hidden, hidden], cfg.dropout, as_bytes))


def sequence_dropout(cfg, x: jax.Array, train: bool) -> jax.Array:
    """`Dropout(cfg.dropout)` of a [B, L, D] activation (the embeddings') whose mask is the leading corner of the
    one over `cfg.max_sequence_length` positions (`keep_mask`'s `within`): the same at a position however wide the
    batch is padded. The layers draw theirs together (`layer_keep_masks`)."""
    frame = (x.shape[0], cfg.max_sequence_length, x.shape[2])
    return Dropout(cfg.dropout)(x, deterministic=not train, within=frame)


class TransformerLayer(nn.Module):
    """keras-hub's post-norm `TransformerEncoder` block (REFERENCE §1.4), used by BERT and DistilBERT.

    With `first_token_only` the block computes its output for position 0 alone ([B, 1, D], the same numbers and
    dropout masks as the first row of the whole block's): the keys and values need every position, nothing else does.

    Its dropout masks are keyed by `dropout_key` as it is (`layer_keep_masks`), not by a key folded from a flax rng
    stream: each fold is one more threefry chain in the step, and XLA:GPU spends ~50 ms fusing each (a BERT-base
    train step compiled for an H200 on a 2-core CPU: 9.1-9.3 -> 8.1-8.4 s; benchmarks/RESULTS.md, session 32).
    """

    cfg: object
    first_token_only: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, padding_mask: jax.Array, train: bool, dropout_key: jax.Array | None = None):
        """x: [B, L, D]; `dropout_key`: the key of the layer's masks, needed in training at a dropout rate above 0."""
        cfg = self.cfg
        batch, length = x.shape[:2]
        queries = 1 if self.first_token_only else length
        probs_keep = attended_keep = output_keep = None
        if draws_dropout(cfg, train):
            if dropout_key is None:
                raise ValueError(f"a TransformerLayer in training at dropout {cfg.dropout} draws its masks from "
                                 f"dropout_key; pass one (e.g. jax.random.key(0)).")  # fmt: skip
            probs_keep, attended_keep, output_keep = layer_keep_masks(cfg, dropout_key, batch, length, queries)
        attended, bias = SelfAttention(cfg, self.first_token_only, name="self_attention")(x, padding_mask, probs_keep)
        x = x[:, :queries]  # [B, Q, D]
        # LayerNorm(x + dropout(attended + bias)), whose backward pass also gives the branch's gradients
        x = layer_norm(cfg, "self_attention_layer_norm")(x, Branch(attended, bias, attended_keep, cfg.dropout))
        h = dense(cfg, cfg.intermediate_dim, ("embed", "mlp"), "feedforward_intermediate_dense")(x)  # [B, Q, F]
        h = ACTIVATION_FNS[cfg.activation](h)
        h, bias = dense(cfg, cfg.hidden_dim, ("mlp", "embed"), "feedforward_output_dense")(h, bias_apart=True)
        return layer_norm(cfg, "feedforward_layer_norm")(x, Branch(h, bias, output_keep, cfg.dropout))


def transformer_layers(
    encoder: nn.Module, x: jax.Array, padding_mask: jax.Array, train: bool, first_token_only: bool = False
) -> jax.Array:
    """The encoder's `cfg.num_layers` TransformerLayers, whose params are `transformer_layer_0` ... `_{N-1}`.

    Called from inside the encoder's compact `__call__`. Init creates and names their params with one layer's init
    mapped over the layers (`_init_layers`), whatever `cfg.scan_layers` says. Apply runs one jitted layer function
    (`_layer_apply`) on each layer's params in turn, so the host traces, differentiates and lowers one layer however
    deep the model (a BERT-base train step traced in 2.0-2.8 s layer by layer, 1.2-1.5 s so, on a CPU host), and XLA,
    inlining the calls, compiles the same unrolled program. With `cfg.scan_layers` the same function is the body of
    one `lax.scan` over the params stacked on a new leading axis, so XLA also compiles one layer instead of N (a
    BERT-base train step took 30-35 s to compile on an H100 unrolled, a 1-layer one 4.3 s); checkpoints and the
    sharding rules keep the per-layer tree either way. Layer i's dropout key is the i-th of `num_layers` keys split
    from the encoder's dropout stream, scanned or not: the two compute the same numbers, masks included.

    `first_token_only`: the last layer computes position 0 alone (the returned array is [B, 1, D], its values and
    dropout masks those of the whole output's first row), for callers that read nothing else: the classifier heads.
    Every earlier layer still runs on all positions (the last layer's keys and values need them). The last layer is
    then a second traced function, after the scan or the loop over the others.
    """
    cfg = encoder.cfg
    if encoder.is_initializing():
        _init_layers(encoder, x, padding_mask)
        return x[:, :1] if first_token_only else x  # init keeps only the params; the shape is what apply returns
    params = nn.unbox(encoder.variables["params"])
    _check_layer_count(params, cfg.num_layers, encoder.scope.path)
    per_layer = [params[f"transformer_layer_{i}"] for i in range(cfg.num_layers)]
    dropout = draws_dropout(cfg, train)
    keys = jax.random.split(encoder.make_rng("dropout"), cfg.num_layers) if dropout else jnp.zeros(cfg.num_layers)
    every_position = len(per_layer) - 1 if first_token_only else len(per_layer)  # the layers run on all positions
    layer = _layer_apply(cfg, train, first_token_only=False)
    where = encoder.scope.path  # a layer's param errors name it from here down
    if cfg.scan_layers and every_position > 1:
        _check_stackable(per_layer[:every_position], where)
        stacked = jax.tree.map(lambda *arrays: jnp.stack(arrays), *per_layer[:every_position])

        def step(x, params_and_key):
            return layer(params_and_key[0], x, padding_mask, params_and_key[1]), None

        x = _in_layer(where, 0, jax.lax.scan, step, x, (stacked, keys[:every_position]))[0]  # layers alike
    else:
        for i, (layer_params, key) in enumerate(zip(per_layer[:every_position], keys[:every_position], strict=True)):
            x = _in_layer(where, i, layer, layer_params, x, padding_mask, key)
    if first_token_only:
        last = _layer_apply(cfg, train, first_token_only=True)
        x = _in_layer(where, cfg.num_layers - 1, last, per_layer[-1], x, padding_mask, keys[-1])
    return x


def _check_layer_count(params, num_layers: int, where: tuple[str, ...]) -> None:
    """Params of a deeper model ran on the config's first layers, and a shallower one's failed with a bare KeyError."""
    want = {f"transformer_layer_{i}" for i in range(num_layers)}
    found = {name for name in params if name.startswith("transformer_layer_")}
    if found != want:
        missing, extra = sorted(want - found), sorted(found - want)
        raise ParamShapeError(
            (*where, "transformer_layer_*"),
            f"holds {len(found)} layer{'s' * (len(found) != 1)}"
            + (f" (missing {missing})" if missing else f" (also {extra})"),
            (num_layers,),
            f"this model's config has num_layers={num_layers}",
        )


def _in_layer(where: tuple[str, ...], index: int, run, *args):
    """`run(*args)`, where a param of layer `index` with the wrong shape is named from the encoder (`where`) down:
    the layer function, traced once for every layer, sees only its own names."""
    try:
        return run(*args)
    except ParamShapeError as error:
        raise error.within(*where, f"transformer_layer_{index}") from None


def _check_stackable(per_layer: list, where: tuple[str, ...]) -> None:
    """Scanned layers are stacked: each layer's params must have layer 0's shapes (which the layer then checks)."""
    reference = jax.tree_util.tree_flatten_with_path(per_layer[0])[0]
    for index, params in enumerate(per_layer[1:], start=1):
        for (path, want), got in zip(reference, jax.tree.leaves(params), strict=False):  # trees unlike: stack says
            if np.shape(got) != np.shape(want):
                names = (*where, f"transformer_layer_{index}", *(str(getattr(k, "key", k)) for k in path))
                reason = f"transformer_layer_0's is {np.shape(want)}, and scan_layers stacks the layers' params"
                raise ParamShapeError(names, f"has shape {np.shape(got)}", np.shape(want), reason)


@functools.lru_cache(maxsize=32)
def _layer_apply(cfg, train: bool, first_token_only: bool):
    """`(params, x, padding_mask, dropout_key) -> x` of one TransformerLayer, under `jax.jit`.

    Called once per layer inside the step's trace, a jitted function with the same argument shapes is traced once:
    jax reuses its jaxpr, and its derivatives, for every layer, and lowers it to one function that each layer calls
    (XLA inlines the calls, so the compiled step is the unrolled one). Bounded, so a process that builds many
    configs (a sweep over dropout rates) does not keep every one's traces; an evicted config is traced again.
    """
    layer = TransformerLayer(cfg, first_token_only, parent=None)

    def apply(params, x, padding_mask, key):  # the key is a placeholder where no dropout is drawn, and unread
        return layer.apply({"params": params}, x, padding_mask, train, key)

    return jax.jit(apply)


def _init_layers(encoder: nn.Module, x: jax.Array, padding_mask: jax.Array) -> None:
    """Creates the params of `transformer_layer_0` ... `_{N-1}` as one layer's init mapped over N keys (`lax.map`).

    flaxbert's objects draw random params on the host (`random_init.py`) and trace this only for the param structure
    (`abstract_params`); it serves `model.init` called directly. Unrolled, the init of BERT-base is ~1,000 fusions and
    150 threefry loops for XLA to compile (6-7 s on a 2-core CPU); mapped, one layer's worth (~3 s), drawn one layer at
    a time, so its temporary memory stays that of one layer's draws (a `vmap` took 3.6x the params). Layer i's params
    are the i-th slice, with their logical axis names, under the name the layers' apply looks them up by.
    """
    cfg = encoder.cfg
    layer = TransformerLayer(cfg, parent=None)
    keys = jax.random.split(encoder.make_rng("params"), cfg.num_layers)
    stacked = jax.lax.map(lambda key: layer.init(key, x, padding_mask, False)["params"], keys)  # boxes keep their names
    for i in range(cfg.num_layers):
        encoder.param(f"transformer_layer_{i}", lambda _, i=i: jax.tree.map(lambda a: a[i], stacked))
