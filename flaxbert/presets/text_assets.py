"""A preset's tokenizer and preprocessor settings, from any format: flaxbert native, keras-hub, or transformers.

- native: `vocabulary.txt` plus the "tokenizer" and "preprocessor" entries of config.json;
- keras-hub: `assets/tokenizer/vocabulary.txt`, `tokenizer.json` (keras config) and `preprocessor.json`;
- transformers: `vocab.txt` or `tokenizer.json` (HF tokenizers) with `tokenizer_config.json`; sequence length 512,
  or the model's position count or the tokenizer's `model_max_length` where fewer, and transformers' `longest_first`
  truncation of sentence pairs.
"""

from __future__ import annotations

import pathlib

from flaxbert.presets import file_checksums, json_file, keras_format, native
from flaxbert.text.vocabulary import SPECIAL_TOKENS, SUFFIX_INDICATOR, read_hf_tokenizer


def _config(directory: pathlib.Path) -> dict:
    path = directory / "config.json"
    return json_file.read(path) if path.is_file() else {}  # a tokenizer-only HF folder has no config.json


def _keras_settings(path: pathlib.Path) -> dict:
    """The "config" object of a keras-serialised tokenizer.json or preprocessor.json."""
    return json_file.member(json_file.read(path), "config", path)


def _vocabulary(directory: pathlib.Path, name: str) -> pathlib.Path:
    """The vocabulary file a preset's config says it has, or an error naming it."""
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is incomplete: its config has a tokenizer but {name} is missing. "
                                "Copy or download the whole preset again.")  # fmt: skip
    return path


# keras-hub WordPieceTokenizer settings flaxbert's BertTokenizer has fixed, at the values keras-hub's BertTokenizer
# saves: any other changes the ids, so it is refused by name.
_KERAS_FIXED = {"sequence_length": None, "split": True, "split_on_cjk": True, "suffix_indicator": SUFFIX_INDICATOR,
                "oov_token": SPECIAL_TOKENS["oov_token"], "special_tokens": None}  # fmt: skip


def _check_keras_defaults(saved: dict, path: pathlib.Path) -> None:
    for key, fixed in _KERAS_FIXED.items():
        if saved.get(key, fixed) != fixed:
            raise ValueError(
                f"{path} sets the tokenizer's {key}={saved[key]!r}; flaxbert's BertTokenizer has keras-hub "
                f"BertTokenizer's {fixed!r} there, and would give other token ids. Load the model with "
                "preprocessor=None and pass it token ids."
            )


def tokenizer(tokenizer_cls, directory):
    """The preset's tokenizer as `tokenizer_cls`, or None when the preset was saved without one."""
    directory = pathlib.Path(directory)
    config = _config(directory)
    if native.is_native(config):
        settings = native.read(directory)["tokenizer"]
        if settings is None:
            return None
        file_checksums.check(directory, "vocabulary.txt")
        vocabulary = _vocabulary(directory, "vocabulary.txt")
        try:
            return tokenizer_cls(vocabulary, **settings)
        except (TypeError, ValueError) as e:  # a damaged value (the keys are checked by `native.read`)
            raise ValueError(
                f'{directory / "config.json"}: its "tokenizer" settings build no tokenizer ({e}). Fix: save the '
                "preset again from its model."
            ) from None
    if keras_format.is_keras(config):
        if not (directory / "tokenizer.json").is_file():
            return None
        saved = _keras_settings(directory / "tokenizer.json")
        _check_keras_defaults(saved, directory / "tokenizer.json")
        settings = {k: saved[k] for k in ("lowercase", "strip_accents", "special_tokens_in_strings") if k in saved}
        return tokenizer_cls(_vocabulary(directory, "assets/tokenizer/vocabulary.txt"), **settings)
    has_files = (directory / "vocab.txt").is_file() or (directory / "tokenizer.json").is_file()
    if config and not has_files:
        return None  # a model checkpoint saved without its tokenizer; an empty folder errors below
    vocabulary, settings = read_hf_tokenizer(directory)
    return tokenizer_cls(vocabulary, **settings)


def preprocessor_settings(directory) -> dict:
    """`sequence_length` and `truncate` as the preset saved them. transformers checkpoints save neither: the length
    is the least of 512, the model's `max_position_embeddings` and the tokenizer's `model_max_length` (where
    transformers' `truncation=True` and its pipelines cut texts), and the truncation is "longest_first", which
    transformers applies to them, so that ids are transformers' (keras-hub presets keep keras-hub's, round_robin). A
    keras-hub preset saved without a text classifier's preprocessor gets 512 or its position count where that is less
    (keras-hub's 512 would fail at the first call)."""
    directory = pathlib.Path(directory)
    config = _config(directory)
    if native.is_native(config):
        return dict(native.read(directory)["preprocessor"] or {})
    if keras_format.is_keras(config):
        saved, keras = directory / "preprocessor.json", {}
        if saved.is_file():  # another task's preprocessor (a masked LM's) is not read, as in keras-hub
            whole = json_file.read(saved)
            if keras_format.is_classifier_preprocessor(whole, directory):
                keras = json_file.member(whole, "config", saved)
        settings = {k: keras[k] for k in ("sequence_length", "truncate") if k in keras}
        positions = (config.get("config") or {}).get("max_sequence_length")
        if "sequence_length" not in settings and isinstance(positions, int) and 2 <= positions < 512:
            settings["sequence_length"] = positions  # no preprocessor saved: 512, as keras-hub's, where it fits
        return settings
    tokenizer_config = directory / "tokenizer_config.json"
    tokenizer_config = json_file.read(tokenizer_config) if tokenizer_config.is_file() else {}
    limits = [config.get("max_position_embeddings"), tokenizer_config.get("model_max_length")]
    lengths = [n for n in limits if isinstance(n, int) and not isinstance(n, bool) and n >= 2]  # unset: 1e30 or null
    return {"truncate": "longest_first"} | ({"sequence_length": min(512, *lengths)} if lengths else {})


def preprocessor(preprocessor_cls, tokenizer_cls, directory, sequence_length: int | None = None,
                 vocabulary_size: int | None = None):  # fmt: skip
    """The preset's preprocessor (None without a tokenizer); an explicit `sequence_length` wins over the saved one.
    With the model's `vocabulary_size`, a tokenizer that has more ids is refused now (`check_vocabulary`)."""
    found = tokenizer(tokenizer_cls, directory)
    if found is None:
        return None
    if vocabulary_size is not None:
        check_vocabulary(found, vocabulary_size, f"{directory}: ", "Use the tokenizer saved with these weights, or "
                         "preprocessor=None for preprocessed inputs.")  # fmt: skip
    settings = {"sequence_length": 512, **preprocessor_settings(directory)}
    if sequence_length is not None:
        settings["sequence_length"] = sequence_length
    return preprocessor_cls(found, **settings)


def check_vocabulary(tokenizer, vocabulary_size: int, source: str, fix: str) -> None:
    """Raises when the tokenizer gives ids the model's embedding table has no row for: otherwise only the first text
    with a rare token would fail, at predict or in the middle of fit. `source` starts the message, `fix` ends it."""
    if tokenizer.vocabulary_size() > vocabulary_size:
        raise ValueError(
            f"{source}the tokenizer has {tokenizer.vocabulary_size()} tokens but the model embeds only "
            f"{vocabulary_size} (its vocabulary_size): token ids {vocabulary_size} and above have no embedding. {fix}"
        )
