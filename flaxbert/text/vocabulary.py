"""WordPiece vocabularies on disk: one-token-per-line files and Hugging Face checkpoint folders."""

import os
import pathlib

from flaxbert.presets import json_file
from flaxbert.text import added_tokens

# The special tokens every BERT tokenizer needs, by flaxbert's attribute name (keras-hub's); transformers calls the
# OOV token unk_token.
SPECIAL_TOKENS = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
                  "oov_token": "[UNK]"}  # fmt: skip
_HF_NAMES = {"oov_token": "unk_token"}
# BERT's WordPiece settings, which flaxbert's BertTokenizer has fixed (a reader refuses others)
MAX_WORD_CHARS = 100  # longer words become [UNK] whole (HF counts characters; tf-text counts UTF-8 bytes)
SUFFIX_INDICATOR = "##"
# transformers matches its unk_token typed in text as it does its other special tokens (keras-hub splits it): a
# transformers folder's tokenizer has it as this special added token (format-2 native presets get it on read too).
UNK_AS_ADDED_TOKEN = {"content": SPECIAL_TOKENS["oov_token"], "special": True, "normalized": False}


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """Reads a one-token-per-line vocabulary file; the line number is the token id.

    Trailing whitespace (the newline included) is stripped from each line, as keras-hub's WordPieceTokenizer does.
    """
    with open(path, encoding="utf-8") as f:
        return [line.rstrip() for line in f]


def write_vocabulary(vocabulary: list[str], path: str | os.PathLike) -> pathlib.Path:
    """Writes `vocabulary` one token per line (the format `read_vocabulary` reads and HF's vocab.txt uses).

    Raises:
        ValueError: a token would not read back as itself: one ending in whitespace (readers strip it, so it would
            come back as another token's string and take that token's id) or holding a line break (every later id
            would move). Nothing is written then.
    """
    for token_id, token in enumerate(vocabulary):
        if token != token.rstrip() or "\n" in token or "\r" in token:
            what = "holds a line break" if "\n" in token or "\r" in token else "ends in whitespace"
            raise ValueError(
                f"cannot write the vocabulary: token {token_id}, {token!r}, {what}, which a one-token-per-line file "
                f"cannot keep (it would read back as other tokens, with other ids). No BERT text splits into such a "
                f"token: remove it from the vocabulary or rename it (keeping the ids of the tokens after it)."
            )
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in vocabulary)
    return path


def read_hf_tokenizer(directory: str | os.PathLike) -> tuple[list[str], dict]:
    """Reads the vocabulary and case settings of a local Hugging Face BERT checkpoint folder.

    The vocabulary comes from `vocab.txt`, or else from the WordPiece model in `tokenizer.json`; a folder with
    both must give each token the same id in them (transformers 5 takes tokenizer.json's). Case and accents are
    read where transformers 5's `AutoTokenizer` reads them. A folder that names its tokenizer class (the
    `tokenizer_class` of `tokenizer_config.json`, or else the `model_type` of `config.json`) gets transformers'
    `BertTokenizer`, built from `tokenizer_config.json` with its defaults where a key is absent: `do_lower_case=True`,
    `strip_accents=None` (None: strip accents exactly when lower-casing, as HF and Google's BERT do); tokenizer.json's
    normalizer is then not read. A folder that names none (or `PreTrainedTokenizerFast`) is loaded from tokenizer.json
    as it is: its `BertNormalizer`'s `lowercase` and `strip_accents` apply, and tokenizer_config.json's keys do not.
    Special token strings in text are matched whole unless `split_special_tokens` is set, as transformers does. Tokens
    added to the vocabulary (`added_tokens.read_hf`: new words, entity markers) come along, so that the ids are
    transformers'.

    Args:
        directory: the checkpoint folder.

    Returns:
        `(vocabulary, settings)`: settings are `BertTokenizer` keyword arguments (`lowercase`, `strip_accents`,
        `special_tokens_in_strings`, and `added_tokens`: "[UNK]", special (transformers matches it whole in text,
        as its other special tokens), and any others besides the BERT special tokens).

    Raises:
        FileNotFoundError: the folder has neither vocab.txt nor tokenizer.json.
        ValueError: the checkpoint asks for behaviour flaxbert does not implement (special tokens other than BERT's
            [CLS], [SEP], [PAD], [MASK] and [UNK], no CJK or basic split, truncation on the left, a tokenizer class
            other than BERT's WordPiece one, a tokenizer.json whose normalizer, WordPiece settings, word split or
            [CLS] / [SEP] layout differ from BERT's), or a file is corrupt.
    """
    directory = pathlib.Path(directory)
    if (directory / "vocab.txt").is_file():
        vocabulary = read_vocabulary(directory / "vocab.txt")
        if (directory / "tokenizer.json").is_file():
            _check_same_ids(vocabulary, directory)
    elif (directory / "tokenizer.json").is_file():
        vocabulary = _vocabulary_from_tokenizer_json(directory / "tokenizer.json")
    else:
        raise FileNotFoundError(f"{directory} has no vocab.txt or tokenizer.json: it is not a BERT tokenizer folder.")
    config_path = directory / "tokenizer_config.json"
    config = json_file.read(config_path) if config_path.is_file() else {}
    if config.get("tokenize_chinese_chars", True) is False or config.get("do_basic_tokenize", True) is False:
        raise ValueError(
            f"{config_path} turns off tokenize_chinese_chars or do_basic_tokenize; flaxbert's BertTokenizer always "
            "splits on whitespace, punctuation and CJK characters. Load the model with preprocessor=None and pass "
            "it the ids transformers' tokenizer makes instead."
        )
    if config.get("truncation_side", "right") != "right":
        raise ValueError(
            f"{config_path} sets truncation_side={config['truncation_side']!r}, but flaxbert truncates on the right "
            'only (a text keeps its first tokens). Remove the key or set it to "right" to load this tokenizer; '
            "texts that need truncating then keep their first tokens, not their last as transformers would."
        )
    for name, token in SPECIAL_TOKENS.items():
        hf_name = _HF_NAMES.get(name, name)
        named = config.get(hf_name) or token
        if (named.get("content") if isinstance(named, dict) else named) != token:
            raise ValueError(f"{config_path} names {hf_name}={named!r}; flaxbert's BertTokenizer uses {token!r} there "
                             "(as every BERT vocabulary does).")  # fmt: skip
    if _names_its_class(directory, config) or not (directory / "tokenizer.json").is_file():
        case = {"lowercase": config.get("do_lower_case", True), "strip_accents": config.get("strip_accents")}
    else:
        case = _case_from_tokenizer_json(directory / "tokenizer.json")
    settings = case | {"special_tokens_in_strings": not config.get("split_special_tokens", False)}
    # The special tokens are BertTokenizer's own (special_tokens_in_strings says whether text may hold them), but for
    # "[UNK]": keras-hub splits it in text, transformers matches it as it does its other special tokens.
    known, unk = set(vocabulary), SPECIAL_TOKENS["oov_token"]
    added = [t for t in added_tokens.read_hf(directory, config) if t["content"] == unk or
             t["content"] not in SPECIAL_TOKENS.values() or t["content"] not in known]  # fmt: skip
    if unk not in {t["content"] for t in added}:
        added.append(dict(UNK_AS_ADDED_TOKEN))
    return vocabulary, settings | ({"added_tokens": added} if added else {})


def _check_same_ids(vocabulary: list[str], directory: pathlib.Path) -> None:
    """transformers 5 takes the ids of tokenizer.json where a folder has it beside vocab.txt; flaxbert reads vocab.txt
    (a token listed twice keeps its last id, as there), so the two must give every token the same id."""
    from_txt = {token: i for i, token in enumerate(vocabulary)}
    model = json_file.member(json_file.read(directory / "tokenizer.json"), "model", directory / "tokenizer.json")
    if model.get("type") != "WordPiece":
        raise ValueError(f"{directory / 'tokenizer.json'} holds a {model.get('type')} model, not WordPiece: "
                         "transformers tokenizes with it, not with vocab.txt.")  # fmt: skip
    from_json = json_file.member(model, "vocab", f"{directory / 'tokenizer.json'}'s model")
    if from_json != from_txt:
        token = next((t for t in from_txt if from_json.get(t) != from_txt[t]), None)
        differs = (f"{token!r} is id {from_txt[token]} in vocab.txt but {from_json.get(token)} in tokenizer.json"
                   if token is not None else "tokenizer.json has tokens vocab.txt lacks")  # fmt: skip
        raise ValueError(
            f"{directory}: vocab.txt and tokenizer.json disagree ({differs}); transformers takes tokenizer.json's "
            "ids, flaxbert reads vocab.txt. Delete the stale one (or save the tokenizer again) to load this folder."
        )


def _vocabulary_from_tokenizer_json(path: pathlib.Path) -> list[str]:
    model = json_file.member(json_file.read(path), "model", path)
    if model.get("type") != "WordPiece":
        raise ValueError(f"{path} holds a {model.get('type')} model, not WordPiece.")
    vocab = json_file.member(model, "vocab", f"{path}'s model")
    if not all(isinstance(i, int) for i in vocab.values()):
        raise ValueError(f"{path}: the WordPiece vocab must map each token to an integer id; the file is corrupt.")
    by_id = sorted((i, token) for token, i in vocab.items())
    if [i for i, _ in by_id] != list(range(len(by_id))):
        raise ValueError(f"the WordPiece ids in {path} are not 0..{len(by_id) - 1} without gaps.")
    return [token for _, token in by_id]


# transformers' tokenizer classes that are its BertTokenizer under another name (in transformers 5 each is BertTokenizer
# itself or a subclass that changes nothing of the tokenization), and the names that load tokenizer.json as it is.
_BERT_CLASSES = frozenset(
    f"{model}{suffix}"
    for model in ("Bert", "DistilBert", "Electra", "MobileBert", "SqueezeBert", "LayoutLM", "Lxmert", "ConvBert")
    for suffix in ("Tokenizer", "TokenizerFast")
)
_AS_SAVED = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _names_its_class(directory: pathlib.Path, config: dict) -> bool:
    """Whether transformers' AutoTokenizer builds a tokenizer class of its own for the folder (which takes its case
    settings from tokenizer_config.json) rather than loading tokenizer.json as it is (`TokenizersBackend`); a class
    that is not BERT's WordPiece tokenizer (BertJapaneseTokenizer's MeCab or character split, say) is refused."""
    named = config.get("tokenizer_class")
    if named is not None and not isinstance(named, str):
        raise ValueError(f"{directory / 'tokenizer_config.json'}: tokenizer_class must be a class name (a string), "
                         f"got {named!r}; the file is damaged.")  # fmt: skip
    if named and named not in _BERT_CLASSES | set(_AS_SAVED):
        raise ValueError(
            f"{directory / 'tokenizer_config.json'} names tokenizer_class {named!r}, which splits text otherwise than "
            "BERT's WordPiece tokenizer, the only one flaxbert implements (it reads folders naming "
            f"{', '.join(sorted(c for c in _BERT_CLASSES if not c.endswith('Fast')))}, their Fast twins, or "
            f"{' / '.join(_AS_SAVED)} with a BERT tokenizer.json). Load the model with preprocessor=None and pass it "
            "the ids transformers' tokenizer makes instead."
        )
    if named:
        return named not in _AS_SAVED
    model_config = directory / "config.json"
    return model_config.is_file() and bool(json_file.read(model_config).get("model_type"))


def _case_from_tokenizer_json(path: pathlib.Path) -> dict:
    """`lowercase` and `strip_accents` of the BertNormalizer in a tokenizer.json, or an error naming what differs
    from BERT's tokenizer there (the normalizer, the WordPiece settings, the split into words, the special tokens)."""
    saved = json_file.read(path)
    _check_bert_pipeline(saved, path)
    normalizer = saved.get("normalizer")
    kind = normalizer.get("type") if isinstance(normalizer, dict) else None
    if kind != "BertNormalizer":
        raise ValueError(f"{path} normalizes text with {kind or 'no normalizer'}; flaxbert's BertTokenizer applies "
                         "BERT's (BertNormalizer). Add a tokenizer_config.json naming the tokenizer_class if the "
                         "folder is a BERT tokenizer.")  # fmt: skip
    if normalizer.get("clean_text", True) is False or normalizer.get("handle_chinese_chars", True) is False:
        raise ValueError(f"{path}'s BertNormalizer turns off clean_text or handle_chinese_chars; flaxbert's "
                         "BertTokenizer always cleans text and splits CJK characters.")  # fmt: skip
    return {"lowercase": normalizer.get("lowercase", True), "strip_accents": normalizer.get("strip_accents")}


# A tokenizer.json's parts that flaxbert's BertTokenizer has fixed (tokenizer.py): what each must be, as a reader
# compares it. transformers loads the file as it is when the folder names no tokenizer class.
_CLS, _SEP = SPECIAL_TOKENS["cls_token"], SPECIAL_TOKENS["sep_token"]
_BERT_TEMPLATES = {"single": [_CLS, "$A", _SEP], "pair": [_CLS, "$A", _SEP, "$B", _SEP]}
_FIX = (
    "Save the tokenizer as a BertTokenizer (a tokenizer_config.json naming tokenizer_class BertTokenizer, and "
    "BERT's settings), or load the model with preprocessor=None and pass it the ids transformers' tokenizer makes."
)


def _check_bert_pipeline(saved: dict, path: pathlib.Path) -> None:
    model = saved.get("model") if isinstance(saved.get("model"), dict) else {}
    wordpiece = {"unk_token": SPECIAL_TOKENS["oov_token"], "continuing_subword_prefix": SUFFIX_INDICATOR,
                 "max_input_chars_per_word": MAX_WORD_CHARS}  # fmt: skip
    for key, bert in wordpiece.items():
        if model.get(key, bert) != bert:
            raise ValueError(f"{path}: the WordPiece model sets {key}={model[key]!r}; flaxbert's BertTokenizer has "
                             f"BERT's {bert!r} there, and would give other ids. {_FIX}")  # fmt: skip
    split = saved.get("pre_tokenizer")
    if isinstance(split, dict) and split.get("type") == "Sequence" and len(split.get("pretokenizers") or ()) == 1:
        split = split["pretokenizers"][0]
    if not (isinstance(split, dict) and split.get("type") == "BertPreTokenizer"):
        kind = split.get("type") if isinstance(split, dict) else None
        raise ValueError(f"{path} splits text into words with {kind or 'no pre_tokenizer'}; flaxbert's BertTokenizer "
                         f"splits as BERT's does (BertPreTokenizer: whitespace and punctuation). {_FIX}")  # fmt: skip
    if _templates(saved.get("post_processor")) != _BERT_TEMPLATES:
        raise ValueError(f"{path}: its post_processor does not add [CLS] and [SEP] as BERT does ([CLS] A [SEP], and "
                         f"[CLS] A [SEP] B [SEP] for pairs); flaxbert's packer adds BERT's. {_FIX}")  # fmt: skip


def _templates(processor) -> dict | None:
    """The single and pair layouts a tokenizer.json post_processor makes, as token strings and $A / $B."""
    if not isinstance(processor, dict):
        return None
    if processor.get("type") == "BertProcessing":
        (sep, _), (cls, _) = processor.get("sep", (None, 0)), processor.get("cls", (None, 0))
        return {"single": [cls, "$A", sep], "pair": [cls, "$A", sep, "$B", sep]}
    if processor.get("type") != "TemplateProcessing":
        return None

    def layout(pieces) -> list:
        names = []
        for piece in pieces or ():
            special, sequence = piece.get("SpecialToken"), piece.get("Sequence")
            names.append(special.get("id") if special else "$" + str((sequence or {}).get("id")))
        return names

    return {name: layout(processor.get(name)) for name in ("single", "pair")}
