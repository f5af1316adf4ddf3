"""BertTextClassifierPreprocessor / DistilBertTextClassifierPreprocessor: keras-hub's examples, inputs, errors."""

import csv

import numpy as np
import pytest

from flaxbert.text import (
    BertTextClassifierPreprocessor,
    BertTokenizer,
    DistilBertTextClassifierPreprocessor,
    DistilBertTokenizer,
)
from flaxbert.text.inputs import as_texts

TOY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "THE", "QUICK", "BROWN", "FOX"]


@pytest.fixture()
def toy():
    return BertTextClassifierPreprocessor(BertTokenizer(TOY_VOCAB), sequence_length=8)


@pytest.fixture(scope="module")
def uncased(minilm_dir):
    return BertTokenizer(minilm_dir / "vocab.txt", lowercase=True)


def test_keras_hub_toy_example(toy):
    # REFERENCE.md §5.1 (bert_text_classifier_preprocessor_test.py); "." is not in the vocabulary: [UNK] = 1
    x = toy("THE QUICK BROWN FOX.")
    assert x["token_ids"].tolist() == [2, 5, 6, 7, 8, 1, 3, 0]
    assert x["segment_ids"].tolist() == [0] * 8
    assert x["padding_mask"].tolist() == [1, 1, 1, 1, 1, 1, 1, 0]
    assert {a.dtype for a in x.values()} == {np.dtype(np.int32)}


def test_keras_hub_real_vocabulary_example(uncased):
    # REFERENCE.md §5.1 (keras-nlp #1627)
    x = BertTextClassifierPreprocessor(uncased, sequence_length=128)(["The quick brown fox jumped."])
    assert x["token_ids"].shape == (1, 128)
    assert x["token_ids"][0, :10].tolist() == [101, 1996, 4248, 2829, 4419, 5598, 1012, 102, 0, 0]
    assert x["padding_mask"].sum() == 8
    assert BertTextClassifierPreprocessor(uncased)("hi")["token_ids"].shape == (512,)  # keras-hub's default length


def test_batches_and_pairs(toy):
    x = toy(np.array(["THE FOX", "QUICK QUICK QUICK QUICK QUICK QUICK QUICK"]))
    assert x["token_ids"].tolist() == [[2, 5, 8, 3, 0, 0, 0, 0], [2, 6, 6, 6, 6, 6, 6, 3]]
    x = toy((["THE FOX", "BROWN BROWN BROWN BROWN"], ["QUICK", "FOX FOX FOX FOX"]))
    assert x["token_ids"].tolist() == [[2, 5, 8, 3, 6, 3, 0, 0], [2, 7, 7, 7, 3, 8, 8, 3]]
    assert x["segment_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]]
    assert x["padding_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8]
    x = toy(("THE FOX", "QUICK"))  # one unbatched pair
    assert x["token_ids"].tolist() == [2, 5, 8, 3, 6, 3, 0, 0]


def test_waterfall_truncation(toy):
    x = BertTextClassifierPreprocessor(toy.tokenizer, sequence_length=8, truncate="waterfall")(
        (["BROWN BROWN BROWN BROWN"], ["FOX FOX FOX FOX"])
    )
    assert x["token_ids"].tolist() == [[2, 7, 7, 7, 7, 3, 8, 3]]


def test_longest_first_truncation(toy):
    """transformers' rule: with budget 5 and both texts longer than half of it, the odd token goes to the longer
    text, the second on ties (round_robin gives it to the first)."""
    pairs = (
        ["THE QUICK BROWN FOX", "THE QUICK BROWN FOX", "THE QUICK"],
        ["FOX BROWN QUICK", "FOX BROWN QUICK THE", "FOX BROWN QUICK THE"],
    )
    x = BertTextClassifierPreprocessor(toy.tokenizer, sequence_length=8, truncate="longest_first")(pairs)
    assert x["token_ids"].tolist() == [
        [2, 5, 6, 7, 3, 8, 7, 3],
        [2, 5, 6, 3, 8, 7, 6, 3],
        [2, 5, 6, 3, 8, 7, 6, 3],
    ]
    assert toy(pairs)["token_ids"].tolist()[1] == [2, 5, 6, 7, 3, 8, 7, 3]


def test_y_and_sample_weight_pass_through(toy):
    y, weights = np.array([1, 0]), [0.5, 2.0]
    x, y_out = toy(["THE", "FOX"], y)
    assert y_out is y
    x, y_out, w_out = toy(["THE", "FOX"], y=y, sample_weight=weights)
    assert y_out is y and w_out is weights
    assert x["token_ids"].shape == (2, 8)


def test_sequence_length_is_settable(toy):
    toy.sequence_length = 4
    assert toy("THE QUICK BROWN FOX")["token_ids"].tolist() == [2, 5, 6, 3]
    assert toy.get_config() == {"sequence_length": 4, "truncate": "round_robin", "bucket": False}


def test_bucket_is_true_or_false(toy):
    """bucket="no" was taken as bool("no"), True: bucketing on."""
    with pytest.raises(ValueError, match=r"bucket must be True or False, got 'no'"):
        BertTextClassifierPreprocessor(toy.tokenizer, sequence_length=8, bucket="no")
    with pytest.raises(ValueError, match=r"bucket must be True or False, got 1"):
        toy.bucket = 1
    assert toy.bucket is False  # as it was
    toy.bucket = np.True_
    assert toy.bucket is True and toy("THE FOX")["token_ids"].shape == (8,)  # one text pads to its bucket of 8


def test_distil_bert_has_no_segment_ids():
    preprocessor = DistilBertTextClassifierPreprocessor(DistilBertTokenizer(TOY_VOCAB), sequence_length=8)
    x = preprocessor((["THE FOX"], ["QUICK"]))
    assert sorted(x) == ["padding_mask", "token_ids"]
    assert x["token_ids"].tolist() == [[2, 5, 8, 3, 6, 3, 0, 0]]


def test_matches_transformers_pair_encoding_on_sst2(uncased, minilm_dir, shared_data):
    """Sentence pairs that fit: ids, segment ids and mask equal transformers' `BertTokenizer` encoding."""

    from transformers import BertTokenizer as HFBertTokenizer

    with open(shared_data / "sst2" / "dev.tsv", newline="", encoding="utf-8") as f:
        sentences = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    firsts, seconds = sentences[:436], sentences[436:872]
    x = BertTextClassifierPreprocessor(uncased, sequence_length=160)((firsts, seconds))
    reference = HFBertTokenizer(vocab=str(minilm_dir / "vocab.txt"), do_lower_case=True, strip_accents=False)
    theirs = reference(firsts, seconds, padding="max_length", max_length=160)
    assert x["token_ids"].tolist() == theirs["input_ids"]
    assert x["segment_ids"].tolist() == theirs["token_type_ids"]
    assert x["padding_mask"].tolist() == theirs["attention_mask"]


def test_utf8_bytes_are_text_as_tf_data_yields_it(toy):
    def same(a, b):
        return all(np.array_equal(a[k], b[k]) for k in ("token_ids", "segment_ids", "padding_mask"))

    batch = ["THE QUICK FOX", "BROWN FOX \u00e9"]
    encoded = [text.encode("utf-8") for text in batch]
    assert same(toy(encoded), toy(batch))
    assert same(toy(np.array(encoded)), toy(batch))  # a numpy bytes array (dtype "S"), as tfds' as_numpy gives
    assert same(toy(np.array(encoded, dtype=object)), toy(batch))
    assert same(toy(b"THE FOX"), toy("THE FOX"))
    assert same(toy((encoded, batch)), toy((batch, batch)))
    assert same(toy((b"THE", "FOX")), toy(("THE", "FOX")))
    assert toy.tokenizer(b"THE FOX") == toy.tokenizer("THE FOX")
    assert as_texts([b"FOX \xc3\xa9", "THE"]) == ["FOX \u00e9", "THE"]  # decoded as UTF-8, not Latin-1 ("Ã©")


class TestErrors:
    def test_bytes_that_are_not_utf8_are_named(self, toy):
        with pytest.raises(ValueError, match=r"item 1 of segment 0 is bytes that are not UTF-8 .*at byte 3"):
            toy((["THE", b"FOX\xff"], ["THE", "FOX"]))

    def test_2d_list_is_refused_as_ambiguous(self, toy):
        with pytest.raises(ValueError, match=r"2-D list .* pass a tuple of batches"):
            toy([["THE", "FOX"], ["QUICK", "BROWN"]])
        with pytest.raises(ValueError, match=r"numpy array of shape \(2, 2\).*tuple of two batches"):
            toy(np.array([["THE", "FOX"], ["QUICK", "BROWN"]]))

    def test_unknown_truncate_lists_the_valid_ones(self, toy):
        with pytest.raises(
            ValueError, match="truncate must be one of 'round_robin', 'waterfall', 'longest_first'; got 'longest'"
        ):
            BertTextClassifierPreprocessor(toy.tokenizer, truncate="longest")

    def test_longest_first_takes_one_text_or_a_pair(self, toy):
        preprocessor = BertTextClassifierPreprocessor(toy.tokenizer, sequence_length=8, truncate="longest_first")
        with pytest.raises(ValueError, match="3 segments need truncate='round_robin' or 'waterfall'"):
            preprocessor((["THE"], ["FOX"], ["QUICK"]))

    def test_non_string_items_are_named(self, toy):
        with pytest.raises(TypeError, match=r"item 2 of the batch is NoneType \(None\), expected str"):
            toy(["THE", "FOX", None])
        with pytest.raises(TypeError, match=r"item 0 of segment 1 is int \(3\), expected str"):
            toy((["THE"], [3]))
        with pytest.raises(TypeError, match="got int"):
            toy(5)

    def test_sequence_length_too_small_for_the_special_tokens(self, toy):
        with pytest.raises(ValueError, match="at least 2"):
            BertTextClassifierPreprocessor(toy.tokenizer, sequence_length=1)
        with pytest.raises(ValueError, match="at least 2"):
            toy.sequence_length = 0
        toy.sequence_length = 2
        assert toy("THE FOX")["token_ids"].tolist() == [2, 3]
        with pytest.raises(ValueError, match=r"sequence_length=2 cannot hold the 3 special tokens of a 2-segment"):
            toy(("THE", "FOX"))

    def test_empty_batch(self, toy):
        with pytest.raises(ValueError, match="the batch is empty"):
            toy([])
        with pytest.raises(ValueError, match="segment 1 is empty"):
            toy((["THE"], []))

    def test_tuple_of_batches_with_mismatched_sizes(self, toy):
        with pytest.raises(ValueError, match=r"same number of texts, got sizes \[2, 1\]"):
            toy((["THE", "FOX"], ["QUICK"]))

    def test_tuple_mixing_strings_and_batches(self, toy):
        with pytest.raises(TypeError, match="mixes strings and batches"):
            toy(("THE", ["FOX"]))

    def test_tokenizer_type(self):
        with pytest.raises(TypeError, match="needs a BertTokenizer"):
            BertTextClassifierPreprocessor(TOY_VOCAB)
