"""Classifier preprocessors: raw text in, padded numpy `token_ids` / `segment_ids` / `padding_mask` out.

They mirror keras-hub's `BertTextClassifierPreprocessor` and `DistilBertTextClassifierPreprocessor`: tokenize each
segment (the Rust tokenizer's parallel batch API), pack `[CLS] A [SEP] (B [SEP])` with `round_robin` or `waterfall`
truncation (or transformers' `longest_first`, which presets from transformers checkpoints use), pad with `[PAD]`.
Unlike keras-hub, `padding_mask` is int32 (keras-hub gives bool) and no TensorFlow runs, and it covers each packed
row whatever ids it holds, as transformers' attention mask does (keras-hub's is `token_ids != pad_id`: the same,
except that a "[PAD]" typed in the text, which a tokenizer matching special tokens in strings reads as the pad id, is
masked out there, so the model would not see a token its input holds).
"""

import numpy as np

from flaxbert.text.inputs import as_segments
from flaxbert.text.packer import check_truncate, pack
from flaxbert.text.tokenizer import BertTokenizer, DistilBertTokenizer


class BertTextClassifierPreprocessor:
    """Turns text, or tuples of texts, into BERT classifier inputs.

    Args:
        tokenizer: a `BertTokenizer`.
        sequence_length: the padded length of every row (keras-hub's default 512). Settable later.
        truncate: how to shorten segments that do not fit: "round_robin" (default, keras-hub's), "waterfall", or
            "longest_first" (transformers', for one text or a pair; `from_preset` on a transformers checkpoint picks
            it, so that pairs are truncated as transformers does); see `packer`.
        bucket: pad each batch only to the smallest of a few fixed lengths (`bucketing.bucket_lengths`) that holds its
            longest row, instead of to `sequence_length`. The unpadded part of every row is unchanged; only the
            amount of padding (and the number of shapes jit sees) differs. Off by default, as keras-hub pads fully.

    Calling it with `x` and optional `y` and `sample_weight` returns `x`, `(x, y)` or `(x, y, sample_weight)`, where
    `x` is a dict of int32 arrays `token_ids`, `segment_ids` and `padding_mask` (1 on packed tokens, 0 on padding),
    each [B, L] for a batch or [L] for one unbatched string; `y` and `sample_weight` are passed through untouched.
    `x` may be one string, a batch (list or 1-D numpy array of str), or a tuple of batches, one per segment (for
    sentence pairs: `(first_texts, second_texts)`; a 2-D list is refused as ambiguous).

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "THE", "QUICK", "BROWN", "FOX"]
        >>> preprocessor = BertTextClassifierPreprocessor(BertTokenizer(vocab), sequence_length=8)
        >>> preprocessor("THE QUICK BROWN FOX.")["token_ids"].tolist()
        [2, 5, 6, 7, 8, 1, 3, 0]
        >>> x, y = preprocessor((["THE FOX"], ["BROWN"]), y=[1])
        >>> x["segment_ids"].tolist()
        [[0, 0, 0, 0, 1, 1, 0, 0]]
    """

    outputs = ("token_ids", "segment_ids", "padding_mask")
    tokenizer_cls = BertTokenizer
    presets = BertTokenizer.presets

    def __init__(
        self, tokenizer: BertTokenizer, sequence_length: int = 512, truncate: str = "round_robin", bucket: bool = False
    ):
        if not isinstance(tokenizer, BertTokenizer):  # DistilBertTokenizer is one too
            raise TypeError(f"{type(self).__name__} needs a BertTokenizer or DistilBertTokenizer, got {tokenizer!r}.")
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.truncate = check_truncate(truncate)
        self.bucket = bucket

    @property
    def bucket(self) -> bool:
        """Whether each batch is padded only to its length bucket (`bucketing.bucket_lengths`), not to
        `sequence_length`."""
        return self._bucket

    @bucket.setter
    def bucket(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):  # bool("no") is True: a string would turn bucketing on
            raise ValueError(f"bucket must be True or False, got {value!r}.")
        self._bucket = bool(value)

    @property
    def sequence_length(self) -> int:
        """The padded length of every row (the longest row when bucketing)."""
        return self._sequence_length

    @sequence_length.setter
    def sequence_length(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(
                f"sequence_length must be an integer of at least 2, to hold [CLS] and [SEP]; got {value!r}."
            )
        self._sequence_length = int(value)

    def __call__(self, x, y=None, sample_weight=None):
        """Preprocesses `x`; see the class docstring for the accepted inputs and the outputs."""
        segments, batched = as_segments(x)
        token_ids, segment_ids, padding_mask = pack(
            [self.tokenizer(texts) for texts in segments],
            self.sequence_length,
            start_id=self.tokenizer.start_token_id,
            end_id=self.tokenizer.end_token_id,
            pad_id=self.tokenizer.pad_token_id,
            truncate=self.truncate,
            bucket=self.bucket,
        )
        arrays = {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": padding_mask,
        }
        x = {name: arrays[name] if batched else arrays[name][0] for name in self.outputs}
        if y is None and sample_weight is None:
            return x
        return (x, y) if sample_weight is None else (x, y, sample_weight)

    @classmethod
    def from_preset(cls, preset, sequence_length: int | None = None):
        """The preprocessor a preset describes (its tokenizer, sequence length and truncation); an explicit
        `sequence_length` overrides the saved one. Presets as `BertTokenizer.from_preset`."""
        from flaxbert.presets import text_assets  # imported here: preset resolution pulls in jax
        from flaxbert.presets.resolve import resolve

        found = text_assets.preprocessor(cls, cls.tokenizer_cls, resolve(preset, load_weights=False), sequence_length)
        if found is None:
            raise ValueError(f"preset {preset!r} was saved without a tokenizer.")
        return found

    def get_config(self) -> dict:
        """The settings that, with the tokenizer, rebuild this preprocessor."""
        return {"sequence_length": self.sequence_length, "truncate": self.truncate, "bucket": self.bucket}

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in self.get_config().items())
        return f"{type(self).__name__}({self.tokenizer!r}, {settings})"


class DistilBertTextClassifierPreprocessor(BertTextClassifierPreprocessor):
    """Turns text into DistilBERT classifier inputs: as `BertTextClassifierPreprocessor`, without `segment_ids`.

    Pairs are still packed as `[CLS] A [SEP] B [SEP]`; DistilBERT just has no segment embedding.

    Example:
        >>> from flaxbert.text import DistilBertTokenizer
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
        >>> tokenizer = DistilBertTokenizer(vocab, lowercase=True)
        >>> x = DistilBertTextClassifierPreprocessor(tokenizer, sequence_length=6)(["The fox", "fox"])
        >>> sorted(x), x["token_ids"].tolist()
        (['padding_mask', 'token_ids'], [[2, 5, 6, 3, 0, 0], [2, 6, 3, 0, 0, 0]])
    """

    outputs = ("token_ids", "padding_mask")
    tokenizer_cls = DistilBertTokenizer
    presets = DistilBertTokenizer.presets
