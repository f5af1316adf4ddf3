"""The BERT encoder (REFERENCE §1.3): token + position + segment embeddings, post-norm layers, tanh pooler."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxbert.models.config import BertConfig, check_config_types
from flaxbert.models.inputs import check_traced
from flaxbert.models.layers import (
    PositionEmbedding,
    dense,
    embed,
    layer_norm,
    sequence_dropout,
    transformer_layers,
)


class BertEncoder(nn.Module):
    """Maps `{"token_ids", "segment_ids", "padding_mask"}` ([B, L] ints) to `{"sequence_output", "pooled_output"}`.

    `first_token_only=True` computes the last layer for position 0 alone, all the pooler reads: `pooled_output` is
    the same, `sequence_output` is its first row only ([B, 1, D]; see `layers.transformer_layers`).
    """

    cfg: BertConfig

    @nn.compact
    def __call__(
        self, inputs: dict[str, jax.Array], train: bool = False, first_token_only: bool = False
    ) -> dict[str, jax.Array]:
        cfg = self.cfg
        check_config_types(self, cfg=BertConfig)
        check_traced(inputs, cfg)
        token_ids, segment_ids = inputs["token_ids"], inputs["segment_ids"]  # [B, L]
        x = embed(cfg.vocabulary_size, cfg.hidden_dim, ("vocab", "embed"), "token_embedding")(token_ids)
        x = x + PositionEmbedding(cfg.max_sequence_length, cfg.hidden_dim, name="position_embedding")(x.shape[-2])
        x = x + embed(cfg.num_segments, cfg.hidden_dim, ("segments", "embed"), "segment_embedding")(segment_ids)
        x = layer_norm(cfg, "embeddings_layer_norm")(x)  # [B, L, D]
        x = sequence_dropout(cfg, x, train)
        x = transformer_layers(self, x, inputs["padding_mask"], train, first_token_only)
        pooled = jnp.tanh(dense(cfg, cfg.hidden_dim, ("embed", "pooled"), "pooled_dense")(x[:, 0, :]))  # [B, D]
        return {"sequence_output": x, "pooled_output": pooled}
