"""The new directories that `save_to_preset` and `export_to_transformers` write: refused before anything is written
when they cannot be one, and filled through a hidden sibling staging directory that is renamed into place."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import warnings

from flaxbert.parallel.mesh import warning_stacklevel

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
    if directory.is_dir() and os.path.ismount(directory):
        raise PresetWriteError(
            f"{directory} is a mount point; {writer} fills a hidden directory beside its destination and renames it "
            f"into place, which cannot replace a mount point: pass a path inside it, such as {directory / 'model'}."
        )
    return directory


def make_staging(staging: pathlib.Path, directory: pathlib.Path, stacklevel: int) -> None:
    """Creates the hidden `staging` directory (and `directory`'s missing parents) for a write to `directory`; an
    error names `directory`, the one the user asked for. Warns of staging directories an earlier write to
    `directory` left behind (a process killed mid-save): they are the user's to delete. `stacklevel` is the warning's,
    counted from this function."""
    try:
        staging.mkdir(parents=True)
    except OSError as e:
        existing = next(p for p in staging.parents if p.exists())
        if directory.is_dir():  # an empty directory the user made: it is its parent that refused
            raise PresetWriteError(
                f"cannot write {directory}: the files are first written to a hidden directory beside it, then renamed "
                f"into place, and {existing} refused it ({e.strerror}). Pass a path inside it, such as "
                f"{directory / 'model'}, or a path in a writable directory."
            ) from None
        why = f"{existing} is a file" if not existing.is_dir() else f"{existing}: {e.strerror}"
        raise PresetWriteError(
            f"cannot create the directory {directory} ({why}); pass a path in a writable directory."
        ) from None
    prefix = f".{directory.name}.partial-"
    left = sorted(p.name for p in staging.parent.iterdir() if p.name.startswith(prefix) and p != staging)
    if left:
        warnings.warn(
            f"{staging.parent} holds {', '.join(left)}: the unfinished files of an earlier write to {directory} that "
            "was killed before it ended (or of one still running). Nothing reads them; delete them once no other "
            "process writes to that path.",
            stacklevel=warning_stacklevel(stacklevel),
        )


def move_into_place(staging: pathlib.Path, directory: pathlib.Path, writer: str) -> None:
    """Renames `staging` to `directory` (atomic; an empty `directory` made for the write is replaced)."""
    emptied = False
    try:
        with contextlib.suppress(FileNotFoundError):
            directory.rmdir()  # an empty directory made for the write; any other is refused below or by rmdir
            emptied = True
        staging.rename(directory)  # never over a directory with files in it
    except OSError as e:
        if emptied:  # the user's empty directory comes back as it was
            with contextlib.suppress(OSError):
                directory.mkdir()
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise PresetWriteError(
                f"cannot move the written files into {directory} ({e.strerror}); nothing was written there. Pass a "
                "new path in a writable directory."
            ) from None
        raise FileExistsError(
            f"{directory} exists and is not empty: another process wrote it while this {writer} ran; {writer} writes "
            "a new directory."
        ) from None
