"""CRC-32 checksums of a native preset's params files and vocabulary: `save_to_preset` records them, and a load
checks each as it reads it.

Orbax checksums only its shard index, not the array data: a byte flipped in a copy of a preset (a failing disk, a
sync cut short and resumed) loaded as other weights without a word, and a cut vocabulary.txt as a tokenizer that
reads the lost tokens as [UNK]. The JSON files are left out: each is checked as it is read, and a user may edit
config.json by hand (label names, dropout). CRC-32 detects every change of up to 32 consecutive bits, and any other
with probability 1 - 2**-32; zlib computes it at ~3 GB/s on one core (BERT-base's 440 MB of params: ~0.15 s, in a
thread beside Orbax's restore of them, `native.restore_params`). A preset written before checksums has no
checksums.json and loads unchecked, as it always did.

    <dir>/checksums.json   {"crc32": {"params/_METADATA": "1a2b3c4d", ..., "vocabulary.txt": "..."}}
"""

from __future__ import annotations

import pathlib
import zlib

from flaxbert.presets import json_file

NAME = "checksums.json"
_CHUNK = 16 << 20  # bytes read at a time: zlib releases the GIL for each, and memory stays flat


def record(directory, names: tuple[str, ...]) -> None:
    """Writes `directory`/checksums.json: the CRC-32 of each file of `names` (paths relative to `directory`; a
    folder stands for every file under it), by its relative path."""
    directory = pathlib.Path(directory)
    files = [path for name in names for path in _files(directory / name)]
    crcs = {p.relative_to(directory).as_posix(): f"{_crc32(p):08x}" for p in files}
    json_file.write(directory / NAME, {"crc32": crcs})


def _files(path: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []


def check(directory, within: str) -> None:
    """Checks the files `directory`/checksums.json records at or under `within` (a path relative to `directory`);
    nothing where there is no checksums.json (a preset saved before checksums).

    Raises:
        ValueError: a recorded file differs from what was saved, or checksums.json itself is damaged.
        FileNotFoundError: a recorded file is missing.
    """
    directory = pathlib.Path(directory)
    path = directory / NAME
    if not path.is_file():
        return
    for name, saved in json_file.member(json_file.read(path), "crc32", path).items():
        if name != within and not name.startswith(within + "/"):
            continue
        file = directory / name
        if not isinstance(saved, str):
            raise ValueError(f"{path}: the checksum of {name} is {saved!r}, not a hex string; the file is corrupt.")
        if not file.is_file():
            raise FileNotFoundError(f"{directory} is incomplete: {name} is missing. {_fix(directory)}")
        if f"{_crc32(file):08x}" != saved:
            raise ValueError(
                f"{file} is not the file save_to_preset wrote (its CRC-32 differs from {path.name}'s): the preset "
                f"is corrupt. {_fix(directory)}"
            )


def _fix(directory: pathlib.Path) -> str:
    from flaxbert.presets.conversion_cache import cache_root  # here: the cache saves through this module

    if directory.absolute().is_relative_to(cache_root().absolute()):
        return f"It is flaxbert's converted copy of a download: delete {directory}, and the next load converts again."
    return "Copy it again, or save it again from its model."


def _crc32(path: pathlib.Path) -> int:
    crc, buffer = 0, memoryview(bytearray(min(_CHUNK, path.stat().st_size + 1)))  # one buffer, no bytes per chunk
    with path.open("rb", buffering=0) as f:
        while size := f.readinto(buffer):
            crc = zlib.crc32(buffer[:size], crc)
    return crc
