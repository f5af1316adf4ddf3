"""A model's parameter structure without materialising it: abstract init, dummy inputs, and structure checks."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxbert import gc_pause
from flaxbert.models.config import BertConfig


def dummy_inputs(cfg, batch_size: int = 1, length: int = 1) -> dict[str, jax.Array]:
    """The smallest valid input batch for a backbone config (params do not depend on its shape)."""
    inputs = {
        "token_ids": jnp.zeros((batch_size, length), jnp.int32),
        "padding_mask": jnp.ones((batch_size, length), jnp.int32),
    }
    if isinstance(cfg, BertConfig):
        inputs["segment_ids"] = jnp.zeros((batch_size, length), jnp.int32)
    return inputs


def abstract_params(module: nn.Module, cfg) -> dict:
    """`jax.eval_shape` of `module.init`: the boxed params (shapes, dtypes and logical axis names), no memory used.

    Traced once per (module, config): building a classifier and fitting it asks for them four times (the random
    init, the head check, the train state's shardings), and each trace of BERT-base's init takes 0.1-0.2 s of host
    time, paid again at every start even with a warm compilation cache. Each call returns its own containers.
    """
    try:
        boxed = _traced_abstract_params(module, cfg)
    except TypeError:  # a field that cannot be hashed (a list in a config): not cached
        boxed = _trace_abstract_params(module, cfg)
    return jax.tree.map(lambda leaf: leaf, boxed)  # new dicts and boxes: a caller's edits stay its own


def _trace_abstract_params(module: nn.Module, cfg) -> dict:
    """Shapes and dtypes only: under `jax.set_mesh` (an explicit-axes mesh) `eval_shape` gives each struct that mesh's
    sharding, and a cached one handed to a classifier built under another mesh failed its fit inside jax."""
    init = lambda key: module.init(key, dummy_inputs(cfg))["params"]  # noqa: E731
    with gc_pause.paused():
        traced = jax.eval_shape(init, jax.random.key(0))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), traced)


_traced_abstract_params = functools.lru_cache(maxsize=32)(_trace_abstract_params)  # linen modules hash by fields


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.unbox(params))))


def _flatten(tree) -> dict[str, object]:
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        flat["/".join(str(getattr(k, "key", k)) for k in path)] = leaf
    return flat


def check_params(params, abstract, source: str) -> None:
    """Raises naming every parameter of `abstract` that `params` lacks, has in another shape or dtype, or adds."""
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: the weights must be a nested dict of arrays, got {type(params).__name__}.")
    got, want = _flatten(params), _flatten(nn.unbox(abstract))
    problems = [f"missing {name} {tuple(w.shape)}" for name, w in want.items() if name not in got]
    problems += [
        f"{name} has shape {tuple(np.shape(got[name]))}, expected {tuple(w.shape)}"
        for name, w in want.items()
        if name in got and tuple(np.shape(got[name])) != tuple(w.shape)
    ]
    problems += [
        f"{name} has dtype {_dtype(got[name])}, expected {np.dtype(w.dtype)} (params stay {np.dtype(w.dtype)}; "
        "the compute dtype is the config's)"
        for name, w in want.items()
        if name in got and _dtype(got[name]) != np.dtype(w.dtype)
    ]
    unexpected = [name for name in got if name not in want]
    problems += [f"unexpected {name}" for name in unexpected]
    if problems:
        hint = ""
        if any(name.endswith("lora_kernel_a") for name in unexpected):
            hint = (" (they hold LoRA adapters, which this model has not: call backbone.enable_lora(rank) with "
                    "their rank and layers first, or merge them: flaxbert.models.lora.merged(params))")  # fmt: skip
        elif any(name.endswith("lora_kernel_a") for name in want if name not in got):
            hint = " (this model has LoRA adapters and they have none: assign them before enable_lora)"
        raise ValueError(f"{source}: the weights do not fit the model{hint}: " + "; ".join(problems[:10]))


def _dtype(leaf) -> np.dtype:
    """An array's dtype, read without copying it (a device array's to the host)."""
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
