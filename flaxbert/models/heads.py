"""Text classifiers: an encoder plus keras-hub's classification head (REFERENCE §3).

Params are `{"backbone": <encoder params>, <head params>}`, so the encoder subtree can be frozen or swapped whole.
The output is float32 logits, or probabilities when the head's activation is "softmax".
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxbert.models.bert import BertEncoder
from flaxbert.models.config import (
    BertConfig,
    BertHeadConfig,
    DistilBertConfig,
    DistilBertHeadConfig,
    check_config_types,
)
from flaxbert.models.distil_bert import DistilBertEncoder
from flaxbert.models.dropout_layer import Dropout
from flaxbert.models.layers import dense


def _finish(logits: jax.Array, activation: str | None) -> jax.Array:
    logits = logits.astype(jnp.float32)
    return jax.nn.softmax(logits, axis=-1) if activation == "softmax" else logits


class BertClassifier(nn.Module):
    """pooled_output -> dropout -> dense(num_classes) named `logits`; the encoder's last layer runs at [CLS] alone."""

    backbone: BertConfig
    head: BertHeadConfig

    @nn.compact
    def __call__(self, inputs: dict[str, jax.Array], train: bool = False) -> jax.Array:
        check_config_types(self, backbone=BertConfig, head=BertHeadConfig)
        encoded = BertEncoder(self.backbone, name="backbone")(inputs, train, first_token_only=True)  # [CLS] alone
        pooled = Dropout(self.head.dropout)(encoded["pooled_output"], deterministic=not train)  # [B, D]
        logits = dense(self.backbone, self.head.num_classes, ("embed", "classes"), "logits")(pooled)  # [B, C]
        return _finish(logits, self.head.activation)


class DistilBertClassifier(nn.Module):
    """[CLS] -> dense(hidden_dim, relu) named `pooled_dense` -> dropout -> dense(num_classes) named `logits`; the
    encoder's last layer runs at [CLS] alone."""

    backbone: DistilBertConfig
    head: DistilBertHeadConfig

    @nn.compact
    def __call__(self, inputs: dict[str, jax.Array], train: bool = False) -> jax.Array:
        check_config_types(self, backbone=DistilBertConfig, head=DistilBertHeadConfig)
        x = DistilBertEncoder(self.backbone, name="backbone")(inputs, train, first_token_only=True)[:, 0]  # [B, D]
        hidden_dim = self.head.hidden_dim or self.backbone.hidden_dim
        x = jax.nn.relu(dense(self.backbone, hidden_dim, ("embed", "pooled"), "pooled_dense")(x))
        x = Dropout(self.head.dropout)(x, deterministic=not train)
        logits = dense(self.backbone, self.head.num_classes, ("pooled", "classes"), "logits")(x)  # [B, C]
        return _finish(logits, self.head.activation)
