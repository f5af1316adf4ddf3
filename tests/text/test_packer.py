"""The numpy multi-segment packer against the closed-form rules of REFERENCE.md §5.2 (round_robin, waterfall) and
against transformers' own tokenizer (longest_first)."""

import itertools

import numpy as np
import pytest

from flaxbert.text.packer import pack, trimmed_lengths

START, END, PAD = 101, 102, 0
KERAS_MODES = ("round_robin", "waterfall")  # keras-hub's rules, stated in REFERENCE.md §5.2


def _kept_by_priority(lengths, budget, truncate):
    """REFERENCE.md §5.2, written as stated: token k of segment s has priority k*n + s (round_robin) or is taken
    left to right (waterfall); the `budget` first tokens in that order are kept."""
    n = len(lengths)
    tokens = [(s, k) for s in range(n) for k in range(lengths[s])]
    order = (lambda t: t[1] * n + t[0]) if truncate == "round_robin" else (lambda t: (t[0], t[1]))
    kept = [0] * n
    for s, _ in sorted(tokens, key=order)[: max(budget, 0)]:
        kept[s] += 1
    return kept


def _expected_row(segments, kept, width):
    """The layout rule: [CLS] seg0 [SEP] seg1 [SEP] ..., segment ids 0 for [CLS] and padding, i for segment i and
    the [SEP] after it."""
    tokens, segment_ids = [START], [0]
    for s, (ids, k) in enumerate(zip(segments, kept, strict=True)):
        tokens += list(ids[:k]) + [END]
        segment_ids += [s] * (k + 1)
    padding = width - len(tokens)
    return tokens + [PAD] * padding, segment_ids + [0] * padding


def test_reference_example():
    # REFERENCE.md §5.2: (seq1=[1,2,3,4], seq2=[11,12,13,14]), sequence_length 8
    token_ids, segment_ids, mask = pack([[[1, 2, 3, 4]], [[11, 12, 13, 14]]], 8, start_id=START, end_id=END, pad_id=PAD)
    assert token_ids.tolist() == [[101, 1, 2, 3, 102, 11, 12, 102]]
    assert segment_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert mask.tolist() == [[1] * 8]
    assert token_ids.dtype == segment_ids.dtype == mask.dtype == np.int32


def test_the_mask_covers_a_pad_id_inside_the_text():
    """A tokenizer that matches special tokens in strings reads a typed "[PAD]" as the pad id: it is still a token of
    the row (transformers' attention mask covers it too), so the mask is the packed length, not `ids != pad_id`."""
    token_ids, _, mask = pack([[[7, PAD, 8], [9]]], 7, start_id=START, end_id=END, pad_id=PAD)
    assert token_ids.tolist() == [[START, 7, PAD, 8, END, PAD, PAD], [START, 9, END, PAD, PAD, PAD, PAD]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]]


@pytest.mark.parametrize("truncate", KERAS_MODES)
@pytest.mark.parametrize("num_segments", [1, 2, 3])
def test_every_length_combination_follows_the_closed_form(num_segments, truncate):
    """Exhaustive: every combination of segment lengths 0..7 (0..5 for three segments), every sequence_length from
    the smallest legal one to beyond the longest row. Each combination is one row of a batch."""
    max_len = 7 if num_segments < 3 else 5
    combos = list(itertools.product(range(max_len + 1), repeat=num_segments))
    # distinct ids (segment s, position k) -> 1000 * (s + 1) + k, so a wrong choice of token shows
    segments = [[[1000 * (s + 1) + k for k in range(c[s])] for c in combos] for s in range(num_segments)]
    for sequence_length in range(num_segments + 1, num_segments * max_len + num_segments + 3):
        budget = sequence_length - 1 - num_segments
        token_ids, segment_ids, mask = pack(
            segments, sequence_length, start_id=START, end_id=END, pad_id=PAD, truncate=truncate
        )
        for r, lengths in enumerate(combos):
            kept = _kept_by_priority(lengths, budget, truncate)
            rows = [segments[s][r] for s in range(num_segments)]
            expected_tokens, expected_segments = _expected_row(rows, kept, sequence_length)
            assert token_ids[r].tolist() == expected_tokens, (lengths, sequence_length)
            assert segment_ids[r].tolist() == expected_segments, (lengths, sequence_length)
            assert mask[r].tolist() == [int(t != PAD) for t in expected_tokens], (lengths, sequence_length)


def test_trimmed_lengths_on_wide_random_lengths():
    """Long and uneven segments (the binary search must handle lengths far beyond the budget)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 600, size=(500, 3))
    lengths[::7, 1] = 0
    for budget in (0, 1, 2, 5, 127, 509, 2000):
        for truncate in KERAS_MODES:
            kept = trimmed_lengths(lengths, budget, truncate)
            expected = [_kept_by_priority(list(row), budget, truncate) for row in lengths[:60]]
            assert kept[:60].tolist() == expected
            assert (kept.sum(axis=1) == np.minimum(lengths.sum(axis=1), budget)).all()
            assert (kept <= lengths).all()


def _hf_toy_tokenizer():
    """transformers' BertTokenizer over a vocabulary of one-token words a0..a19 and b0..b19 (ids 5..44)."""
    from transformers import BertTokenizer as HFBertTokenizer

    words = [f"a{k}" for k in range(20)] + [f"b{k}" for k in range(20)]
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    return HFBertTokenizer(vocab=vocab), vocab


def test_longest_first_equals_transformers_on_every_length_pair():
    """Every pair of lengths 0..12 (one row each, so the batch holds rows that fit, rows where one segment is shorter
    than half the budget, equal and unequal overflowing ones) at every sequence_length from the smallest a pair takes
    to beyond the longest row, odd and even budgets: ids, segment ids and mask equal transformers' `longest_first`.
    One segment keeps its first tokens, as transformers' single-text truncation does."""
    reference, vocab = _hf_toy_tokenizer()
    combos = list(itertools.product(range(13), repeat=2))
    firsts = [" ".join(f"a{k}" for k in range(a)) for a, _ in combos]
    seconds = [" ".join(f"b{k}" for k in range(b)) for _, b in combos]
    first_ids, second_ids = ([[vocab[w] for w in t.split()] for t in texts] for texts in (firsts, seconds))
    for sequence_length in range(3, 30):
        token_ids, segment_ids, mask = pack(
            [first_ids, second_ids], sequence_length, start_id=2, end_id=3, pad_id=0, truncate="longest_first"
        )
        theirs = reference(firsts, seconds, truncation="longest_first", max_length=sequence_length,
                           padding="max_length", return_tensors="np")  # fmt: skip
        np.testing.assert_array_equal(token_ids, theirs["input_ids"], err_msg=f"sequence_length {sequence_length}")
        np.testing.assert_array_equal(segment_ids, theirs["token_type_ids"])
        np.testing.assert_array_equal(mask, theirs["attention_mask"])
    for sequence_length in range(2, 18):
        token_ids, _, _ = pack([first_ids], sequence_length, start_id=2, end_id=3, pad_id=0, truncate="longest_first")
        theirs = reference(
            firsts, truncation=True, max_length=sequence_length, padding="max_length", return_tensors="np"
        )
        np.testing.assert_array_equal(token_ids, theirs["input_ids"], err_msg=f"sequence_length {sequence_length}")


def test_longest_first_refuses_three_segments():
    with pytest.raises(ValueError, match="'longest_first' is transformers' rule for one text or a pair; 3 segments"):
        pack([[[1]], [[2]], [[3]]], 8, start_id=START, end_id=END, pad_id=PAD, truncate="longest_first")


def test_longest_first_and_round_robin_against_transformers_on_real_pairs(minilm_dir):
    """Random sentence pairs in the real vocabulary: longest_first is transformers' `longest_first` on every row.
    round_robin (keras-hub's rule, checked against keras-hub's MultiSegmentPacker) differs by one token: when the
    budget is odd and both segments overflow half of it, it gives the odd token to the first segment, while
    transformers gives it to the longer one, the second on ties."""
    from transformers import BertTokenizer as HFBertTokenizer

    from flaxbert.text import BertTokenizer

    words = ["the", "quick", "brown", "fox", "jumped", "over", "lazy", "tokenization", "unaffable", ",", "!"]
    rng = np.random.default_rng(1)
    firsts = [" ".join(rng.choice(words, rng.integers(0, 14))) for _ in range(300)]
    seconds = [" ".join(rng.choice(words, rng.integers(0, 14))) for _ in range(300)]
    tokenizer = BertTokenizer(minilm_dir / "vocab.txt", lowercase=True)
    reference = HFBertTokenizer(vocab=str(minilm_dir / "vocab.txt"), do_lower_case=True, strip_accents=False)
    segments = [tokenizer(firsts), tokenizer(seconds)]
    lengths = np.array([[len(ids) for ids in segment] for segment in segments]).T
    num_odd_ties = 0
    for sequence_length in (3, 4, 5, 8, 13, 20, 32):
        theirs = reference(
            firsts, seconds, truncation="longest_first", max_length=sequence_length, padding="max_length"
        )
        hf_ids, hf_types = np.array(theirs["input_ids"]), np.array(theirs["token_type_ids"])
        token_ids, segment_ids, _ = pack(segments, sequence_length, start_id=101, end_id=102, pad_id=0,
                                         truncate="longest_first")  # fmt: skip
        assert (token_ids == hf_ids).all() and (segment_ids == hf_types).all()
        token_ids, segment_ids, _ = pack(segments, sequence_length, start_id=101, end_id=102, pad_id=0)
        hf_kept = np.stack([(hf_ids != 0).sum(1) - hf_types.sum(1) - 2, hf_types.sum(1) - 1], axis=1)
        budget, half = sequence_length - 3, (sequence_length - 2) // 2
        odd_tie = (budget % 2 == 1) & (lengths.min(axis=1) >= half) & (lengths[:, 0] <= lengths[:, 1])
        num_odd_ties += odd_tie.sum()
        assert (token_ids[~odd_tie] == hf_ids[~odd_tie]).all()
        assert (segment_ids[~odd_tie] == hf_types[~odd_tie]).all()
        kept = trimmed_lengths(lengths, budget, "round_robin")
        assert (kept[odd_tie] == hf_kept[odd_tie] + [1, -1]).all()
    assert num_odd_ties > 50
