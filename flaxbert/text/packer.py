"""Packing token id lists into fixed-width `[CLS] A [SEP] B [SEP]` rows, in numpy (keras-hub's MultiSegmentPacker).

Layout of a row with n segments: `start, seg_0, end, seg_1, end, ..., seg_{n-1}, end, pad, ...`. Segment ids: the start
token and padding are 0; the tokens of segment i and the end token after them are i. When the segments do not fit,
`budget = sequence_length - 1 - n` tokens are kept, chosen by the `truncate` rule (REFERENCE.md §5.2):

- "round_robin" (keras-hub's default): take one token at a time from each segment that still has tokens, in segment
  order. Equivalently, token k of segment s has priority k * n + s and the `budget` lowest priorities are kept.
- "waterfall": segment 0 keeps as much as fits, the rest of the budget goes to segment 1, and so on.
- "longest_first" (transformers' default, tokenizers' `LongestFirst`), for one segment or a pair: when the shorter
  segment fits in half the budget it is kept whole and the longer one gets the rest; otherwise each gets half, and an
  odd budget's extra token goes to the longer segment (the second on ties). round_robin gives that token to the first
  segment, so the two differ only when the budget is odd, both segments exceed half of it and the first is not the
  longer. transformers has no rule for three or more segments, so they are refused.

Each segment always keeps a prefix of its tokens. Everything here is vectorised over the batch: no loop per token.
"""

import itertools

import numpy as np

from flaxbert.text.bucketing import bucket_length

TRUNCATE_MODES = ("round_robin", "waterfall", "longest_first")


def check_truncate(truncate: str) -> str:
    """Returns `truncate` if it names a truncation rule, else raises a ValueError listing the valid ones."""
    if truncate not in TRUNCATE_MODES:
        raise ValueError(f"truncate must be one of {', '.join(map(repr, TRUNCATE_MODES))}; got {truncate!r}.")
    return truncate


def trimmed_lengths(lengths: np.ndarray, budget: int, truncate: str) -> np.ndarray:
    """How many leading tokens of each segment to keep so that a row holds at most `budget` of them.

    Args:
        lengths: [B, n] token counts per row and segment.
        budget: the number of segment tokens a row has room for.
        truncate: "round_robin", "waterfall" or "longest_first" (one or two segments).

    Returns:
        [B, n] int64 kept counts, each at most its length, summing per row to `min(budget, row total)`.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if check_truncate(truncate) == "waterfall":
        before = np.cumsum(lengths, axis=1) - lengths  # tokens of the earlier segments
        return np.clip(budget - before, 0, lengths)
    if truncate == "longest_first":
        return _longest_first(lengths, budget)
    # round_robin: find the deepest full round m (every segment keeps min(len, m)) that fits the budget, by a
    # vectorised binary search, then hand the leftover budget, one each, to the first segments still longer than m.
    lo = np.zeros(len(lengths), dtype=np.int64)  # fits
    hi = lengths.max(axis=1, initial=0)
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        fits = np.minimum(lengths, mid[:, None]).sum(axis=1) <= budget
        lo, hi = np.where(fits, mid, lo), np.where(fits, hi, mid - 1)
    kept = np.minimum(lengths, lo[:, None])
    leftover = budget - kept.sum(axis=1)
    longer = lengths > lo[:, None]
    extra = longer & (np.cumsum(longer, axis=1) <= leftover[:, None])
    return kept + extra


def _longest_first(lengths: np.ndarray, budget: int) -> np.ndarray:
    """transformers' pair truncation (tokenizers' `LongestFirst`), per row; one segment keeps its first `budget`."""
    if lengths.shape[1] > 2:
        raise ValueError(
            f"truncate='longest_first' is transformers' rule for one text or a pair; {lengths.shape[1]} segments "
            "need truncate='round_robin' or 'waterfall'."
        )
    if lengths.shape[1] < 2:
        return np.minimum(lengths, budget)
    short = lengths.min(axis=1)
    long_kept = np.maximum(short, budget - short)  # the shorter segment whole, the longer one the rest
    halves = short + long_kept > budget  # both exceed half the budget: the odd token goes to the longer one
    short_kept = np.where(halves, budget // 2, short)
    long_kept = np.where(halves, budget - budget // 2, long_kept)
    first_longer = lengths[:, 0] > lengths[:, 1]  # on ties the second segment counts as the longer
    kept = np.where(first_longer[:, None], np.stack([long_kept, short_kept], 1), np.stack([short_kept, long_kept], 1))
    return np.minimum(kept, lengths)  # rows that fit keep every token


def pack(
    segments: list[list[list[int]]],
    sequence_length: int,
    *,
    start_id: int,
    end_id: int,
    pad_id: int,
    truncate: str = "round_robin",
    bucket: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Packs segments of token ids into padded rows.

    Args:
        segments: n segments, each a batch of B token id lists (row r of every segment forms example r).
        sequence_length: the longest row; segments are truncated to fit it.
        start_id, end_id, pad_id: the ids of `[CLS]`, `[SEP]` and `[PAD]`.
        truncate: "round_robin", "waterfall" or "longest_first" (one or two segments).
        bucket: pad only to the smallest of `bucketing.bucket_lengths(sequence_length)` that holds the longest packed
            row, instead of to `sequence_length`. Truncation and the unpadded part of each row do not change.

    Returns:
        `(token_ids, segment_ids, padding_mask)`, int32 arrays of shape [B, width]; the mask is 1 over each packed
        row ([CLS] to the last [SEP]), whatever ids the row holds.
    """
    num_segments = len(segments)
    budget = sequence_length - 1 - num_segments
    if budget < 0:
        raise ValueError(
            f"sequence_length={sequence_length} cannot hold the {num_segments + 1} special tokens of a "
            f"{num_segments}-segment input ([CLS] and {num_segments} x [SEP])."
        )
    lengths = np.array([[len(ids) for ids in batch] for batch in segments], dtype=np.int64).T  # [B, n]
    kept = trimmed_lengths(lengths, budget, truncate)  # [B, n]
    used = kept.sum(axis=1) + 1 + num_segments  # [B] row length with special tokens
    width = bucket_length(int(used.max()), sequence_length) if bucket else sequence_length
    batch_size = len(lengths)
    rows = np.arange(batch_size)
    # first column of each segment: after [CLS] and, per earlier segment, its tokens and its [SEP]
    first = 1 + np.cumsum(kept + 1, axis=1) - (kept + 1)  # [B, n]
    token_ids = np.full((batch_size, width), pad_id, dtype=np.int32)
    token_ids[:, 0] = start_id
    for s, batch in enumerate(segments):
        flat = np.fromiter(itertools.chain.from_iterable(batch), dtype=np.int32, count=int(lengths[:, s].sum()))
        row = np.repeat(rows, lengths[:, s])  # the row of each token in `flat`
        position = np.arange(len(flat)) - np.repeat(np.cumsum(lengths[:, s]) - lengths[:, s], lengths[:, s])
        keep = position < kept[row, s]
        token_ids[row[keep], first[row[keep], s] + position[keep]] = flat[keep]
        token_ids[rows, first[:, s] + kept[:, s]] = end_id
    columns = np.arange(width)[None, :]
    # segment s >= 1 starts at its first token; everything from there up to the last [SEP] belongs to it or later ones
    packed = columns < used[:, None]
    segment_ids = (columns[:, :, None] >= first[:, None, 1:]).sum(axis=2) * packed
    return token_ids, segment_ids.astype(np.int32), packed.astype(np.int32)
