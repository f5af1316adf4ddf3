"""Length bucketing: the unpadded part equals fixed-length output; widths come from a small fixed set."""

import csv

import numpy as np
import pytest

from flaxbert.text import BertTextClassifierPreprocessor, BertTokenizer, bucket_lengths
from flaxbert.text.bucketing import bucket_length


def test_bucket_lengths():
    assert bucket_lengths(128) == (16, 24, 32, 48, 64, 96, 128)
    assert bucket_lengths(512) == (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
    assert bucket_lengths(100) == (16, 24, 32, 48, 64, 96, 100)
    assert bucket_lengths(8) == (8,)
    assert bucket_length(1, 128) == 16
    assert bucket_length(33, 128) == 48
    assert bucket_length(97, 128) == 128
    with pytest.raises(ValueError, match="does not fit sequence_length=128"):
        bucket_length(129, 128)


@pytest.fixture(scope="module")
def sst2_dev(shared_data):
    with open(shared_data / "sst2" / "dev.tsv", newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.mark.parametrize("sequence_length", [24, 128, 512])
def test_bucketed_batches_equal_fixed_length_ones_unpadded(minilm_dir, sst2_dev, sequence_length):
    tokenizer = BertTokenizer(minilm_dir / "vocab.txt", lowercase=True)
    fixed = BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    bucketed = BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length, bucket=True)
    # single sentences in batches of 32, and pairs (which also exercises truncation at 24)
    batches = [sst2_dev[i : i + 32] for i in range(0, len(sst2_dev), 32)]
    inputs = batches + [(a, b) for a, b in zip(batches[:-1:2], batches[1::2], strict=False) if len(a) == len(b)]
    widths = []
    for x in inputs:
        want, got = fixed(x), bucketed(x)
        width = got["token_ids"].shape[1]
        widths.append(width)
        assert width in bucket_lengths(sequence_length)
        longest = want["padding_mask"].sum(axis=1).max()
        assert width == min(n for n in bucket_lengths(sequence_length) if n >= longest)  # the smallest that holds it
        for name in want:
            assert (got[name] == want[name][:, :width]).all()
            assert (want[name][:, width:] == 0).all()  # nothing but padding was cut off
    assert len(set(widths)) <= 4
    if sequence_length == 512:
        assert max(widths) <= 128  # SST-2 dev fits in a quarter of 512


def test_unbatched_input_is_bucketed_too(minilm_dir):
    tokenizer = BertTokenizer(minilm_dir / "vocab.txt", lowercase=True)
    x = BertTextClassifierPreprocessor(tokenizer, sequence_length=128, bucket=True)("The quick brown fox jumped.")
    assert x["token_ids"].tolist() == [101, 1996, 4248, 2829, 4419, 5598, 1012, 102] + [0] * 8
    assert np.array_equal(x["padding_mask"], (x["token_ids"] != 0).astype(np.int32))
