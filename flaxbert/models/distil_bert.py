"""The DistilBERT encoder (REFERENCE §2): token + position embeddings and post-norm layers; no segments, no pooler."""

from __future__ import annotations

import flax.linen as nn
import jax

from flaxbert.models.config import DistilBertConfig, check_config_types
from flaxbert.models.inputs import check_traced
from flaxbert.models.layers import (
    PositionEmbedding,
    embed,
    layer_norm,
    sequence_dropout,
    transformer_layers,
)


class DistilBertEncoder(nn.Module):
    """Maps `{"token_ids", "padding_mask"}` ([B, L] ints) to the sequence output [B, L, D].

    `first_token_only=True` computes the last layer for position 0 alone: the output is then its first row, [B, 1, D]
    (see `layers.transformer_layers`).
    """

    cfg: DistilBertConfig

    @nn.compact
    def __call__(self, inputs: dict[str, jax.Array], train: bool = False, first_token_only: bool = False) -> jax.Array:
        cfg = self.cfg
        check_config_types(self, cfg=DistilBertConfig)
        check_traced(inputs, cfg)
        token_ids = inputs["token_ids"]  # [B, L]
        x = embed(cfg.vocabulary_size, cfg.hidden_dim, ("vocab", "embed"), "token_embedding")(token_ids)
        x = x + PositionEmbedding(cfg.max_sequence_length, cfg.hidden_dim, name="position_embedding")(x.shape[-2])
        x = layer_norm(cfg, "embeddings_layer_norm")(x)  # [B, L, D]
        x = sequence_dropout(cfg, x, train)
        x = transformer_layers(self, x, inputs["padding_mask"], train, first_token_only)
        return x
