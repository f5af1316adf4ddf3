"""keras-hub's `.lora.h5` files: a backbone's LoRA adapters alone (`Backbone.save_lora_weights` / `load_lora_weights`).

keras-hub writes the rank at `lora/vars/rank` and each adapted layer's two factors at
`lora/<index>/vars/lora_kernel_a` and `.../lora_kernel_b`, where `<index>` counts the backbone's layers that hold
weights in Keras' order (`_flatten_layers`), containers included. For BERT and DistilBERT that order is four
embedding entries, then ten per transformer layer (the block, its feed-forward output and intermediate dense layers,
its two LayerNorms, the attention layer, and its output, value, key and query projections), then BERT's
`pooled_dense`: `tests/test_lora.py` reads it from keras-hub's own backbones. So a file keras-hub wrote loads here,
and one written here loads in keras-hub.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from flaxbert.models import lora

_EMBEDDING_ENTRIES = 4  # BERT: token, position, segment embeddings and their LayerNorm; DistilBERT's four alike
_PER_LAYER = 10
_IN_LAYER = {"feedforward_output_dense": 1, "feedforward_intermediate_dense": 2, "attention_output": 6, "value": 7,
             "key": 8, "query": 9}  # fmt: skip
_IN_ATTENTION = {"query": "query", "key": "key", "value": "value", "attention_output": "output"}  # flaxbert's names


def check_filename(filepath) -> Path:
    """keras-hub's rule: an adapter file's name ends in `.lora.h5`."""
    if not str(filepath).endswith(".lora.h5"):
        raise ValueError(f"a LoRA weights file's name must end in .lora.h5 (as keras-hub's), got {str(filepath)!r}.")
    return Path(filepath)


def _entries(cfg, targets) -> dict[int, tuple[str, int | None, tuple[str, ...]]]:
    """{Keras' index of each layer of `targets` (keras-hub's names) in a backbone of `cfg`: (its name, its
    transformer layer or None, the path of its params in the backbone's params)}, by index."""
    entries = {}
    for i in range(cfg.num_layers):
        for name in targets:
            if name in _IN_LAYER:
                inner = ("self_attention", _IN_ATTENTION[name]) if name in _IN_ATTENTION else (name,)
                path = (f"transformer_layer_{i}", *inner)
                entries[_EMBEDDING_ENTRIES + _PER_LAYER * i + _IN_LAYER[name]] = (name, i, path)
    if "pooled_dense" in targets:
        entries[_EMBEDDING_ENTRIES + _PER_LAYER * cfg.num_layers] = ("pooled_dense", None, ("pooled_dense",))
    return dict(sorted(entries.items()))


def layer_entries(cfg) -> dict[int, tuple[str, ...]]:
    """{Keras' index of each layer `cfg`'s LoRA adapts: the path of its params in the backbone's params}."""
    return {index: path for index, (_, _, path) in _entries(cfg, cfg.lora_targets).items()}


def targets_of(cfg, indices, source) -> tuple[str, ...]:
    """The keras-hub layer names whose adapters sit at Keras' `indices` in a backbone of `cfg`: a file's targets. An
    index no target of `cfg`'s architecture has, or a layer adapted in some transformer layers and not in others
    (keras-hub adapts a name in all of them), is refused."""
    every = _entries(cfg, lora.TARGETS[type(cfg).__name__])
    unknown = sorted(set(indices) - set(every))
    if unknown:
        raise ValueError(
            f"{source} holds LoRA weights for layers {unknown}, which this backbone ({cfg.num_layers} transformer "
            "layers) has no adapter place for: it was saved from another architecture or depth."
        )
    names = tuple(sorted({every[i][0] for i in indices}))
    if set(_entries(cfg, names)) != set(indices):
        layers = sorted({every[i][1] for i in indices if every[i][1] is not None})
        raise ValueError(
            f"{source} adapts {list(names)} in transformer layers {layers} only, but keras-hub's enable_lora adapts "
            f"a layer name in every transformer layer, and this backbone has {cfg.num_layers}: the file was saved "
            "from a backbone of another depth."
        )
    return names


def write(filepath, cfg, params) -> None:
    """Writes the adapters of a backbone's `params` (of `cfg`, LoRA enabled) in keras-hub's layout, atomically: a
    file that was there stays whole until the new one replaces it."""
    path = check_filename(filepath)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; pass the path of the .lora.h5 file to write.")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as f:
            f.create_dataset("lora/vars/rank", data=np.int64(cfg.lora_rank))
            for index, names in layer_entries(cfg).items():
                layer = params
                for name in names:
                    layer = layer[name]
                for factor in lora.ADAPTER_PARAMS:
                    f.create_dataset(f"lora/{index}/vars/{factor}", data=np.asarray(layer[factor], np.float32))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(filepath) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """(rank, {Keras' layer index: (lora_kernel_a, lora_kernel_b)}) of a keras-hub `.lora.h5` file, or a ValueError
    that says what is wrong with it."""
    path = check_filename(filepath)
    if not path.is_file():
        raise FileNotFoundError(f"no LoRA weights file at {str(path)!r}.")
    try:
        with h5py.File(path, "r") as f:
            if "lora" not in f or "rank" not in f["lora"].get("vars", {}):
                raise ValueError(f"{str(path)!r} is not a keras-hub LoRA weights file (it has no lora/vars/rank).")
            rank = f["lora/vars/rank"][()]
            factors = {}
            for key, group in f["lora"].items():
                if key == "vars":
                    continue
                if not key.isdigit() or "vars" not in group or set(group["vars"]) != set(lora.ADAPTER_PARAMS):
                    raise ValueError(f"{str(path)!r} holds an entry lora/{key} that is not a layer's two LoRA factors.")
                factors[int(key)] = tuple(np.asarray(group["vars"][name], np.float32) for name in lora.ADAPTER_PARAMS)
    except OSError as error:  # h5py's word for a file that is not HDF5, or is cut short
        raise ValueError(f"{str(path)!r} cannot be read as an HDF5 file ({error}): it is damaged or not a "
                         ".lora.h5 file.") from None  # fmt: skip
    if not np.issubdtype(np.asarray(rank).dtype, np.integer) or int(rank) < 1:
        raise ValueError(f"{str(path)!r} gives a LoRA rank of {rank!r}; a rank is a positive integer.")
    if not factors:
        raise ValueError(f"{str(path)!r} holds a LoRA rank but no layer's LoRA weights.")
    for index, (a, b) in factors.items():
        if a.ndim < 2 or b.ndim != 2 or a.shape[-1] != rank or b.shape[0] != rank:
            raise ValueError(
                f"{str(path)!r} is damaged: its rank is {int(rank)}, but layer {index}'s LoRA factors have shapes "
                f"{a.shape} and {b.shape} (a rank-{int(rank)} pair is [..., {int(rank)}] and [{int(rank)}, ...])."
            )
    return int(rank), dict(sorted(factors.items()))
