"""A tiny BERT preset whose word-level vocabulary comes from a slice of SST-2, for end-to-end train.py tests."""

from __future__ import annotations

import collections
import csv
import re

import flaxbert

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sst2_vocabulary(train_tsv, rows: int, size: int = 2000) -> list[str]:
    """The `size` most frequent words of the first `rows` training sentences (the tokenizer splits punctuation)."""
    counts = collections.Counter()
    with open(train_tsv, newline="") as f:
        for i, row in enumerate(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)):
            if i == rows:
                break
            counts.update(re.findall(r"\w+|[^\w\s]", row["sentence"].lower()))
    return SPECIALS + [word for word, _ in counts.most_common(size)]


def write_tiny_preset(directory, vocabulary: list[str], seed: int = 0) -> None:
    tokenizer = flaxbert.BertTokenizer(vocabulary, lowercase=True)
    preprocessor = flaxbert.BertTextClassifierPreprocessor(tokenizer, sequence_length=64)
    backbone = flaxbert.BertBackbone(len(vocabulary), num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
                                     max_sequence_length=64, seed=seed)  # fmt: skip
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor, seed=seed)
    classifier.save_to_preset(directory)
