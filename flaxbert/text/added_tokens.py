"""Added tokens: strings a transformers tokenizer matches whole in the text before WordPiece sees it.

`tokenizer.add_tokens([...])` and `add_special_tokens({"additional_special_tokens": [...]})` (then
`model.resize_token_embeddings`) is how transformers users teach a checkpoint new words and markers. A token already in
the vocabulary keeps its id; a new one takes the next id after the vocabulary and the tokens added before it. Each
carries the `tokenizers.AddedToken` options: `special` (skipped when `split_special_tokens` is set), `normalized`
(matched in the lower-cased, normalised text rather than the raw one), `single_word`, `lstrip`, `rstrip`.

transformers (5.x, as 4.x wrote them) reads them from, in this order: `added_tokens_decoder` in tokenizer_config.json;
else the `added_tokens` of tokenizer.json and the legacy added_tokens.json. Then come the extra special tokens
(`extra_special_tokens`, formerly `additional_special_tokens`, in tokenizer_config.json or special_tokens_map.json) not
added yet, as special, unnormalised tokens. `read_hf` follows the same order, so the ids are transformers' own.
"""

from __future__ import annotations

import pathlib

from flaxbert.presets import json_file

_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def check(tokens, source="added_tokens") -> list[dict]:
    """The added tokens as complete `tokenizers.AddedToken` keyword dicts, in order, each token once.

    Args:
        tokens: dicts with a "content" string and any of the flags `single_word`, `lstrip`, `rstrip` (default False),
            `special` (default False) and `normalized` (default: not special, as in `tokenizers`); a plain string is a
            non-special token. None: no added tokens.
        source: what to name in an error.
    """
    checked, seen = [], set()
    for token in tokens or ():
        token = {"content": token} if isinstance(token, str) else token
        if not isinstance(token, dict) or not isinstance(token.get("content"), str) or not token["content"]:
            raise ValueError(f"{source}: an added token must be a string or a dict with a 'content' string, got "
                             f"{token!r:.80}.")  # fmt: skip
        unknown = set(token) - {"content", "id", "__type", *_FLAGS}
        flags = {name: token.get(name, False) for name in _FLAGS} | {"normalized": token.get("normalized")}
        if flags["normalized"] is None:
            flags["normalized"] = not flags["special"]
        if unknown or not all(isinstance(value, bool) for value in flags.values()):
            raise ValueError(f"{source}: added token {token['content']!r} has fields other than true/false "
                             f"{', '.join(_FLAGS)}: {token!r:.200}.")  # fmt: skip
        if token["content"] not in seen:
            seen.add(token["content"])
            checked.append({"content": token["content"], **flags})
    return checked


def read_hf(directory: pathlib.Path, config: dict) -> list[dict]:
    """The added tokens of a transformers tokenizer folder, in the order transformers adds them.

    Args:
        directory: the folder.
        config: its parsed tokenizer_config.json ({} when absent).
    """
    config_path = directory / "tokenizer_config.json"
    decoder = config.get("added_tokens_decoder")
    extra = _extra_specials(config.get("extra_special_tokens") or config.get("additional_special_tokens"), config_path)
    if decoder is not None:
        decoder = json_file.member(config, "added_tokens_decoder", config_path)
        by_id = [(_id(i, config_path), token) for i, token in decoder.items()]
    else:
        extra += _special_tokens_map(directory / "special_tokens_map.json")
        by_id = _listed(directory / "tokenizer.json") + _legacy(directory / "added_tokens.json")
    ordered = [token for _, token in sorted(by_id, key=lambda pair: pair[0])]
    tokens = check(ordered, str(directory))
    present = {token["content"] for token in tokens}
    return tokens + [token for token in check(extra, str(directory)) if token["content"] not in present]


def _id(value, path) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: added token id {value!r} is not an integer; the file is corrupt.") from None


def _listed(path: pathlib.Path) -> list[tuple[int, dict]]:
    """tokenizer.json's `added_tokens`: a list of AddedToken dicts, each with its id."""
    if not path.is_file():
        return []
    listed = json_file.read(path).get("added_tokens", [])
    if not isinstance(listed, list) or not all(isinstance(token, dict) for token in listed):
        raise ValueError(f"{path}: 'added_tokens' must be a list of token objects; the file is corrupt.")
    return [(_id(token.get("id"), path), token) for token in listed]


def _legacy(path: pathlib.Path) -> list[tuple[int, dict]]:
    """added_tokens.json (`{token: id}`, written by transformers' slow tokenizers): plain, normalized tokens, as
    transformers 5 loads them, even where special_tokens_map.json names them as extra special tokens (those are then
    skipped as already present)."""
    if not path.is_file():
        return []
    return [(_id(i, path), {"content": token}) for token, i in json_file.read(path).items()]


def _special_tokens_map(path: pathlib.Path) -> list[dict]:
    if not path.is_file():
        return []
    saved = json_file.read(path)
    return _extra_specials(saved.get("extra_special_tokens") or saved.get("additional_special_tokens"), path)


def _extra_specials(listed, path) -> list[dict]:
    """Extra special tokens: a list of strings or AddedToken dicts, or (transformers 5) a dict naming each one."""
    if listed is None:
        return []
    if isinstance(listed, dict):
        listed = list(listed.values())
    if not isinstance(listed, list):
        raise ValueError(f"{path}: the extra special tokens must be a list; got {listed!r:.80}.")
    return [{**(token if isinstance(token, dict) else {"content": token}), "special": True} for token in listed]


def _content(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token
