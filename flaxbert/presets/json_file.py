"""Reading the JSON side files of a preset (config.json, task.json, tokenizer files, shard indexes), and writing
JSON files whole.

A damaged or foreign file must fail with flaxbert's own message, naming the file and what is wrong with it, not with
a `JSONDecodeError` or a `KeyError` from deep inside a loader. No jax here: the text pipeline reads these files too.
"""

from __future__ import annotations

import json
import os
import pathlib


def read(path: str | os.PathLike) -> dict:
    """The JSON object that `path` holds.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not UTF-8 JSON, or holds another JSON value than an object (a list, a number, ...).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the preset is incomplete: download or copy it again.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the file is corrupt.") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {_kind(data)}, not an object of settings; it is corrupt.")
    return data


def write(path: str | os.PathLike, data) -> None:
    """Writes `data` as indented JSON to `path` through a sibling file renamed over it: `path` holds the old text or
    the new, never a part of it (a kill mid-write left a config.json that --resume refused)."""
    path = pathlib.Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def member(data: dict, key: str, path, kind: type = dict):
    """`data[key]`, read from the file `path`, or a ValueError saying it is missing or of the wrong JSON type."""
    if key not in data:
        raise ValueError(f"{path} lacks {key!r}; the file is incomplete or of another kind.")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{path}: {key!r} is a JSON {_kind(value)}, not {_NAMES.get(kind, kind.__name__)}.")
    return value


_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "true or false"}


def _kind(value) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
