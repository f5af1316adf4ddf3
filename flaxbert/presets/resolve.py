"""Turns what a user passes as `preset` into a local directory: a path, a built-in name, `hf://org/repo` or
`kaggle://...`.

Built-in names resolve to keras-hub's own mirror on the Hugging Face Hub (`hf://keras/<name>`), which huggingface_hub
downloads into its cache (`HF_HOME`, `HF_HUB_CACHE`) and serves from there offline (`HF_HUB_OFFLINE=1`). Only the
files a load needs are fetched: configs and vocabularies, plus weights when weights are wanted. A downloaded keras or
transformers preset is converted once into flaxbert's native format (`conversion_cache`).
"""

from __future__ import annotations

import difflib
import os
import pathlib

from flaxbert.presets import conversion_cache
from flaxbert.presets.registry import PRESETS

CONFIG_FILES = ["*.json", "*.txt", "assets/**"]
WEIGHT_FILES = ["*.safetensors", "pytorch_model*.bin", "*.weights.h5", "params/**"]  # not tf_model.h5 etc.


def resolve(preset, load_weights: bool = True) -> pathlib.Path:
    """A local directory with the preset's files (downloading what is missing from the Hub's cache).

    Raises:
        FileNotFoundError: offline (or not found) with nothing cached; the message says how to fix it.
        ValueError: an unknown name (the closest built-in names are listed) or an unsupported scheme.
    """
    if isinstance(preset, os.PathLike) or (isinstance(preset, str) and pathlib.Path(preset).is_dir()):
        return _local(preset)
    if not isinstance(preset, str):
        raise ValueError(f"preset must be a name, an hf:// or kaggle:// handle, or a directory; got {preset!r}.")
    if preset in PRESETS:
        return _from_hub(PRESETS[preset].hf_handle, load_weights, name=preset)
    if preset.startswith("hf://"):
        return _from_hub(preset, load_weights, name=preset)
    if preset.startswith("kaggle://"):
        return _from_kaggle(preset)
    if "/" in preset or preset.startswith((".", "~")):
        return _local(preset)
    close = difflib.get_close_matches(preset, list(PRESETS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown preset {preset!r}.{hint} Built-in presets: {', '.join(sorted(PRESETS))}; or pass a local "
        "directory, an 'hf://org/repo' handle or a 'kaggle://...' handle."
    )


def _local(preset) -> pathlib.Path:
    path = pathlib.Path(preset).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"preset directory {path} does not exist.")
    return path


def _from_hub(handle: str, load_weights: bool, name: str) -> pathlib.Path:
    import huggingface_hub
    from huggingface_hub import constants  # a submodule: `import huggingface_hub` alone does not load it
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError

    repo_id = handle.removeprefix("hf://").strip("/")
    patterns = CONFIG_FILES + (WEIGHT_FILES if load_weights else [])
    try:
        source = pathlib.Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        cache = constants.HF_HUB_CACHE
        raise FileNotFoundError(
            f"Preset {name!r} ({handle}) is not in the Hugging Face cache ({cache}) and cannot be downloaded "
            f"(offline: {e.__class__.__name__}). Fix: run once with network access (HF_HUB_OFFLINE unset) to cache "
            f"it, or download the repository '{repo_id}' elsewhere and pass its local directory as the preset."
        ) from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"Preset {name!r}: no Hugging Face repository '{repo_id}' ({e}).") from e
    # With weights, later loads use the converted native copy (converted now if this revision has none).
    return conversion_cache.converted(source, repo_id) if load_weights else source


def _from_kaggle(handle: str) -> pathlib.Path:
    # a handle names a version last; match it to the registry without it
    model = handle.rstrip("/") + "/"
    mirror = next((p.hf_handle for p in PRESETS.values() if model.startswith(p.kaggle_handle.rsplit("/", 1)[0] + "/")),
                  None)  # fmt: skip
    try:
        import kagglehub
    except ImportError as e:
        instead = f" or use its Hugging Face mirror {mirror!r}" if mirror else ""
        raise ValueError(f"{handle} needs kagglehub: pip install 'flaxbert[kaggle]'{instead}.") from e
    return pathlib.Path(kagglehub.model_download(handle.removeprefix("kaggle://")))
