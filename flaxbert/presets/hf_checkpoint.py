"""Reads a Hugging Face transformers checkpoint directory: config.json and its weight files, into flaxbert params.

Weights are read from `model.safetensors`, sharded safetensors (`model.safetensors.index.json`), `pytorch_model.bin`
or sharded `.bin` files, with or without the `bert.` / `distilbert.` prefix. Arrays go from the file straight into
the params tree: nothing is randomly initialised first, and the tree is checked against `jax.eval_shape` of the model.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError, safe_open

from flaxbert.models import BertClassifier, BertEncoder, DistilBertClassifier, DistilBertEncoder
from flaxbert.models.abstract import abstract_params, check_params
from flaxbert.models.config import BertConfig, DistilBertConfig, check_architecture, compute_dtype
from flaxbert.models.random_init import random_params
from flaxbert.parallel.mesh import warning_stacklevel
from flaxbert.presets import hf_convert, json_file, torch_pickle

# The weight files transformers reads, in its order of preference: the reader here and the hf:// download (resolve.py)
# take the first one a checkpoint has.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HEAD_KEYS = ("classifier.weight",)


def read_config(directory) -> dict:
    """The parsed config.json of a checkpoint directory, or an error that says what is missing where."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory; from_preset expects a checkpoint directory.")
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no config.json; a preset directory needs config.json next to its weights "
            "(a Hugging Face transformers checkpoint, a keras-hub preset or a flaxbert preset)."
        )
    return json_file.read(path)


def _from_safetensors(path: pathlib.Path, read):
    """`read(file)` on the opened safetensors file, or an error saying that the file is unreadable."""
    try:
        with safe_open(path, framework="numpy") as f:
            return read(f)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a readable safetensors file ({e}); it may be truncated or corrupt: download it again."
        ) from e


def _existing(path: pathlib.Path) -> pathlib.Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in the checkpoint's index but does not exist.")
    return path


def _read_file(path: pathlib.Path) -> dict[str, np.ndarray]:
    if _existing(path).suffix != ".safetensors":
        return torch_pickle.load_state_dict(path)
    return _from_safetensors(path, lambda f: {key: f.get_tensor(key) for key in f.keys()})  # noqa: SIM118


def _file_shapes(path: pathlib.Path) -> dict[str, tuple[int, ...]]:
    if _existing(path).suffix != ".safetensors":
        return {key: value.shape for key, value in torch_pickle.load_state_dict(path).items()}
    return _from_safetensors(path, lambda f: {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()})  # noqa: SIM118


def _weight_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """The files that hold a checkpoint's weights: the first of `WEIGHT_FILES` found, or the shards it lists."""
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            return [directory / shard for shard in shard_names(path)] if name.endswith(".index.json") else [path]
    raise FileNotFoundError(f"{directory} has no weights: looked for {', '.join(WEIGHT_FILES)}.")


def read_state_dict(directory) -> dict[str, np.ndarray]:
    """All weights of a checkpoint directory as `{hf_key: array}`."""
    state = {}
    for path in _weight_files(pathlib.Path(directory)):
        state.update(_read_file(path))
    return state


def weight_shapes(directory) -> dict[str, tuple[int, ...]]:
    """The name and shape of every weight of a checkpoint directory; safetensors files are read only in their header
    (a pytorch_model.bin, whole)."""
    shapes = {}
    for path in _weight_files(pathlib.Path(directory)):
        shapes.update(_file_shapes(path))
    return shapes


def shard_names(index: pathlib.Path) -> list[str]:
    """The weight files a shard index lists (its `weight_map` maps each weight name to its file's name)."""
    weight_map = json_file.member(json_file.read(index), "weight_map", index)
    if not all(isinstance(name, str) for name in weight_map.values()):
        raise ValueError(f"{index}: 'weight_map' must map each weight name to a file name; the index is corrupt.")
    return sorted(set(weight_map.values()))


def checkpoint_config(directory, state: dict | None = None, shapes: dict | None = None) -> dict:
    """config.json as the checkpoint's weights complete it.

    A `*ForSequenceClassification` model saved as `config.save_pretrained` beside `torch.save(model.state_dict())`
    (as training scripts often do) has a config without `architectures`, or one copied from its base checkpoint that
    names `BertForMaskedLM`; transformers builds whatever class it is asked for and finds the head by its weights'
    names. So does flaxbert (`hf_convert.head_from_weights`): its head is kept, not silently replaced by a random one.
    `state` (the read weights) or `shapes` (`weight_shapes`') spare reading them again; without either only
    safetensors headers are read (a pytorch_model.bin whole).
    """
    hf = read_config(directory)
    if hf_convert.names_its_head(hf):
        return hf
    if shapes is None:
        shapes = weight_shapes(directory) if state is None else {key: np.shape(v) for key, v in state.items()}
    return hf_convert.head_from_weights(hf, shapes, str(directory))


class OtherTask(NamedTuple):
    """A checkpoint fine-tuned for another task than sequence classification, in words: `what` it is and how its
    `encoder` loads."""

    what: str
    encoder: str


def other_task(directory, hf: dict | None = None) -> OtherTask | None:
    """Says what a token classification, multiple choice or question answering checkpoint is and what of it flaxbert
    loads; None for sequence classifiers and base checkpoints. `hf`: config.json as `checkpoint_config` completed it
    (a config naming no architectures), else config.json is read."""
    hf, source = read_config(directory) if hf is None else hf, str(directory)
    found = hf_convert.other_task(hf)
    if found is None:
        return None
    name, task = found
    what = (
        f"{source} is a {name} checkpoint, a {task}; flaxbert runs sequence classifiers (*ForSequenceClassification: "
        "a label for each text)."
    )
    bert = hf_convert.architecture(hf, source) == "bert"
    encoder = (
        f"Its encoder loads: {'BertBackbone' if bert else 'DistilBertBackbone'}.from_preset(...) alone, or "
        "TextClassifier.from_preset(..., num_classes=N) with a new classification head."
    )
    return OtherTask(what, encoder)


def _has_head(state: dict) -> bool:
    return any(key.endswith(_HEAD_KEYS) for key in state)


def _to_arrays(params):
    # Host arrays move to the default device once; sharded placement is the caller's (training, presets) concern.
    return {k: _to_arrays(v) if isinstance(v, dict) else jnp.asarray(v, jnp.float32) for k, v in params.items()}


def load_backbone(directory, dtype=None, expected: str | None = None, *, state: dict | None = None, seed: int = 0):
    """Reads a transformers BERT/DistilBERT checkpoint's encoder.

    Args:
        directory: a local checkpoint directory (config.json + weights).
        dtype: the compute dtype (params stay float32).
        expected: "bert" or "distil_bert" to reject the other architecture with a message naming the right class.
        state: the checkpoint's weights when already read (`read_state_dict`); None reads them.
        seed: the seed of a BERT pooler the checkpoint lacks.

    Returns:
        `(config, params)` where params is the encoder's tree (float32 arrays).

    Warns when the checkpoint's attention-probability dropout differs from its hidden dropout: flaxbert has one rate
    (`hf_convert.dropout_note`). A BERT checkpoint without the pooler (transformers saves BertForMaskedLM,
    BertForTokenClassification and BertForQuestionAnswering without one) gets a randomly initialised pooler, the one
    `BertBackbone.from_config(config, seed=seed)` has, with a warning naming it: what transformers'
    `BertModel.from_pretrained` does with such a checkpoint.
    """
    cfg = load_config(directory, dtype, expected)
    source = str(directory)
    _warn_dropout(directory)
    state = read_state_dict(directory) if state is None else state
    _warn_unused(state, cfg, source)
    encoder = BertEncoder(cfg) if isinstance(cfg, BertConfig) else DistilBertEncoder(cfg)
    pooler = not isinstance(cfg, BertConfig) or hf_convert.has_pooler(state)
    params = hf_convert.params_from_state_dict(state, cfg, with_head=False, source=source, pooler=pooler)
    if not pooler:
        warnings.warn(
            f"{source} has no pooler (pooler.dense.weight and .bias): transformers saves BertForMaskedLM, "
            "BertForTokenClassification and BertForQuestionAnswering without it. flaxbert initialises it randomly "
            f"(seed {seed}), as transformers does: pooled_output is random until fine-tuned, and so is a "
            "classifier's input; sequence_output is the checkpoint's.",
            stacklevel=warning_stacklevel(4),  # the caller of BertBackbone.from_preset
        )
        params["pooled_dense"] = _fresh_pooler(encoder, cfg, seed)
    params = _to_arrays(params)  # float32, as flaxbert's params always are: half-precision checkpoints are cast
    check_params(params, abstract_params(encoder, cfg), source)
    return cfg, params


def _fresh_pooler(encoder, cfg, seed: int) -> dict:
    """The pooler `BertBackbone.from_config(cfg, seed=seed)` is born with."""
    return random_params(abstract_params(encoder, cfg)["pooled_dense"], seed, ("pooled_dense",))


def load_classifier(directory, dtype=None, expected: str | None = None, *, state: dict | None = None):
    """Reads a `BertForSequenceClassification` / `DistilBertForSequenceClassification` checkpoint with its head (also
    one whose config.json names no architectures: `checkpoint_config`).

    Args:
        directory, dtype, expected, state: as for `load_backbone`.

    Returns:
        `(backbone_config, head_config, params)`; params is `{"backbone": ..., <head params>}`.

    Warns as `load_backbone` does when the checkpoint has two dropout rates.

    Raises:
        ValueError: the checkpoint is no sequence classifier (a bare encoder, a regression, multi-label, token
            classification, multiple choice or question answering head), saying what it is and what loads.
    """
    cfg = load_config(directory, dtype, expected)
    source = str(directory)
    task = other_task(directory)
    if task is not None:
        raise ValueError(f"{task.what} {task.encoder}")
    state = read_state_dict(directory) if state is None else state
    hf = checkpoint_config(directory, state)
    head = hf_convert.head_config(hf, source)
    _warn_dropout(directory)
    _warn_unused(state, cfg, source)
    if not _has_head(state):
        named = [a for a in hf.get("architectures") or [] if str(a).endswith("ForSequenceClassification")]
        if named:  # a shard left out of the index, a partial copy: not a bare encoder
            raise ValueError(
                f"{source}'s config.json names {named[0]}, but its weights hold no classification head (no "
                "'classifier.weight'): the checkpoint is incomplete (a shard left out, or a copy cut short). "
                "Download or copy it again; its encoder alone loads as a backbone."
            )
        raise ValueError(
            f"{source} has no classification head (no 'classifier.weight'); it is a bare encoder: "
            "load it as a backbone and attach a new head instead."
        )
    params = hf_convert.params_from_state_dict(state, cfg, with_head=True, source=source)
    model = BertClassifier(cfg, head) if isinstance(cfg, BertConfig) else DistilBertClassifier(cfg, head)
    params = _to_arrays(params)  # float32 (half-precision checkpoints are cast)
    check_params(params, abstract_params(model, cfg), source)
    return cfg, head, params


def _warn_unused(state: dict, cfg, source: str) -> None:
    unused = hf_convert.unused_encoder_weights(state, cfg)
    if unused:
        warnings.warn(
            f"{source}: {len(unused)} encoder weights of the checkpoint have no place in the model its config.json "
            f"describes ({cfg.num_layers} layers), and are not used: {', '.join(unused[:4])}"
            f"{', ...' if len(unused) > 4 else ''}. transformers loads it so too (it reports them as unexpected); "
            "if the weights are the model, config.json is not theirs.",
            stacklevel=warning_stacklevel(4),
        )


def _warn_dropout(directory) -> None:
    # Here, where weights are read, not in load_config, which loaders also call just to look: one warning a load.
    note = hf_convert.dropout_note(read_config(directory), str(directory))
    if note is not None:
        warnings.warn(note, stacklevel=warning_stacklevel(3))


def load_config(directory, dtype=None, expected: str | None = None) -> BertConfig | DistilBertConfig:
    """The backbone config of a checkpoint directory; `expected` ("bert" / "distil_bert") rejects the other one."""
    hf, source = read_config(directory), str(directory)
    check_architecture(hf_convert.architecture(hf, source), expected, source)
    return hf_convert.backbone_config(hf, source, compute_dtype(dtype))
