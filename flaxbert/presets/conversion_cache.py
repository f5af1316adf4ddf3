"""Downloaded keras-hub and transformers presets are converted once and kept in flaxbert's native format.

The converted copy lives under `$FLAXBERT_CACHE` (default `~/.cache/flaxbert`), keyed by the Hub repository and the
exact revision that was downloaded, so a new upstream revision converts again. Later loads read the native preset:
no h5 or safetensors parsing, and params restore straight onto the target shardings.
"""

from __future__ import annotations

import os
import pathlib

from flaxbert.presets import hf_checkpoint, hf_convert, keras_format, native, text_assets

# Bumped when a conversion would write something new (2: a transformers head's class names; 3: a one-label head with
# no problem_type is transformers' regression, cached as its encoder alone): older copies are converted again rather
# than read as they were.
CONVERSION = 3


def cache_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("FLAXBERT_CACHE", pathlib.Path.home() / ".cache" / "flaxbert"))


def converted(source: pathlib.Path, repo_id: str) -> pathlib.Path:
    """The native copy of a downloaded preset directory, converting it first if this revision has none yet."""
    # the snapshot directory is named by revision
    target = cache_root() / repo_id.replace("/", "--") / f"{source.name}-c{CONVERSION}"
    if (target / "config.json").is_file():
        return target
    config = hf_checkpoint.read_config(source)
    if native.is_native(config):
        return source
    from flaxbert.backbones import BertBackbone, DistilBertBackbone
    from flaxbert.tasks import TextClassifier

    if _has_head(source, config):
        TextClassifier.from_preset(source).save_to_preset(target)
        return target
    backbone_cls = BertBackbone if _is_bert(source, config) else DistilBertBackbone
    backbone = backbone_cls.from_preset(source)
    tokenizer, preprocessor = _tokenizer_and_preprocessor(source, config)
    native.save(target, backbone_config=backbone.config, params={"backbone": backbone.params}, tokenizer=tokenizer,
                preprocessor=preprocessor)  # fmt: skip
    return target


def _has_head(source: pathlib.Path, config: dict) -> bool:
    """Whether the preset has a classification head flaxbert runs (not a regression or multi-label one)."""
    if keras_format.is_keras(config):
        return keras_format.is_classifier(keras_format.read_task(source))  # another task's head: a bare backbone
    # A head flaxbert cannot run: its encoder is cached alone, as a bare encoder's is.
    config = hf_checkpoint.checkpoint_config(source)  # a config without architectures: the weights show the head
    return hf_convert.is_classifier(config) and hf_convert.unsupported_head(config, str(source)) is None


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
