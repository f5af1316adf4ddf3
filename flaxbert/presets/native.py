"""flaxbert's native preset format: what `save_to_preset` writes and what converted downloads are cached as.

    <dir>/config.json        {"format": "flaxbert", "format_version": 1, "architecture", "backbone", "task",
                              "tokenizer", "preprocessor"}: plain JSON of the frozen configs
    <dir>/vocabulary.txt     the WordPiece vocabulary, one token per line (when there is a tokenizer)
    <dir>/tokenizer.json     the same tokenizer in Hugging Face `tokenizers` format, for other tools
    <dir>/params/            the params tree as an Orbax checkpoint

A preset is written into a temporary sibling directory and renamed into place at the end, so an interrupted save
never leaves a directory that looks complete. Params restore straight onto the shardings the caller names.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import uuid

import jax

from flaxbert import checkpoint
from flaxbert.models.config import BertConfig, BertHeadConfig, DistilBertConfig, DistilBertHeadConfig
from flaxbert.parallel.host import process_0s, wait_for_every_process

FORMAT, VERSION = "flaxbert", 1
_BACKBONES = {"bert": BertConfig, "distil_bert": DistilBertConfig}
_HEADS = {"bert": BertHeadConfig, "distil_bert": DistilBertHeadConfig}


def is_native(config: dict) -> bool:
    return config.get("format") == FORMAT


def save(directory, *, backbone_config, params: dict, head_config=None, tokenizer=None, preprocessor=None):
    """Writes a native preset. `params` is `{"backbone": ..., <head params>}` (head params only with a head)."""
    directory = pathlib.Path(directory).absolute()
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty; save_to_preset writes a new directory.")
    architecture = "bert" if isinstance(backbone_config, BertConfig) else "distil_bert"
    config = {
        "format": FORMAT,
        "format_version": VERSION,
        "architecture": architecture,
        "backbone": dataclasses.asdict(backbone_config),
        "task": None if head_config is None else dataclasses.asdict(head_config),
        "tokenizer": None if tokenizer is None else tokenizer.get_config(),
        "preprocessor": None if preprocessor is None else preprocessor.get_config(),
    }
    # In a multi-process job every process saves its shards of the params into the same staging directory (hence
    # process 0's random name), and process 0 alone writes the other files and renames the directory into place.
    lead = jax.process_index() == 0
    staging = directory.with_name(f".{directory.name}.partial-{process_0s(uuid.uuid4().int & 0xFFFFFFFF):08x}")
    try:
        if lead:
            staging.mkdir(parents=True)
            if tokenizer is not None:
                tokenizer.save_vocabulary(staging / "vocabulary.txt")
                tokenizer.save_tokenizer_json(staging / "tokenizer.json")
        wait_for_every_process("flaxbert-preset-staged")
        checkpoint.write_tree(staging / "params", params)
        wait_for_every_process("flaxbert-preset-params")
        if lead:
            (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            if directory.exists():
                directory.rmdir()
            staging.rename(directory)
        wait_for_every_process("flaxbert-preset-saved")  # no process returns before the preset is in place
    finally:
        if lead:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def read(directory) -> dict:
    """The config.json of a native preset, checked for its format version."""
    path = pathlib.Path(directory) / "config.json"
    config = json.loads(path.read_text())
    if config.get("format_version") != VERSION:
        raise ValueError(
            f"{path} is flaxbert format version {config.get('format_version')}; this flaxbert reads version "
            f"{VERSION}: upgrade flaxbert (or re-save the preset with this version)."
        )
    return config


def backbone_config(config: dict, dtype: str | None = None):
    fields = dict(config["backbone"], **({"dtype": dtype} if dtype else {}))
    return _BACKBONES[config["architecture"]](**fields)


def head_config(config: dict):
    return None if config["task"] is None else _HEADS[config["architecture"]](**config["task"])


def restore_params(directory, abstract, shardings=None) -> dict:
    """The params tree restored onto `shardings` (a tree like `abstract`; None: the default device).

    Raises:
        ValueError: the saved params do not fit `abstract` (names the problem), or the files are unreadable.
    """
    path = pathlib.Path(directory).absolute() / "params"
    if shardings is None:
        shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), abstract)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    try:
        return checkpoint.read_tree(path, target)
    except Exception as e:  # Orbax, TensorStore (a bare Exception for a truncated array file) and file errors
        cause = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise ValueError(
            f"{path} could not be restored into the model's params ({cause}); the preset may be corrupt."
        ) from None
