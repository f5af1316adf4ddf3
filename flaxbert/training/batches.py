"""Host-side batching of preprocessed arrays: per-epoch shuffling, padded last batches and length buckets.

Everything here is numpy. A batch always has the full `batch_size` rows (padding rows get weight 0), so jit sees one
batch shape; with buckets, its columns are trimmed to the smallest bucket that holds the batch's longest row. How
much a bucket saves depends on which rows share a batch: evaluation visits rows longest first (its results do not
depend on the order), and training can group rows of similar length (`epoch_order(..., lengths=...)`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from flaxbert.text.bucketing import bucket_length


@dataclasses.dataclass(frozen=True)
class ArrayData:
    """A preprocessed dataset: `inputs` are [N, L] int arrays; labels and sample weights are [N] or None."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    sample_weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs["token_ids"])


def fingerprint(data: ArrayData) -> str:
    """A digest of every array of `data` (inputs, labels, weights): a resumed fit checks it is the same dataset."""
    digest = hashlib.blake2b(digest_size=16)
    # no weights train as weights of one: the same digest
    weights = np.ones(len(data), np.float32) if data.sample_weight is None else data.sample_weight
    arrays = {**data.inputs, "labels": data.labels, "sample_weight": weights}
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(name.encode())
        if array is not None:
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def num_batches(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)


def padded_rows(batch_size: int, devices: int) -> int:
    """The rows a step of `batch_size` examples takes on `devices`: rounded up to a multiple of them (the padding
    rows carry no weight)."""
    return -(-batch_size // devices) * devices


GROUP_WINDOW = 50  # batches' worth of shuffled rows sorted by length together when grouping by length


def epoch_order(
    size: int, seed: int, epoch: int, shuffle: bool, lengths: np.ndarray | None = None, batch_size: int = 0
) -> np.ndarray:
    """The example order of one epoch: a permutation derived from (seed, epoch) alone, so resuming reproduces it.

    With `lengths` (tokens per row), rows of similar length share a batch of `batch_size`: each window of
    `GROUP_WINDOW` batches of the shuffled order is sorted longest first and cut into batches, then the full batches
    are shuffled (the short last batch stays last). Every batch is still drawn from a random window of the data, so
    this changes which rows train together, never how often, while bucketed batches pad far less.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(size) if shuffle else np.arange(size)
    if lengths is None:
        return order
    window = GROUP_WINDOW * batch_size
    grouped = np.concatenate([chunk[np.argsort(-lengths[chunk], kind="stable")]
                              for chunk in np.split(order, range(window, size, window))])  # fmt: skip
    full = size // batch_size
    batches = grouped[: full * batch_size].reshape(full, batch_size)
    if shuffle:
        batches = batches[rng.permutation(full)]
    return np.concatenate([batches.ravel(), grouped[full * batch_size :]])


def row_lengths(data: ArrayData) -> np.ndarray:
    """Per row, the positions a bucket must keep (see `extents`)."""
    return extents(data.inputs["padding_mask"])


def extents(mask: np.ndarray) -> np.ndarray:
    """Per row of a [N, L] padding mask, one past its last real position (0 for a row of padding). Not the mask's
    sum: a mask can have holes (keras-hub's masks out a "[PAD]" typed in the text), and a bucket cut at the sum
    would drop the row's last tokens."""
    real = mask != 0
    return np.where(real.any(axis=1), mask.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)


def longest_first(data: ArrayData) -> np.ndarray:
    """The rows of `data` ordered by length, longest first (ties keep input order): the order in which evaluation
    visits them when bucketing, so each batch pads to little more than its own rows and the largest comes first."""
    return np.argsort(-row_lengths(data), kind="stable")


def batch_lengths(data: ArrayData, order: np.ndarray, batch_size: int, bucket: bool) -> list[int]:
    """The lengths of the batches `make_batch` cuts from `order`, `batch_size` rows at a time: each length once, in
    the order first met (the programs a loop over them runs, first needed first)."""
    full = data.inputs["token_ids"].shape[1]
    if not bucket or not len(order):
        return [full]
    longest = np.maximum.reduceat(row_lengths(data)[order], np.arange(0, len(order), batch_size))
    return list(dict.fromkeys(bucket_length(int(n), full) for n in longest))


def make_batch(data: ArrayData, indices: np.ndarray, batch_size: int, bucket: bool = False) -> dict:
    """Rows `indices` of `data`, padded to `batch_size` rows with weight 0 and trimmed to a bucket length."""
    real = len(indices)
    padded = np.concatenate([indices, np.zeros(batch_size - real, indices.dtype)]) if real < batch_size else indices
    inputs = {k: v[padded] for k, v in data.inputs.items()}
    inputs["padding_mask"] = inputs["padding_mask"].copy()
    inputs["padding_mask"][real:] = 0
    full = inputs["padding_mask"].shape[1]
    length = bucket_length(int(extents(inputs["padding_mask"]).max()), full) if bucket else full
    inputs = {k: np.ascontiguousarray(v[:, :length]) for k, v in inputs.items()}
    weight = np.ones(batch_size, np.float32) if data.sample_weight is None else data.sample_weight[padded]
    weight = weight.astype(np.float32)
    weight[real:] = 0.0
    mask = (np.arange(batch_size) < real).astype(np.float32)
    labels = np.zeros(batch_size, np.int32) if data.labels is None else data.labels[padded].astype(np.int32)
    return {"inputs": inputs, "label": labels, "weight": weight, "mask": mask}
