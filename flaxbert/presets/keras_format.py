"""Reads keras-hub presets (REFERENCE §7.1, §7.5): config.json / task.json, and `.weights.h5` files with h5py.

Keras 3 stores each layer's variables at `<path>/vars/<i>` in creation order; layers reached through the model's
layer list are named by snake-case class name plus a counter (`transformer_encoder`, `transformer_encoder_1`, ...).
The reader walks the file, matches these patterns, maps each variable to its flaxbert path, and asserts every
shape against `jax.eval_shape` of the model, so a renamed or missing variable fails loudly with its name.
"""

from __future__ import annotations

import pathlib
import re

import h5py
import ml_dtypes
import numpy as np

from flaxbert.models.config import BertConfig, BertHeadConfig, DistilBertConfig, DistilBertHeadConfig, compute_dtype
from flaxbert.presets import json_file

_BACKBONES = {"BertBackbone": "bert", "DistilBertBackbone": "distil_bert"}
_TASKS = {"BertTextClassifier": "bert", "BertClassifier": "bert", "DistilBertTextClassifier": "distil_bert",
          "DistilBertClassifier": "distil_bert"}  # fmt: skip
_LAYER = re.compile(r"transformer_encoder(?:_(\d+))?/(.+)$")
_IN_LAYER = {
    "_self_attention_layer/query_dense": ("self_attention", "query"),
    "_self_attention_layer/key_dense": ("self_attention", "key"),
    "_self_attention_layer/value_dense": ("self_attention", "value"),
    "_self_attention_layer/output_dense": ("self_attention", "output"),
    "_self_attention_layer_norm": ("self_attention_layer_norm",),
    "_feedforward_intermediate_dense": ("feedforward_intermediate_dense",),
    "_feedforward_output_dense": ("feedforward_output_dense",),
    "_feedforward_layer_norm": ("feedforward_layer_norm",),
}
_TOP = {
    "reversible_embedding": ("token_embedding",),
    "token_and_position_embedding/token_embedding": ("token_embedding",),
    "position_embedding": ("position_embedding",),
    "token_and_position_embedding/position_embedding": ("position_embedding",),
    "embedding": ("segment_embedding",),
    "layer_normalization": ("embeddings_layer_norm",),
    "dense": ("pooled_dense",),
}
_VAR_NAMES = {"embedding": ("embedding",), "norm": ("scale", "bias"), "dense": ("kernel", "bias")}


def is_keras(config: dict) -> bool:
    return "registered_name" in config and "class_name" in config


def _class(config: dict, source, file: str) -> str:
    name = config.get("registered_name") or config.get("class_name")
    if not isinstance(name, str):
        raise ValueError(f"{source}: {file} names no keras class (registered_name / class_name); it is corrupt.")
    return name.split(">")[-1]


def _settings(config: dict, source, file: str) -> dict:
    return json_file.member(config, "config", pathlib.Path(source) / file)


def backbone_config(config: dict, source, dtype=None) -> BertConfig | DistilBertConfig:
    """The flaxbert config of a keras-hub backbone config.json (keras BERT uses tanh GELU; DistilBERT exact).

    Without `dtype` the model computes in float32, whatever policy the preset was saved with: keras-hub builds it in
    Keras' global policy (float32 unless a user set another) and casts the saved weights (REFERENCE §6.4, item 6).
    """
    name = _class(config, source, "config.json")
    if name not in _BACKBONES:
        raise ValueError(f"{source}: keras-hub class {name!r} is not supported; flaxbert reads {sorted(_BACKBONES)}.")
    c = _settings(config, source, "config.json")
    quantized = sorted(set(_policy_classes(c.get("dtype"))) - {"DTypePolicy", "FloatDTypePolicy", "DTypePolicyMap"})
    if quantized:  # Keras' quantize(): QuantizedDTypePolicy (int8, float8), Int4DTypePolicy, GPTQ, AWQ, ...
        raise ValueError(
            f"{source} is a quantized keras-hub preset (its config.json dtype holds {', '.join(quantized)}: "
            "integer or float8 weights with their scales); flaxbert reads float presets only. Load the preset it "
            "was quantized from."
        )
    try:
        common = dict(vocabulary_size=c["vocabulary_size"], num_layers=c["num_layers"], num_heads=c["num_heads"],
                      hidden_dim=c["hidden_dim"], intermediate_dim=c["intermediate_dim"],
                      dropout=c.get("dropout", 0.1), max_sequence_length=c.get("max_sequence_length", 512),
                      dtype=compute_dtype(dtype))  # fmt: skip
    except KeyError as missing:
        raise ValueError(f"{source}: config.json lacks {missing}, which a keras-hub {name} config needs; the file is "
                         "incomplete: download or copy the preset again.") from None  # fmt: skip
    try:
        if _BACKBONES[name] == "bert":
            return BertConfig(**common, num_segments=c.get("num_segments", 2), activation="gelu_approximate")
        return DistilBertConfig(**common, activation="gelu")
    except ValueError as error:  # a value flaxbert's config refuses: say whose
        raise ValueError(f"{source}: config.json does not describe a model flaxbert builds: {error}") from None


# keras-hub's text classifier preprocessors, by their registered names and the older aliases presets may carry
_CLASSIFIER_PREPROCESSORS = ("BertTextClassifierPreprocessor", "BertPreprocessor",
                             "DistilBertTextClassifierPreprocessor", "DistilBertPreprocessor")  # fmt: skip


def is_classifier_preprocessor(saved: dict, source) -> bool:
    """Whether a preprocessor.json is a text classifier's. keras-hub's TextClassifier.from_preset reads no other (a
    BertMaskedLMPreprocessor's length is for masking) and builds its default preprocessor instead."""
    return _class(saved, source, "preprocessor.json") in _CLASSIFIER_PREPROCESSORS


def read_task(directory) -> dict | None:
    """The preset's task.json (a keras-serialised task: a classifier, a masked LM, ...), or None without one."""
    path = pathlib.Path(directory) / "task.json"
    if not path.is_file():
        return None
    task = json_file.read(path)
    _class(task, directory, "task.json")
    return task


def is_classifier(task: dict | None) -> bool:
    """Whether a task.json (from `read_task`) is a text classifier flaxbert reads. Another task's (BertMaskedLM, ...)
    head is of no use to a classifier: keras-hub then loads the preset as a bare backbone, and so does flaxbert."""
    return task is not None and task_name(task) in _TASKS


def task_name(task: dict) -> str:
    """The keras class of a task.json from `read_task`, e.g. "BertMaskedLM"."""
    return _class(task, "a preset", "task.json")


def head_config(task: dict, source, architecture: str, overrides: dict) -> BertHeadConfig | DistilBertHeadConfig:
    """The head config of a keras-hub text classifier's task.json, over a backbone of `architecture` (config.json's).
    An activation flaxbert heads lack (keras-hub's sigmoid, for multi-label heads) is refused unless `overrides`
    (from_preset's head keywords) set the activation: `activation=None` keeps the trained weights, as logits."""
    name = _class(task, source, "task.json")
    if name not in _TASKS:
        raise ValueError(f"{source}: keras-hub task {name!r} is not supported; flaxbert reads {sorted(_TASKS)}.")
    if _TASKS[name] != architecture:
        backbone = next(b for b, a in _BACKBONES.items() if a == architecture)
        raise ValueError(
            f"{source}: task.json names a {name} but config.json a {backbone}: the files come from two presets. "
            "Copy or download the preset again."
        )
    c = _settings(task, source, "task.json")
    if not isinstance(c.get("num_classes"), int):
        raise ValueError(f"{source}: task.json has no integer 'num_classes' for its {name}; it is corrupt.")
    activation = c.get("activation")
    activation = None if activation in (None, "linear") else activation
    if activation not in (None, "softmax") and "activation" not in overrides:
        raise ValueError(
            f"{source}: task.json's {name} has activation={activation!r}; flaxbert heads output logits (None) or "
            "'softmax' probabilities. Pass activation=None to keep its trained weights and get their logits "
            "(jax.nn.sigmoid of them is a sigmoid head's output); fit then trains it as a single-label classifier."
        )
    activation = overrides.get("activation", activation)
    if _TASKS[name] == "bert":
        return BertHeadConfig(num_classes=c["num_classes"], activation=activation, dropout=c.get("dropout", 0.1))
    return DistilBertHeadConfig(num_classes=c["num_classes"], activation=activation, hidden_dim=c.get("hidden_dim"),
                                dropout=c.get("dropout", 0.2))  # fmt: skip


def _variables(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Every dataset of a `.weights.h5` file, as `{group path: array}` (skipping optimizer state)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the preset is incomplete: download or copy it again.")
    found = {}
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, item: found.__setitem__(name, _array(item)) if isinstance(item, h5py.Dataset)
                         and not name.startswith("optimizer") else None)  # fmt: skip
    except OSError as e:
        raise ValueError(f"{path} is not a readable .weights.h5 file ({e}); it may be truncated or corrupt.") from e
    return found


def _policy_classes(policy):
    """Every Keras class_name in a serialised dtype policy (a DTypePolicyMap nests one per layer)."""
    if isinstance(policy, dict):
        if isinstance(policy.get("class_name"), str):
            yield policy["class_name"]
        for value in policy.values():
            yield from _policy_classes(value)
    elif isinstance(policy, list):
        for value in policy:
            yield from _policy_classes(value)


def _array(dataset: h5py.Dataset) -> np.ndarray:
    """A dataset's values; Keras writes bfloat16 variables as opaque 2-byte records tagged `dtype="bfloat16"`, read
    here as float32, as float16 ones are (exactly: flaxbert keeps params in float32 and computes in the config's
    dtype, as keras-hub reloads a float16 preset's variables in float32)."""
    values = np.asarray(dataset)
    if dataset.attrs.get("dtype") in ("bfloat16", b"bfloat16"):
        values = values.view(ml_dtypes.bfloat16).astype(np.float32)
    return values.astype(np.float32) if values.dtype == np.float16 else values


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _kind(layer_path: tuple[str, ...]) -> str:
    last = layer_path[-1]
    if last.endswith("embedding"):
        return "embedding"
    return "norm" if last.endswith("layer_norm") else "dense"


def backbone_params(directory, source) -> dict:
    """The backbone params tree of `model.weights.h5`, or without one of the shards listed in `model.weights.json`:
    keras-hub's order, which matters where a preset saved sharded was saved over without (keras-hub leaves the old
    shards and their index beside the new file)."""
    directory = pathlib.Path(directory)
    index = directory / "model.weights.json"
    single = (directory / "model.weights.h5").exists() or not index.is_file()
    names = ["model.weights.h5"] if single else _shard_names(index)
    variables = {}
    for name in names:
        variables.update(_variables(directory / name))
    params = {}
    for name, value in variables.items():
        match = re.fullmatch(r"(?:layers/)?(?:\w+_backbone/)?(?:layers/)?(.+)/vars/(\d+)", name)
        if match is None:
            raise ValueError(f"{source}: unexpected variable {name!r} in the weights file.")
        layer, index_in_layer = match.group(1), int(match.group(2))
        encoder = _LAYER.fullmatch(layer)
        if encoder is not None:
            if encoder.group(2) not in _IN_LAYER:
                raise ValueError(f"{source}: unexpected variable {name!r} in a transformer layer.")
            path = (f"transformer_layer_{int(encoder.group(1) or 0)}", *_IN_LAYER[encoder.group(2)])
        elif layer in _TOP:
            path = _TOP[layer]
        else:
            raise ValueError(f"{source}: unexpected variable {name!r} in the weights file.")
        _set(params, (*path, _variable_name(_VAR_NAMES[_kind(path)], index_in_layer, name, source)), value)
    return params


def _shard_names(index: pathlib.Path) -> list[str]:
    """The `.weights.h5` files a sharded preset's `model.weights.json` lists."""
    # Each layer's entry names its shard file, or (Keras 3.15) the list of files its variables span.
    listed = json_file.member(json_file.read(index), "weight_map", index).values()
    names = [name for entry in listed for name in (entry if isinstance(entry, list) else [entry])]
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"{index}: 'weight_map' must map each layer to its file name(s); the index is corrupt.")
    return sorted(set(names))


def _variable_name(names: tuple[str, ...], index: int, variable: str, source) -> str:
    """The flaxbert name of a layer's `index`-th variable; a layer with more variables than its kind has is no
    BERT layer (Keras numbers a layer's variables 0, 1, ... in the order it creates them)."""
    if index >= len(names):
        raise ValueError(f"{source}: unexpected variable {variable!r} in the weights file: that layer has "
                         f"{len(names)} variable(s) ({', '.join(names)}).")  # fmt: skip
    return names[index]


def head_params(directory, head) -> dict:
    """The head params of `task.weights.h5`: BERT `dense` -> logits; DistilBERT `dense` -> pooled_dense, `dense_1`."""
    variables = _variables(pathlib.Path(directory) / "task.weights.h5")
    names = {"dense": "logits"} if isinstance(head, BertHeadConfig) else {"dense": "pooled_dense", "dense_1": "logits"}
    params = {}
    for name, value in variables.items():
        match = re.fullmatch(r"layers/(dense(?:_1)?)/vars/(\d+)", name)
        if match is not None and match.group(1) in names:
            variable = _variable_name(_VAR_NAMES["dense"], int(match.group(2)), name, directory)
            _set(params, (names[match.group(1)], variable), value)
    return params
