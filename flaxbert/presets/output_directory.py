"""The new directories that `save_to_preset` and `export_to_transformers` write: refused before anything is written
when they cannot be one, and filled through a hidden sibling staging directory that is renamed into place."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class PresetWriteError(ValueError):
    """A directory that cannot be written where asked: a URL, a read-only place, a path at or under a file."""


def new_directory(directory, writer: str) -> pathlib.Path:
    """The absolute path `writer` (the caller's name, for messages) writes to: a new or empty directory. A symbolic
    link stands for the directory it points to.

    Raises:
        PresetWriteError: `directory` is no path, a URL, or a file.
        FileExistsError: `directory` holds files already.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise PresetWriteError(f"{writer} writes a directory: pass a str or pathlib.Path, not {directory!r}.")
    if isinstance(directory, str) and _URL.match(directory):
        raise PresetWriteError(
            f"{directory!r} is a URL; {writer} writes a local directory. Write it to a local path, then copy it up "
            "(gsutil -m cp -r, aws s3 cp --recursive, or huggingface_hub's upload_folder for the Hub)."
        )
    directory = pathlib.Path(directory).expanduser().absolute()
    if directory.is_symlink():
        directory = directory.resolve()  # a dangling link: the path it names, created by the write
    if directory.exists() and not directory.is_dir():
        raise PresetWriteError(f"{directory} is a file; {writer} writes a new directory: pass another path.")
    if directory.is_dir() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty; {writer} writes a new directory.")
    return directory


def make_staging(staging: pathlib.Path, directory: pathlib.Path) -> None:
    """Creates the hidden `staging` directory (and `directory`'s missing parents) for a write to `directory`; an
    error names `directory`, the one the user asked for."""
    try:
        staging.mkdir(parents=True)
    except OSError as e:
        existing = next(p for p in staging.parents if p.exists())
        why = f"{existing} is a file" if not existing.is_dir() else f"{existing}: {e.strerror}"
        raise PresetWriteError(
            f"cannot create the directory {directory} ({why}); pass a path in a writable directory."
        ) from None


def move_into_place(staging: pathlib.Path, directory: pathlib.Path, writer: str) -> None:
    """Renames `staging` to `directory` (atomic; an empty `directory` made for the write is replaced)."""
    try:
        with contextlib.suppress(FileNotFoundError):
            directory.rmdir()  # an empty directory made for the write; any other is refused below or by rmdir
        staging.rename(directory)  # never over a directory with files in it
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        raise FileExistsError(
            f"{directory} exists and is not empty: another process wrote it while this {writer} ran; {writer} writes "
            "a new directory."
        ) from None
