"""The dropout the models apply: which implementation draws the masks for the device a step runs on, and the
`Dropout` module.

The masks are `dropout.keep_bytes_together`'s wherever they are drawn. On an NVIDIA GPU the Pallas kernel draws them
(`dropout_kernel`: XLA then compiles no cipher, ~30% of a BERT-base train step's compile); elsewhere XLA computes
them from `dropout`'s operations (on CPU packed by a reduction, which XLA:CPU keeps out of their users' fusions).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from flaxbert.models import dropout, dropout_kernel
from flaxbert.models.target_device import target_device


def keep_masks(key: jax.Array, masks: list[tuple[tuple[int, ...], tuple[int, ...] | None]], rate: float,
               as_bytes: bool = False) -> list:  # fmt: skip
    """`dropout.keep_bytes_together(key, masks, rate)`, drawn by the kernel where `dropout_kernel.applies` to the
    device the program is traced for (which writes them `as_bytes` if asked: `dropout_kernel.keep_bytes_together`),
    and packed by a reduction on CPU (XLA:CPU then compiles the cipher once, not into each of the masks' users)."""
    device = target_device()
    if dropout_kernel.applies(device, masks):
        return dropout_kernel.keep_bytes_together(key, masks, rate, as_bytes=as_bytes)
    return dropout.keep_bytes_together(key, masks, rate, packed_by_reduction=device.platform == "cpu")


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout(rate)(x, deterministic=...)`, drawing from the "dropout" rng stream."""

    rate: float

    def __call__(self, x: jax.Array, deterministic: bool, within: tuple[int, ...] | None = None) -> jax.Array:
        """`within`: the shape of the array `x` is the leading corner of, whose mask `x` gets (`dropout.keep_mask`)."""
        if deterministic or dropout.drop_threshold(self.rate) == 0:
            return x
        (keep,) = keep_masks(self.make_rng("dropout"), [(x.shape, within)], self.rate)
        return dropout.dropped(x, keep, self.rate)
