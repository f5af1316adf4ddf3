"""Downloaded keras-hub and transformers presets are converted once and kept in flaxbert's native format.

The converted copy lives under `$FLAXBERT_CACHE` (default `~/.cache/flaxbert`), keyed by the Hub repository and the
exact revision that was downloaded, so a new upstream revision converts again. Later loads read the native preset:
no h5 or safetensors parsing, and params restore straight onto the target shardings.

Two processes may convert the same revision at once: each writes its own staging directory and renames it into place,
and the one that loses the race reads the winner's copy. A cache that cannot be written (read-only, or a path under a
file) costs the speed-up only: the download is loaded directly, with a warning that says how to fix it.
"""

from __future__ import annotations

import functools
import os
import pathlib
import warnings

import jax

from flaxbert.parallel.mesh import warning_stacklevel
from flaxbert.presets import hf_checkpoint, hf_convert, keras_format, native, output_directory, text_assets

# Bumped when a conversion would write something new (2: a transformers head's class names; 3: a one-label head with
# no problem_type is transformers' regression, cached as its encoder alone; 4: a head found by its weights where
# config.json names no architectures, added tokens, another keras-hub task's backbone; 5: transformers' pair
# truncation, longest_first, and the case settings of a tokenizer.json-only folder; 6: a sequence length capped by the
# tokenizer's model_max_length; 7: checkpoints whose load warns or refuses something, a regression head among them,
# are not converted; 8: checksums.json, the CRC-32 of the params files and vocabulary that each load checks; 9: a head
# found by its weights where config.json names a pre-training model, other tasks' checkpoints and keras-hub sigmoid
# heads not converted, a keras-hub model.weights.h5 read before stale shards, another task's preprocessor.json not
# read): older copies are converted again rather than read as they were. (Copies in native format 1 name
# attention_kernel "xla", the default then; `native.read` reads that as "auto", so the new default needed no new
# conversion.)
CONVERSION = 9


def cache_root() -> pathlib.Path:
    # expanduser: a FLAXBERT_CACHE set without a shell (a Dockerfile ENV, a .env file) keeps its "~"
    configured = os.environ.get("FLAXBERT_CACHE")
    return pathlib.Path(configured).expanduser() if configured else pathlib.Path.home() / ".cache" / "flaxbert"


def cached(source: pathlib.Path, repo_id: str) -> pathlib.Path | None:
    """The native copy of a downloaded preset directory if this revision has one (its weights need no download)."""
    target = _target(source, repo_id)
    return target if (target / "config.json").is_file() else None


def _target(source: pathlib.Path, repo_id: str) -> pathlib.Path:
    # the snapshot directory is named by the revision's commit
    return cache_root() / repo_id.replace("/", "--") / f"{source.name}-c{CONVERSION}"


def converted(source: pathlib.Path, repo_id: str) -> pathlib.Path:
    """The native copy of a downloaded preset directory, converting it first if this revision has none yet; `source`
    itself (with a warning) where the cache cannot be written."""
    target = _target(source, repo_id)
    if (target / "config.json").is_file():
        return target
    config = hf_checkpoint.read_config(source)
    if native.is_native(config) or _says_something(source, config):
        return source
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # before converting: an unwritable cache costs no conversion
    except OSError as error:
        return _uncached(source, target, error)
    save = _converter(source, config)  # reads the download; an error here is the download's, not the cache's
    try:
        save(target)
    except (OSError, output_directory.PresetWriteError) as error:
        # The save is collective (process 0 writes, the others wait at its barriers): a fallback on process 0 alone
        # would leave them waiting, so a multi-process job stops with the error instead.
        if jax.process_count() > 1:
            raise
        if (target / "config.json").is_file():
            return target  # another process converted it meanwhile; its copy went into place whole
        return _uncached(source, target, error)
    return target


def _uncached(source: pathlib.Path, target: pathlib.Path, error: Exception) -> pathlib.Path:
    setting = os.environ.get("FLAXBERT_CACHE")
    warnings.warn(
        f"flaxbert cannot write its conversion cache at {target} ({type(error).__name__}: {error}); loading {source} "
        f"directly instead, which parses it again on every load. Fix: set FLAXBERT_CACHE (now "
        f"{repr(setting) if setting else 'unset: ~/.cache/flaxbert'}) to a writable directory.",
        stacklevel=warning_stacklevel(2),
    )
    return source


def _converter(source: pathlib.Path, config: dict):
    """Reads the downloaded preset; returns the function that writes it as a native preset to a directory."""
    from flaxbert.backbones import BertBackbone, DistilBertBackbone
    from flaxbert.tasks import TextClassifier

    if _has_head(source, config):
        return TextClassifier.from_preset(source).save_to_preset
    backbone_cls = BertBackbone if _is_bert(source, config) else DistilBertBackbone
    backbone = backbone_cls.from_preset(source)
    tokenizer, preprocessor = _tokenizer_and_preprocessor(source, config)
    return functools.partial(native.save, backbone_config=backbone.config, params={"backbone": backbone.params},
                             tokenizer=tokenizer, preprocessor=preprocessor)  # fmt: skip


def _has_head(source: pathlib.Path, config: dict) -> bool:
    """Whether the preset has a classification head (a transformers head flaxbert cannot run is not cached)."""
    if keras_format.is_keras(config):
        return keras_format.is_classifier(keras_format.read_task(source))  # another task's head: a bare backbone
    return hf_convert.is_classifier(hf_checkpoint.checkpoint_config(source))


def _says_something(source: pathlib.Path, config: dict) -> bool:
    """Whether loading the download says something a native copy would not, so that it is loaded directly each time:
    a BERT without a pooler (one is made from the caller's seed, with a warning), a regression or multi-label head or
    another task's (refused, or replaced with a warning, saying what it is), two dropout rates or weights its config
    has no place for (warnings), a tokenizer flaxbert refuses (preprocessor=None still loads the model); of a
    keras-hub preset, a head refused as saved (a sigmoid one, which activation=None loads)."""
    from flaxbert.models.config import BertConfig
    from flaxbert.text import BertTokenizer

    if keras_format.is_keras(config):  # a head refused as saved (a sigmoid one): activation=None loads it directly
        task = keras_format.read_task(source)
        if not keras_format.is_classifier(task):
            return False
        architecture = "bert" if _is_bert(source, config) else "distil_bert"
        try:
            keras_format.head_config(task, str(source), architecture, {})
        except ValueError:
            return True
        return False
    names, backbone = hf_checkpoint.weight_shapes(source), hf_checkpoint.load_config(source)
    if isinstance(backbone, BertConfig) and not hf_convert.has_pooler(names):
        return True
    if hf_convert.unused_encoder_weights(names, backbone):
        return True
    hf = hf_checkpoint.checkpoint_config(source, shapes=names)  # a config naming no head: the weights show it
    if hf_convert.is_classifier(hf) and hf_convert.unsupported_head(hf, str(source)) is not None:
        return True
    if hf_checkpoint.other_task(source, hf) is not None:  # says what it is, where a copy would be a bare encoder
        return True
    if hf_convert.dropout_note(hf, str(source)) is not None:
        return True
    try:
        text_assets.tokenizer(BertTokenizer, source)
    except ValueError:
        return True
    return False


def _is_bert(source: pathlib.Path, config: dict) -> bool:
    from flaxbert.models.config import BertConfig

    if keras_format.is_keras(config):
        return isinstance(keras_format.backbone_config(config, source), BertConfig)
    return isinstance(hf_checkpoint.load_config(source), BertConfig)


def _tokenizer_and_preprocessor(source: pathlib.Path, config: dict):
    from flaxbert.text import BertTextClassifierPreprocessor, BertTokenizer, DistilBertTokenizer

    tokenizer_cls = BertTokenizer if _is_bert(source, config) else DistilBertTokenizer
    found = text_assets.preprocessor(BertTextClassifierPreprocessor, tokenizer_cls, source)
    return (None, None) if found is None else (found.tokenizer, found)
