"""LoRA adapters as keras-hub adds them (`Backbone.enable_lora`): which layers take one, and the params' algebra.

keras-hub's `enable_lora(rank)` freezes the backbone and gives each target layer (by default every attention
layer's `query` and `value`) two float32 weights beside its frozen kernel: `lora_kernel_a`, the kernel's shape with
its last axis replaced by `rank` (He-uniform), and `lora_kernel_b` [rank, the kernel's last axis] (zeros). The layer
then multiplies by `kernel + lora_kernel_a @ lora_kernel_b` (Keras' `lora_alpha / rank` scale is 1: keras-hub passes
no alpha). Its bias stays trainable. For a query kernel [D, H, K] the adapter is [D, H, rank] @ [rank, K]: Keras'
factorisation, per head, not the [D, rank] @ [rank, H * K] of other LoRA libraries, so the numbers and the
`.lora.h5` files are keras-hub's.

A config's `lora_rank` and `lora_targets` (keras-hub's layer names) say which Projections carry adapters; the
Projection merges them into its kernel (`layers.Projection`). Saving a preset or a transformers checkpoint merges them
for good (`merged`), as Keras' `save_to_preset` does.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers

import jax
import numpy as np

# keras-hub's names of the layers a LoRA adapter can go on, per architecture (keras-hub's names are flaxbert's, but
# the attention output, which flaxbert's SelfAttention names "output").
_LAYER_TARGETS = ("query", "key", "value", "attention_output", "feedforward_intermediate_dense",
                  "feedforward_output_dense")  # fmt: skip
TARGETS = {"BertConfig": (*_LAYER_TARGETS, "pooled_dense"), "DistilBertConfig": _LAYER_TARGETS}
DEFAULT_TARGETS = ("query", "value")  # keras-hub's `default_lora_layer_names()` that BERT's layers carry
ADAPTER_PARAMS = ("lora_kernel_a", "lora_kernel_b")


def check_config(cfg) -> None:
    """A config's `lora_rank` (0: no LoRA, else a positive integer) and `lora_targets` (a sequence of its
    architecture's `TARGETS`, each once; stored as a sorted tuple, so equal choices make equal configs)."""
    rank, targets = cfg.lora_rank, cfg.lora_targets
    kind = type(cfg).__name__
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 0:
        raise ValueError(f"{kind}.lora_rank must be 0 (no LoRA) or a positive integer, got {rank!r}.")
    names = isinstance(targets, list | tuple) and all(isinstance(t, str) for t in targets)
    if not names:
        raise ValueError(f"{kind}.lora_targets must be a list of layer names, got {targets!r}.")
    if bool(rank) != bool(targets):
        raise ValueError(
            f"{kind} has lora_rank={rank} and lora_targets={list(targets)}: a LoRA rank needs the layers it adapts, "
            "and layers to adapt need a rank (backbone.enable_lora(rank) sets both)."
        )
    check_targets(targets, kind)
    object.__setattr__(cfg, "lora_rank", int(rank))
    object.__setattr__(cfg, "lora_targets", tuple(sorted(targets)))


def check_targets(targets, kind: str) -> None:
    """Names that are not layers LoRA goes on (with the closest ones), and names given twice, are refused: keras-hub
    skips a name it does not find, so a typo there trains nothing."""
    allowed = TARGETS[kind]
    for name in targets:  # strings (check_config)
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=3)
            hint = f" (closest: {close})" if close else ""
            raise ValueError(
                f"{name!r} is not a layer LoRA adapts in a {kind.removesuffix('Config')} backbone{hint}; the layers "
                f"are {list(allowed)}."
            )
    if len(set(targets)) != len(targets):
        raise ValueError(f"the LoRA target layers {list(targets)} name a layer twice.")


def rank_of(cfg, keras_name: str) -> int:
    """The adapter rank of the layer keras-hub names `keras_name` under `cfg`: 0 where it has none."""
    return cfg.lora_rank if keras_name in cfg.lora_targets else 0


def he_uniform_limit(shape: tuple[int, ...]) -> float:
    """The bound of Keras' He-uniform draw for a `lora_kernel_a` of `shape`: sqrt(6 / fan_in), Keras' fan_in being
    the second-last axis times every axis before it (a query's [D, H, rank] has D * H)."""
    return float(np.sqrt(6.0 / (shape[-2] * int(np.prod(shape[:-2])))))


def merged_config(cfg):
    """`cfg` without LoRA: the config of `merged`'s params."""
    return dataclasses.replace(cfg, lora_rank=0, lora_targets=())


def merged(params):
    """`params` (a backbone's, or a classifier's) with each adapter folded into its kernel (`kernel + a @ b`, as the
    forward pass computes it) and the adapters gone: the params of the same function without LoRA."""
    if not isinstance(params, dict):
        return params
    if ADAPTER_PARAMS[0] in params:
        kept = {k: v for k, v in params.items() if k not in ADAPTER_PARAMS}
        kept["kernel"] = params["kernel"] + params["lora_kernel_a"] @ params["lora_kernel_b"]
        return kept
    return {k: merged(v) for k, v in params.items()}


def trained_mask(params):
    """A tree like a backbone's `params` (arrays or boxed shapes), True where `enable_lora` trains a param: the
    adapters and the bias of each layer they adapt, as keras-hub's frozen backbone leaves those trainable."""
    if not isinstance(params, dict):
        return jax.tree.map(lambda _: False, params)
    if ADAPTER_PARAMS[0] in params:
        return {k: jax.tree.map(lambda _, k=k: k in (*ADAPTER_PARAMS, "bias"), v) for k, v in params.items()}
    return {k: trained_mask(v) for k, v in params.items()}
