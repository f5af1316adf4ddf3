"""Turns what a user passes as `preset` into a local directory: a path, a built-in name, `hf://org/repo[@revision]`
or `kaggle://...`.

A directory that exists is loaded from, whatever its name, as transformers does: a preset saved as
`./bert_tiny_en_uncased` loads from there, offline. Other built-in names resolve to keras-hub's own mirror on the
Hugging Face Hub (`hf://keras/<name>`), which huggingface_hub downloads into its cache (`HF_HOME`, `HF_HUB_CACHE`)
and serves from there offline (`HF_HUB_OFFLINE=1`). Only the files a load needs are fetched: the repository's listing
is read first, then its top-level configs and vocabularies (and keras-hub's `assets/`), plus, when weights are
wanted, the one weight format the preset's config.json says its loader reads (a transformers repository often holds
safetensors, a torch `.bin`, TensorFlow, Flax and ONNX copies of the same weights, and Trainer checkpoints in
subfolders). A downloaded keras or transformers preset is converted once into flaxbert's native format
(`conversion_cache`).
"""

from __future__ import annotations

import difflib
import glob
import os
import pathlib
import re

import numpy as np

from flaxbert.models.config import check_architecture
from flaxbert.presets import conversion_cache, hf_checkpoint, keras_format, native
from flaxbert.presets.registry import PRESETS

_CONFIG_SUFFIXES = (".json", ".txt")  # configs, tokenizer files and vocabularies, at the top level
_ASSETS = "assets/"  # keras-hub's tokenizer assets
# Offline with no listing cached, the cache is read with patterns (they match in subfolders too: fnmatch's `*`
# matches "/").
_CONFIG_PATTERNS = ["*.json", "*.txt", "assets/**"]


def resolve(preset, load_weights: bool = True, architecture: str | None = None) -> pathlib.Path:
    """A local directory with the preset's files (downloading what is missing from the Hub's cache). `architecture`
    ("bert", "distil_bert": the loading class's) refuses a built-in preset of the other one before any download.

    Raises:
        FileNotFoundError: offline (or not found) with nothing cached; the message says how to fix it.
        PermissionError: a gated repository the user has no access to.
        ConnectionError: another error of the Hub.
        FileNotFoundError: a local directory that does not exist (directories of close names are suggested).
        ValueError: an unknown name (the closest built-in names and local directories are listed), a file where a
            preset directory is expected, a malformed `hf://` handle or an unsupported scheme.
    """
    if not isinstance(load_weights, bool | np.bool_):  # "no" is truthy: it loaded the weights
        raise ValueError(f"load_weights must be True or False, got {load_weights!r}.")
    if isinstance(preset, os.PathLike) or (isinstance(preset, str) and pathlib.Path(preset).is_dir()):
        return _local(preset)
    if not isinstance(preset, str):
        raise ValueError(f"preset must be a name, an hf:// or kaggle:// handle, or a directory; got {preset!r}.")
    if preset in PRESETS:
        check_architecture(PRESETS[preset].architecture, architecture, repr(preset))  # the registry knows it
        return _from_hub(PRESETS[preset].hf_handle, load_weights, name=preset)
    if preset.startswith("hf://"):
        return _from_hub(preset, load_weights, name=preset)
    if preset.startswith("kaggle://"):
        return _from_kaggle(preset)
    if _URL.match(preset):
        raise ValueError(f"preset {preset!r}: {_url_fix(preset)}")
    if "/" in preset or preset.startswith((".", "~")) or pathlib.Path(preset).exists():  # a file: said so there
        return _local(preset)
    by_case = {name.lower(): name for name in PRESETS}  # "BERT_TINY_EN_UNCASED" is still close to its name
    close = [repr(by_case[c]) for c in difflib.get_close_matches(preset.lower(), list(by_case), n=3, cutoff=0.5)]
    close += [f"the local directory {folder}" for folder in _close_directories(pathlib.Path(preset))]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown preset {preset!r}.{hint} Built-in presets: {', '.join(sorted(PRESETS))}; or pass a local "
        "directory, an 'hf://org/repo' handle or a 'kaggle://...' handle."
    )


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HUB_PAGE = re.compile(r"https?://huggingface\.co/([^/@?#]+/[^/@?#]+)/?$")


def _url_fix(url: str) -> str:
    page = _HUB_PAGE.match(url)
    if page:
        return f"a Hub repository is loaded by its handle: pass 'hf://{page.group(1)}'."
    return (f"flaxbert reads no {_URL.match(url).group(1)}:// addresses; copy the preset to a local directory and "
            "pass its path, or pass an 'hf://org/repo' or 'kaggle://...' handle.")  # fmt: skip


def _local(preset) -> pathlib.Path:
    path = pathlib.Path(preset).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(
            f"preset {str(path)!r} is a file, not a preset directory: pass the directory that holds the preset's "
            f"files (config.json, weights, tokenizer), e.g. {str(path.parent)!r}."
        )
    folders = _close_directories(path)
    hint = f" Did you mean {' or '.join(folders)}?" if folders else ""
    raise FileNotFoundError(f"preset directory {path} does not exist.{hint}")


def _close_directories(path: pathlib.Path) -> list[str]:
    """Directories beside `path` (in its parent directory) whose names are close to its name, quoted, closest first:
    the hint for a misspelt local preset."""
    try:
        names = [p.name for p in path.parent.iterdir() if p.is_dir()]
    except OSError:  # the parent is missing or unreadable: nothing to suggest
        return []
    return [repr(str(path.parent / name)) for name in difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)]


def _parse_handle(handle: str) -> tuple[str, str | None]:
    """`hf://owner/name@revision` as (repo id, revision or None), or an error saying what a handle looks like."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id, at, revision = handle.removeprefix("hf://").strip("/").partition("@")
    form = "a handle is hf://owner/name, or hf://owner/name@revision for a branch, tag or commit"
    if at and not revision:
        raise ValueError(f"{handle!r} names no revision after '@'; {form}.")
    if repo_id.count("/") > 1:
        raise ValueError(
            f"{handle!r} names a folder inside a repository, which flaxbert does not load from the Hub; {form}. "
            "Download the repository and pass the folder's local path instead."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{handle!r} is no Hugging Face repository id ({e}); {form}.") from None
    return repo_id, revision or None


def _from_hub(handle: str, load_weights: bool, name: str) -> pathlib.Path:
    from huggingface_hub import errors

    repo_id, revision = _parse_handle(handle)
    try:
        files = _listing(repo_id, revision)
        source = _download(repo_id, revision, _config_files(files))
        if not load_weights:
            return source
        if (done := conversion_cache.cached(source, repo_id)) is not None:  # converted before: nothing to download
            return done
        # offline, with no listing cached, what the cache holds is all there is
        weights = _weight_files(source, files if files is not None else _cached_files(source))
        if not weights and files is not None:
            raise FileNotFoundError(
                f"Preset {name!r} ({handle}): the repository '{repo_id}' has no weights flaxbert reads (for a "
                f"transformers checkpoint {', '.join(hf_checkpoint.WEIGHT_FILES)}; for a keras-hub preset "
                "model.weights.h5). Pass load_weights=False for its architecture with random weights."
            )
        if not weights:
            raise _not_cached(name, handle, repo_id, f"its weights are not cached, only the configs in {source}")
        # the commit of the configs, not `revision` again: a branch may move between two downloads
        source = _download(repo_id, source.name, [glob.escape(f) for f in weights])
    except (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as e:
        raise _hub_error(e, name, handle, repo_id, revision) from e
    missing = [f for f in weights if not (source / f).is_file()]
    if missing:  # offline, with a snapshot cached without its weights (by load_weights=False, or a tokenizer load)
        raise _not_cached(name, handle, repo_id, f"{', '.join(missing)} is missing from {source}")
    # With weights, later loads use the converted native copy (converted now if this revision has none).
    return conversion_cache.converted(source, repo_id)


def _listing(repo_id: str, revision: str | None) -> list[str] | None:
    """The repository's files: from the Hub, else from the listing the cache keeps of a download made online; None
    where neither can be read (offline, with a cache written by hand or by an older huggingface_hub)."""
    import huggingface_hub

    try:
        return huggingface_hub.HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # offline, no network, a Hub error: snapshot_download serves the cache or raises it, named
        pass
    cached_tree = getattr(huggingface_hub, "get_cached_repo_tree", None)  # huggingface_hub >= 2.4
    try:
        return None if cached_tree is None else [f.path for f in cached_tree(repo_id, revision=revision)]
    except Exception:  # CachedRepoTreeNotFoundError: nothing cached with a listing
        return None


def _cached_files(source: pathlib.Path) -> list[str]:
    return [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]


def _download(repo_id: str, revision: str | None, patterns: list[str]) -> pathlib.Path:
    import huggingface_hub

    return pathlib.Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns))


def _config_files(files: list[str] | None) -> list[str]:
    """Exact names (glob-escaped) of the top-level configs and vocabularies, and of keras-hub's assets."""
    if files is None:
        return _CONFIG_PATTERNS
    return [glob.escape(f) for f in files if ("/" not in f and f.endswith(_CONFIG_SUFFIXES)) or f.startswith(_ASSETS)]


def _weight_files(source: pathlib.Path, files: list[str]) -> list[str]:
    """The weight files of the one format the preset's loader reads, as its config.json says which that is."""
    config = hf_checkpoint.read_config(source)
    if native.is_native(config):
        return [f for f in files if f.startswith("params/")]
    if keras_format.is_keras(config):  # model.weights.h5 (or its shards) and a task preset's task.weights.h5
        return [f for f in files if "/" not in f and f.endswith(".weights.h5")]
    # transformers: the first that hf_checkpoint.read_state_dict finds, in its order (safetensors over torch .bin)
    found = next((f for f in hf_checkpoint.WEIGHT_FILES if f in files), None)  # one order, kept there
    if found is None or not found.endswith(".index.json"):
        return [] if found is None else [found]
    try:  # a sharded checkpoint: the index (a config file, downloaded already) names its shards
        return [found, *hf_checkpoint.shard_names(source / found)]
    except (OSError, ValueError):
        return [found]  # the loader names the broken or missing index


def _not_cached(name: str, handle: str, repo_id: str, what: str) -> FileNotFoundError:
    from huggingface_hub import constants

    return FileNotFoundError(
        f"Preset {name!r} ({handle}) is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and cannot be "
        f"downloaded ({what}). Fix: run once with network access to huggingface.co (without HF_HUB_OFFLINE=1 or "
        f"train.py's --offline) to cache it, or download the repository '{repo_id}' elsewhere and pass its local "
        "directory as the preset."
    )


def _hub_error(error: Exception, name: str, handle: str, repo_id: str, revision: str | None) -> Exception:
    """A Hub or cache error as one line that names the preset and the fix. Gated repositories are checked first:
    huggingface_hub's GatedRepoError is a RepositoryNotFoundError."""
    from huggingface_hub import errors

    cause = " ".join(str(error).split())[:300]
    if isinstance(error, errors.GatedRepoError):
        return PermissionError(
            f"Preset {name!r}: the Hugging Face repository '{repo_id}' is gated ({cause}). Fix: request access on "
            f"https://huggingface.co/{repo_id}, then log in (`hf auth login`, or set HF_TOKEN) and load it again."
        )
    if isinstance(error, errors.RevisionNotFoundError):
        return FileNotFoundError(
            f"Preset {name!r}: the Hugging Face repository '{repo_id}' has no revision {revision or 'main'!r} (a "
            f"branch, tag or commit; {cause}). Fix: name an existing one after '@', or none for the default branch."
        )
    if isinstance(error, errors.RepositoryNotFoundError):
        return FileNotFoundError(
            f"Preset {name!r}: no Hugging Face repository '{repo_id}' ({cause}); if it is private, log in "
            "(`hf auth login`, or set HF_TOKEN)."
        )
    if isinstance(error, errors.HfHubHTTPError):
        return ConnectionError(
            f"Preset {name!r}: the Hugging Face Hub failed to serve '{repo_id}' ({cause}). Try again later; a "
            "download cached before loads offline (HF_HUB_OFFLINE=1)."
        )
    return _not_cached(name, handle, repo_id, type(error).__name__)


def _from_kaggle(handle: str) -> pathlib.Path:
    # a handle names a version last; match it to the registry without it
    model = handle.rstrip("/") + "/"
    mirror = next((p.hf_handle for p in PRESETS.values() if model.startswith(p.kaggle_handle.rsplit("/", 1)[0] + "/")),
                  None)  # fmt: skip
    instead = f" or use its Hugging Face mirror {mirror!r}" if mirror else ""
    try:
        import kagglehub
    except ImportError as e:
        raise ValueError(f"{handle} needs kagglehub: pip install 'flaxbert[kaggle]'{instead}.") from e
    try:
        return pathlib.Path(kagglehub.model_download(handle.removeprefix("kaggle://")))
    except Exception as e:  # no network, no such model, no credentials: kagglehub's and requests' errors, said once
        raise FileNotFoundError(
            f"{handle}: kagglehub could not download it ({type(e).__name__}: {str(e)[:300]}). Check the handle and "
            f"the network (kagglehub serves a download it cached before){instead}, or pass a local directory."
        ) from e
