"""Host-side batching of preprocessed arrays: per-epoch shuffling, padded last batches and length buckets.

Everything here is numpy. A batch always has the full `batch_size` rows (padding rows get weight 0), so jit sees one
batch shape; with buckets, its columns are trimmed to the smallest bucket that holds the batch's longest row.
"""

from __future__ import annotations

import dataclasses
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


def num_batches(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The example order of one epoch: a permutation derived from (seed, epoch) alone, so resuming reproduces it."""
    return np.random.default_rng([seed, epoch]).permutation(size) if shuffle else np.arange(size)


def make_batch(data: ArrayData, indices: np.ndarray, batch_size: int, bucket: bool = False) -> dict:
    """Rows `indices` of `data`, padded to `batch_size` rows with weight 0 and trimmed to a bucket length."""
    real = len(indices)
    padded = np.concatenate([indices, np.zeros(batch_size - real, indices.dtype)]) if real < batch_size else indices
    inputs = {k: v[padded] for k, v in data.inputs.items()}
    inputs["padding_mask"] = inputs["padding_mask"].copy()
    inputs["padding_mask"][real:] = 0
    full = inputs["padding_mask"].shape[1]
    length = bucket_length(int(inputs["padding_mask"].sum(axis=1).max()), full) if bucket else full
    inputs = {k: np.ascontiguousarray(v[:, :length]) for k, v in inputs.items()}
    weight = np.ones(batch_size, np.float32) if data.sample_weight is None else data.sample_weight[padded]
    weight = weight.astype(np.float32)
    weight[real:] = 0.0
    mask = (np.arange(batch_size) < real).astype(np.float32)
    labels = np.zeros(batch_size, np.int32) if data.labels is None else data.labels[padded].astype(np.int32)
    return {"inputs": inputs, "label": labels, "weight": weight, "mask": mask}
