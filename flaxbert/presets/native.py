"""flaxbert's native preset format: what `save_to_preset` writes and what converted downloads are cached as.

    <dir>/config.json        {"format": "flaxbert", "format_version": 3, "architecture", "backbone", "task",
                              "tokenizer", "preprocessor"}: plain JSON of the frozen configs
    <dir>/vocabulary.txt     the WordPiece vocabulary, one token per line (when there is a tokenizer)
    <dir>/tokenizer.json     the same tokenizer in Hugging Face `tokenizers` format, for other tools
    <dir>/params/            the params tree as an Orbax checkpoint
    <dir>/checksums.json     the CRC-32 of each file of params/ and of vocabulary.txt (`file_checksums`), checked as
                             they are read

A preset is written into a temporary sibling directory and renamed into place at the end, so an interrupted save
never leaves a directory that looks complete. Params restore straight onto the shardings the caller names.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import inspect
import json
import pathlib
import shutil
import uuid

import jax
import orbax.checkpoint as ocp

from flaxbert import checkpoint
from flaxbert.models import lora
from flaxbert.models.config import BertConfig, BertHeadConfig, DistilBertConfig, DistilBertHeadConfig
from flaxbert.parallel.host import process_0s, wait_for_every_process
from flaxbert.presets import file_checksums, output_directory

# Version 2 (session 22): attention_kernel "auto" became the default. Version 1 wrote the default of its time, "xla",
# into every preset, so a version-1 "xla" is read as "auto" (`read`); flaxbert versions that know only version 1 say
# "upgrade flaxbert" to a version-2 preset instead of calling its "auto" damaged.
# Version 3 (session 30): special_tokens_in_strings matches [CLS], [SEP], [PAD] and [MASK] in text, as keras-hub does,
# not "[UNK]" (a transformers tokenizer lists it as a special added token). Versions 1 and 2 matched "[UNK]" too, so
# their tokenizers get it as a special added token on read (`read`): their ids stay what they were.
FORMAT, VERSION = "flaxbert", 3
READS = (1, 2, 3)
_BACKBONES = {"bert": BertConfig, "distil_bert": DistilBertConfig}
_HEADS = {"bert": BertHeadConfig, "distil_bert": DistilBertHeadConfig}
_KEYS = ("architecture", "backbone", "task", "tokenizer", "preprocessor")


def is_native(config: dict) -> bool:
    return config.get("format") == FORMAT


def save(directory, *, backbone_config, params: dict, head_config=None, tokenizer=None, preprocessor=None):
    """Writes a native preset. `params` is `{"backbone": ..., <head params>}` (head params only with a head). A preset
    holds no LoRA adapters: they are merged into their kernels (`lora.merged`), as keras-hub's `save_to_preset` does,
    so it computes the same function without LoRA.

    Raises:
        PresetWriteError: `directory` is no path, a URL, a file, or cannot be created there (nothing is written).
        FileExistsError: `directory` holds files already, or another process wrote it while this save ran.
    """
    directory = output_directory.new_directory(directory, "save_to_preset")
    backbone_config, params = lora.merged_config(backbone_config), lora.merged(params)
    architecture = "bert" if isinstance(backbone_config, BertConfig) else "distil_bert"
    config = {
        "format": FORMAT,
        "format_version": VERSION,
        "architecture": architecture,
        "backbone": _saved_fields(backbone_config),
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
            output_directory.make_staging(staging, directory, stacklevel=4)  # the saver's caller
            if tokenizer is not None:
                tokenizer.save_vocabulary(staging / "vocabulary.txt")
                tokenizer.save_tokenizer_json(staging / "tokenizer.json")
        wait_for_every_process("flaxbert-preset-staged")
        checkpoint.write_tree(staging / "params", params)
        wait_for_every_process("flaxbert-preset-params")
        if lead:
            (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            file_checksums.record(staging, ("params", "vocabulary.txt"))  # all params files are in (the barrier)
            output_directory.move_into_place(staging, directory, "save_to_preset")
        wait_for_every_process("flaxbert-preset-saved")  # no process returns before the preset is in place
    finally:
        if lead:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def read(directory) -> dict:
    """The config.json of a native preset, checked for its format version, its keys and its config fields, so that
    a damaged or foreign file is one error naming the file rather than a KeyError or TypeError deep in a load."""
    path = pathlib.Path(directory) / "config.json"
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the preset is corrupt: save it again.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not a preset's settings; it is corrupt.")
    version = config.get("format_version")
    if version is not None and type(version) is not int:  # true and 1.0 equal 1: damage, not version 1
        raise ValueError(f"{path}: format_version is {json.dumps(version)}, not a version number; the file is "
                         "corrupt: save the preset again from its model.")  # fmt: skip
    if version not in READS:
        raise ValueError(
            f"{path} is flaxbert format version {json.dumps(version)}; this flaxbert reads versions "
            f"{', '.join(map(str, READS))}: upgrade flaxbert (or re-save the preset with this version)."
        )
    _check_keys(config, path)  # the backbone is an object of config fields from here
    backbone = config["backbone"]
    if config["format_version"] == 1 and backbone.get("attention_kernel") == "xla":
        config = dict(config, backbone=dict(backbone, attention_kernel="auto"))  # version 1's default, not a choice
    tokenizer = config["tokenizer"]
    if config["format_version"] < 3 and isinstance(tokenizer, dict) and tokenizer.get("special_tokens_in_strings"):
        from flaxbert.text.vocabulary import UNK_AS_ADDED_TOKEN  # here: flaxbert.text imports the presets

        added = list(tokenizer.get("added_tokens") or [])
        if not any(isinstance(t, dict) and t.get("content") == UNK_AS_ADDED_TOKEN["content"] for t in added):
            added.append(dict(UNK_AS_ADDED_TOKEN))
        config = dict(config, tokenizer=dict(tokenizer, added_tokens=added))
    return config


def _check_keys(config: dict, path: pathlib.Path) -> None:
    """Refuses a config.json this flaxbert cannot build its configs from, saying which keys are unknown (a newer
    flaxbert wrote them: upgrade) or missing or wrong (a damaged file: save the preset again)."""
    newer, damaged = [], [f"no '{key}'" for key in _KEYS if key not in config]
    architecture = config.get("architecture")
    if "architecture" in config and architecture not in _BACKBONES:
        newer.append(f"architecture {architecture!r} (this flaxbert has {', '.join(_BACKBONES)})")
    elif architecture in _BACKBONES:
        for key, config_cls in (("backbone", _BACKBONES[architecture]), ("task", _HEADS[architecture])):
            unknown, wrong = _field_problems(config, key, config_cls, optional=key == "task")
            newer, damaged = newer + unknown, damaged + wrong
    for key, known in _text_settings().items():
        values = config.get(key)
        if not isinstance(values, (dict, type(None))):
            damaged.append(f"'{key}' is a {type(values).__name__}, not an object or null")
        elif values and set(values) - known:
            newer.append(f"'{key}' has settings this flaxbert does not know: {', '.join(sorted(set(values) - known))}")
    if not (newer or damaged):
        return
    fix = "save the preset again from its model"
    fix = f"upgrade flaxbert if a newer version wrote it; otherwise {fix}" if newer and not damaged else fix
    raise ValueError(f"{path} does not fit this flaxbert: {'; '.join(newer + damaged)}. Fix: {fix}.")


def _text_settings() -> dict[str, set[str]]:
    """The settings config.json's "tokenizer" and "preprocessor" may hold: their constructors' keywords."""
    from flaxbert.text import BertTextClassifierPreprocessor, BertTokenizer  # here: flaxbert.text imports the presets

    def keywords(cls, *taken) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self", *taken}

    return {
        "tokenizer": keywords(BertTokenizer, "vocabulary"),
        "preprocessor": keywords(BertTextClassifierPreprocessor, "tokenizer"),
    }


def _field_problems(config: dict, key: str, config_cls, optional: bool) -> tuple[list[str], list[str]]:
    """What of `config[key]` `config_cls` does not know (a newer flaxbert's fields), and what is missing or wrong."""
    values = config.get(key)
    if key not in config or (optional and values is None):
        return [], []
    if not isinstance(values, dict):
        return [], [f"'{key}' is {json.dumps(values)}, not an object of {config_cls.__name__} fields"]
    fields = dataclasses.fields(config_cls)
    unknown = sorted(set(values) - {f.name for f in fields})
    needed = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in values]
    if unknown or needed:
        newer = [f"'{key}' has fields {config_cls.__name__} does not know: {', '.join(unknown)}"] if unknown else []
        return newer, [f"'{key}' lacks {', '.join(needed)}"] if needed else []
    try:
        config_cls(**values)  # the config checks its values (a positive hidden_dim, a known activation, ...)
    except (ValueError, TypeError) as e:
        return [], [f"'{key}': {str(e).rstrip('.')}"]
    return [], []


def _saved_fields(backbone_config) -> dict:
    """A (merged) backbone config's fields as config.json holds them: without LoRA's, which a preset never has, so
    presets stay as flaxbert wrote them before LoRA, readable by those versions."""
    fields = dataclasses.asdict(backbone_config)
    del fields["lora_rank"], fields["lora_targets"]
    return fields


def backbone_config(config: dict, dtype: str | None = None):
    fields = dict(config["backbone"], **({"dtype": dtype} if dtype else {}))
    return _BACKBONES[config["architecture"]](**fields)


def head_config(config: dict):
    return None if config["task"] is None else _HEADS[config["architecture"]](**config["task"])


def restore_params(directory, abstract, shardings=None) -> dict:
    """The params tree restored onto `shardings` (a tree like `abstract`; None: the default device).

    The files' checksums are computed in a thread while Orbax restores (zlib and TensorStore leave the GIL), and the
    params are returned only once they match.

    Raises:
        ValueError: the saved params do not fit `abstract` (names the array), or the files are damaged or unreadable.
    """
    path = pathlib.Path(directory).absolute() / "params"
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flaxbert-checksums") as pool:
        checked = pool.submit(file_checksums.check, path.parent, "params")
        try:
            params = _restore(path, abstract, shardings)
        except ValueError:
            if checked.exception() is not None:  # a damaged file says which it is, not what Orbax made of it
                raise checked.exception() from None
            raise
        checked.result()
    return params


def _restore(path: pathlib.Path, abstract, shardings) -> dict:
    _check_saved(path, abstract)
    if shardings is None:
        shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), abstract)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    try:
        return checkpoint.read_tree(path, target)
    except Exception as e:  # Orbax, TensorStore (a bare Exception for a truncated array file) and file errors
        raise ValueError(
            f"{path} could not be restored into the model's params ({checkpoint.short_cause(e)}); the preset may be "
            "corrupt."
        ) from None


def _check_saved(path: pathlib.Path, abstract) -> None:
    """Compares the saved arrays' names and shapes (Orbax's metadata) with the params the config describes, before
    restoring: a failed restore prints a page of Orbax and TensorStore tracebacks before its error."""
    handler = ocp.PyTreeCheckpointHandler()
    checkpoint.drop_closed_loop_reports()
    try:
        saved = checkpoint.saved_shapes(handler.metadata(path))
    except Exception as e:  # no params directory, no metadata, a damaged metadata file
        raise ValueError(
            f"{path} could not be read as the preset's params ({checkpoint.short_cause(e)}); the preset is incomplete "
            "or corrupt: copy or save it again."
        ) from None
    finally:
        handler.close()
    wanted = checkpoint.shapes_by_name(abstract)
    differ = [f"{n} is saved as {saved[n]}, the config makes it {s}" for n, s in wanted.items() if saved.get(n, s) != s]
    differ += [f"the config's {n} is not saved" for n in wanted if n not in saved]
    differ += [f"the saved {n} is not in the config's model" for n in saved if n not in wanted]
    if differ:
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        raise ValueError(
            f"{path} does not fit {path.parent / 'config.json'}: {differ[0]}{more}. The params were saved with "
            "another config: save the preset again from its model."
        )
