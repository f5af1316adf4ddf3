"""WordPiece tokenizers for BERT and DistilBERT, built on the Rust `tokenizers` library (no TensorFlow).

Semantics: flaxbert follows Hugging Face `tokenizers` (`BertNormalizer` + `BertPreTokenizer` + `WordPiece`), so its ids
equal transformers' `BertTokenizer` configured the same way. keras-hub tokenizes with tf-text instead. The two agree on
ordinary text (every sentence of SST-2 train), but on a corpus of 70 hard cases (tests/text/test_tokenizer_parity.py)
keras-hub 0.32 gave other ids for 14, all from these edges (REFERENCE.md §4.4):

- lower-casing: HF lower-cases each character; tf-text applies NFKC and Unicode case folding first, so keras-hub maps
  "ß" to "ss", ligatures such as "ﬁ" to "fi", full-width and half-width forms to their plain ones, "…" to "...",
  "①" to "1", composes decomposed accents, and drops variation selectors (an emoji's U+FE0F: "♥\ufe0f" is "♥"
  to keras-hub; HF strips it only with the accents, so with them kept it is one `[UNK]` word).
- control and format characters (Cc, Cf: e.g. U+0007, zero-width space and joiner, soft hyphen, BOM): HF deletes them,
  joining their neighbours into one word; tf-text treats them as word breaks. HF also deletes U+FFFD and private-use
  characters, which keras-hub keeps as `[UNK]`, and treats U+2028/U+2029 as spaces, where keras-hub does not.
- spaces other than ASCII's: keras-hub splits words on ASCII whitespace only (RE2's `\\s`), so the no-break space
  U+00A0 (HTML's `&nbsp;`), U+1680, U+2000-U+200A, the narrow no-break U+202F (French typography), U+205F and the
  ideographic space U+3000 join their neighbours into one word, mostly `[UNK]` ("good\u00a0movie": keras-hub
  `[UNK]`, flaxbert and HF "good", "movie").
- punctuation new in recent Unicode versions (about 40 marks, e.g. U+061D, U+2E55-U+2E5D): the two libraries' Unicode
  tables differ on whether they are punctuation, which splits words.
- the longest word: HF turns a word of more than 100 characters into `[UNK]`; tf-text counts 100 UTF-8 bytes.
- CJK Extension E: HF's normalizer counts U+2B920-U+2CEAF as CJK ideographs, and tf-text (like Google BERT and
  REFERENCE.md §4.2) U+2B820-U+2CEAF, so the 256 characters U+2B820-U+2B91F are split off as words of their own by
  keras-hub but not by HF (nor flaxbert), which keeps them inside the word around them.
- accents when lower-casing: keras-hub presets keep them (`strip_accents=False`, this class's default); HF
  checkpoints follow their `tokenizer_config.json`, where `strip_accents=None` strips them whenever lower-casing.

transformers' pure-Python `BertTokenizerLegacy` (the slow tokenizer) applies NFC first, so with `strip_accents=False`
and a vocabulary that holds accented letters it can differ on decomposed accents ("cafe" + U+0301) from transformers'
default (Rust) `BertTokenizer` and flaxbert. The uncased English vocabulary has no accented letters, so it never does.
It also deletes unassigned code points and noncharacters (U+FFFF, U+FDD0), which the Rust tokenizer and flaxbert keep
as `[UNK]`, and its older Unicode tables miss some recent punctuation and CJK Extension E, as keras-hub's do above.
"""

import os
import pathlib

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

from flaxbert.presets.registry import presets_for
from flaxbert.text import added_tokens as added
from flaxbert.text.inputs import as_text, as_texts
from flaxbert.text.vocabulary import (
    MAX_WORD_CHARS,
    SPECIAL_TOKENS,
    SUFFIX_INDICATOR,
    read_vocabulary,
    write_vocabulary,
)

OOV_TOKEN = SPECIAL_TOKENS["oov_token"]
# The special tokens keras-hub matches whole in text (special_tokens_in_strings): not the OOV token, "[UNK]" typed in a
# text is split like other text there. transformers matches it too: its folders add it as a special added token.
_IN_STRINGS = ("cls_token", "sep_token", "pad_token", "mask_token")
_ENCODE_CHUNK = 8192  # texts the Rust tokenizer encodes at once (in parallel) before their ids are kept as lists


def build_wordpiece(
    vocabulary: list[str],
    *,
    lowercase: bool,
    strip_accents: bool | None,
    special_tokens: list[str],
    added_tokens: list[dict] = (),
) -> Tokenizer:
    """Builds the Rust WordPiece pipeline: BERT normalisation, whitespace/punctuation/CJK split, greedy WordPiece.

    Args:
        vocabulary: tokens in id order; a token listed twice keeps its last id, as HF's `load_vocab` does.
        lowercase: lower-case the text before WordPiece.
        strip_accents: delete combining marks after NFD; `None` strips exactly when `lowercase` (HF semantics).
        special_tokens: strings matched whole in raw text before normalisation and never split; empty to split them
            like any other text (keras-hub's default), and then the special `added_tokens` too.
        added_tokens: `AddedToken` keyword dicts (`added_tokens.check`), matched before WordPiece; one not in the
            vocabulary takes the next free id.
    """
    model = models.WordPiece(
        {token: i for i, token in enumerate(vocabulary)},
        unk_token=OOV_TOKEN,
        continuing_subword_prefix=SUFFIX_INDICATOR,
        max_input_chars_per_word=MAX_WORD_CHARS,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # No cleanup: like keras-hub, detokenize joins words with single spaces ("fox ." stays "fox .").
    tokenizer.decoder = decoders.WordPiece(prefix=SUFFIX_INDICATOR, cleanup=False)
    if special_tokens:
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    # transformers' split_special_tokens: special added tokens typed in text are split like any other text.
    tokenizer.encode_special_tokens = not special_tokens
    for token in added_tokens:  # one at a time, in order: the ids follow the order
        (tokenizer.add_special_tokens if token["special"] else tokenizer.add_tokens)([AddedToken(**token)])
    return tokenizer


class BertTokenizer:
    """BERT's WordPiece tokenizer: text to token ids, the same ids as transformers' `BertTokenizer`.

    Args:
        vocabulary: a list of tokens (the index is the id) or the path of a one-token-per-line file. It must hold
            `[CLS]`, `[SEP]`, `[PAD]`, `[MASK]` and `[UNK]`; their ids are looked up by string.
        lowercase: lower-case text first (`True` for `*_uncased` presets).
        strip_accents: delete accents. `False` (keras-hub presets, even uncased ones), `True`, or `None` to strip
            exactly when `lowercase` (HF and Google BERT uncased checkpoints).
        special_tokens_in_strings: match the special token strings `"[CLS]"`, `"[SEP]"`, `"[PAD]"` and `"[MASK]"`
            whole inside input text, as keras-hub does (not `"[UNK]"`, there; a transformers folder adds it as a
            special added token, as transformers matches it too). Off by default, as in keras-hub: "[SEP]" typed in
            a text is split like any other text. This holds for special
            added tokens too (transformers' `split_special_tokens` is its opposite).
        added_tokens: tokens transformers added to the vocabulary (`tokenizer.add_tokens`, extra special tokens),
            matched whole in the text before WordPiece: strings, or dicts of `tokenizers.AddedToken` options
            (`content`, `special`, `normalized`, `single_word`, `lstrip`, `rstrip`; see `added_tokens.check`). One
            already in the vocabulary keeps its id; the others take the ids after it, in order. `from_preset` reads
            them from a transformers checkpoint, so its ids are transformers' own.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "."]
        >>> tokenizer = BertTokenizer(vocabulary=vocab, lowercase=True)
        >>> tokenizer("The quick brown fox.")
        [5, 6, 7, 8, 9]
        >>> tokenizer.detokenize([5, 6, 7, 8, 9])
        'the quick brown fox .'
    """

    presets = presets_for("bert")  # the built-in presets, {name: Preset}

    SPECIAL_TOKENS = SPECIAL_TOKENS  # attribute name -> token string; start/end are keras-hub's aliases for the packer

    def __init__(
        self,
        vocabulary: list[str] | str | os.PathLike,
        lowercase: bool = False,
        strip_accents: bool | None = False,
        special_tokens_in_strings: bool = False,
        added_tokens: list[str | dict] | None = None,
    ):
        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = read_vocabulary(vocabulary)
        self._vocabulary = as_texts(vocabulary, "the vocabulary")  # WordPiece's; then the added tokens' ids
        self.added_tokens = added.check(added_tokens)
        known = set(self._vocabulary)
        self._tokens = self._vocabulary + [t["content"] for t in self.added_tokens if t["content"] not in known]
        self._ids = {token: i for i, token in enumerate(self._tokens)}
        missing = [token for token in self.SPECIAL_TOKENS.values() if token not in self._ids]
        if missing:
            raise ValueError(f"{type(self).__name__}'s vocabulary lacks the special token(s) {', '.join(missing)}.")
        for name, token in self.SPECIAL_TOKENS.items():
            setattr(self, name, token)
            setattr(self, f"{name}_id", self._ids[token])
        self.start_token, self.start_token_id = self.cls_token, self.cls_token_id
        self.end_token, self.end_token_id = self.sep_token, self.sep_token_id
        for name, value in (("lowercase", lowercase), ("special_tokens_in_strings", special_tokens_in_strings)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}.")
        if not (strip_accents is None or isinstance(strip_accents, (bool, np.bool_))):
            raise ValueError(
                f"strip_accents must be True, False or None (strip when lower-casing), got {strip_accents!r}."
            )
        self.lowercase = bool(lowercase)
        self.strip_accents = None if strip_accents is None else bool(strip_accents)
        self.special_tokens_in_strings = bool(special_tokens_in_strings)
        self._tokenizer = build_wordpiece(
            self._vocabulary,
            lowercase=self.lowercase,
            strip_accents=strip_accents,
            special_tokens=[SPECIAL_TOKENS[name] for name in _IN_STRINGS] if special_tokens_in_strings else [],
            added_tokens=self.added_tokens,
        )
        new = list(enumerate(self._tokens))[len(self._vocabulary) :]
        moved = [token for i, token in new if self._tokenizer.token_to_id(token) != i]
        if moved:  # a vocabulary that lists a token twice leaves Rust fewer ids than lines
            raise ValueError(
                f"the added tokens {moved[:5]} would not get the ids after the vocabulary ({len(self._vocabulary)} "
                "lines): it lists a token twice. Remove the duplicate."
            )

    @classmethod
    def from_preset(cls, preset) -> "BertTokenizer":
        """The tokenizer of a preset: a local directory (flaxbert, keras-hub or transformers format), an
        `hf://org/repo` handle or a built-in name.

        A transformers folder gives transformers' settings where transformers 5 reads them: from
        tokenizer_config.json (`do_lower_case`, `strip_accents`: null strips when lower-casing, `split_special_tokens`:
        by default "[SEP]" in a text is the special token) when the folder names its tokenizer class, else from
        tokenizer.json's normalizer; and its added tokens (`added_tokens.read_hf`), so the ids equal
        `transformers.AutoTokenizer.from_pretrained(path)`'s. keras-hub presets
        keep their own settings (accents kept even when lower-casing).
        """
        from flaxbert.presets import text_assets  # imported here: preset resolution pulls in jax
        from flaxbert.presets.resolve import resolve

        found = text_assets.tokenizer(cls, resolve(preset, load_weights=False))
        if found is None:
            raise ValueError(f"preset {preset!r} was saved without a tokenizer.")
        return found

    def __call__(self, inputs: str | list[str]) -> list[int] | list[list[int]]:
        """Tokenizes one string into a list of ids, or a batch (list or 1-D numpy array) into a list of lists (any
        string may be UTF-8 bytes).

        No special tokens are added: packing into `[CLS] ... [SEP]` is the preprocessor's job.
        """
        if isinstance(inputs, (str, bytes)):
            return self._tokenizer.encode(as_text(inputs), add_special_tokens=False).ids
        texts = as_texts(inputs)
        # encode_batch_fast runs in parallel in Rust and skips the character offsets nobody here reads. In chunks:
        # each Encoding holds its token strings and masks too (~5 KB a sentence), and 100,000 sentences' at once
        # took half a gigabyte at the peak of a predict whose packed arrays were 72 MB.
        ids = []
        for start in range(0, len(texts), _ENCODE_CHUNK):
            chunk = self._tokenizer.encode_batch_fast(texts[start : start + _ENCODE_CHUNK], add_special_tokens=False)
            ids.extend(encoding.ids for encoding in chunk)
        return ids

    tokenize = __call__

    def detokenize(self, ids) -> str | list[str]:
        """Maps ids back to text: `##` pieces are glued to their word and words joined by single spaces.

        Like keras-hub's, this is not an exact inverse (case, accents and spacing are lost). A 1-D sequence of ids
        gives a string; a batch (list of lists or 2-D array) gives a list of strings. Special tokens are kept.
        """
        if _is_batch_of_ids(ids):
            rows = [self._checked_ids(row, f"row {i} of ids") for i, row in enumerate(ids)]
            return self._tokenizer.decode_batch(rows, skip_special_tokens=False)
        return self._tokenizer.decode(self._checked_ids(ids, "ids"), skip_special_tokens=False)

    def _checked_ids(self, ids, what: str) -> list[int]:
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__") or _rank(ids) == 0:
            raise TypeError(f"{what} must be a sequence of integer token ids, got {type(ids).__name__} ({ids!r:.40}).")
        array = np.asarray(ids) if _rank(ids) is not None else np.asarray(list(ids))
        if array.size and (array.ndim != 1 or array.dtype.kind not in "iu"):
            raise TypeError(f"{what} must be a 1-D sequence of integer token ids, got {array.dtype} {array.shape}.")
        bad = array[(array < 0) | (array >= len(self._tokens))]
        if bad.size:
            raise ValueError(
                f"{what}: ids outside the vocabulary's 0..{len(self._tokens) - 1}: e.g. {bad[:5].tolist()}."
            )
        return array.astype(np.int64).tolist()

    def vocabulary_size(self) -> int:
        """The number of token ids: the vocabulary's, and the added tokens' after it."""
        return len(self._tokens)

    def get_vocabulary(self) -> list[str]:
        """The tokens in id order, added tokens included (a copy)."""
        return list(self._tokens)

    def id_to_token(self, id: int) -> str:
        """The token string of `id`."""
        if not 0 <= id < len(self._tokens):
            raise ValueError(f"id {id} is out of range: the vocabulary has ids 0..{len(self._tokens) - 1}.")
        return self._tokens[id]

    def token_to_id(self, token: str) -> int:
        """The id of a token string (a whole vocabulary entry, e.g. `"##ing"`)."""
        if token not in self._ids:
            raise ValueError(f"token {token!r} is not in the vocabulary.")
        return self._ids[token]

    def __reduce__(self):
        """Pickled (and deep-copied) as its vocabulary and settings, and rebuilt from them: a pickled Rust tokenizer
        loses its `encode_special_tokens` setting, and special added tokens were then matched whole in text where
        the original split them."""
        return _rebuilt, (type(self), self._vocabulary, self.get_config())

    def get_config(self) -> dict:
        """The settings that, with the vocabulary file, rebuild this tokenizer: `type(t)(vocab, **t.get_config())`
        (`added_tokens` only where there are any)."""
        config = {
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "special_tokens_in_strings": self.special_tokens_in_strings,
        }
        return config | ({"added_tokens": [dict(t) for t in self.added_tokens]} if self.added_tokens else {})

    def save_vocabulary(self, path: str | os.PathLike) -> pathlib.Path:
        """Writes the WordPiece vocabulary to the file `path`, one token per line, as transformers' vocab.txt holds
        it: without the added tokens, which `get_config()` and `save_tokenizer_json` keep; returns the path."""
        return write_vocabulary(self._vocabulary, path)

    def save_tokenizer_json(self, path: str | os.PathLike) -> pathlib.Path:
        """Writes the whole pipeline as a Hugging Face `tokenizers` JSON file (readable by `Tokenizer.from_file`)."""
        path = pathlib.Path(path)
        self._tokenizer.save(str(path))
        return path

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}(vocabulary_size={self.vocabulary_size()}, {settings})"


class DistilBertTokenizer(BertTokenizer):
    """DistilBERT's tokenizer: the same WordPiece tokenizer and special tokens as `BertTokenizer`.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
        >>> DistilBertTokenizer(vocabulary=vocab, lowercase=True)(["The fox", "fox"])
        [[5, 6], [6]]
    """

    presets = presets_for("distil_bert")


def _rank(ids) -> int | None:
    """The rank of an array (numpy, jax, torch: whatever has an integer `ndim`), None for a list or other sequence."""
    rank = getattr(ids, "ndim", None)
    return rank if isinstance(rank, int) else None


def _is_batch_of_ids(ids) -> bool:
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        return False  # not ids at all: `_checked_ids` says so
    if _rank(ids) is not None:  # an array's rank says; its items need not (a jax array's scalars have __iter__)
        return _rank(ids) == 2
    return hasattr(next(iter(ids), None), "__iter__")


def _rebuilt(cls, vocabulary: list[str], config: dict):
    """A pickled tokenizer, rebuilt (`BertTokenizer.__reduce__`)."""
    return cls(vocabulary, **config)
