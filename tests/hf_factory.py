"""Random-init Hugging Face transformers checkpoints of any shape, written in the formats flaxbert must read."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch
import transformers

# Unusual on purpose: head sizes other than 64, vocabularies that are not multiples of 8, 1 and 3 layers,
# three segment types, tanh-GELU, ReLU and a non-default LayerNorm epsilon.
BERT_SHAPES = {
    "h48_heads3_l1_seg3": dict(
        vocab_size=99,
        hidden_size=48,
        num_hidden_layers=1,
        num_attention_heads=3,
        intermediate_size=37,
        type_vocab_size=3,
        max_position_embeddings=40,
    ),
    "h60_heads5_l3_gelu_new": dict(
        vocab_size=1013,
        hidden_size=60,
        num_hidden_layers=3,
        num_attention_heads=5,
        intermediate_size=100,
        hidden_act="gelu_new",
        layer_norm_eps=1e-7,
        max_position_embeddings=64,
    ),
    "h36_heads6_l2_relu_seg3": dict(
        vocab_size=517,
        hidden_size=36,
        num_hidden_layers=2,
        num_attention_heads=6,
        intermediate_size=72,
        hidden_act="relu",
        type_vocab_size=3,
        max_position_embeddings=32,
    ),
}
DISTIL_BERT_SHAPES = {
    "h48_heads3_l1": dict(vocab_size=99, dim=48, n_layers=1, n_heads=3, hidden_dim=37, max_position_embeddings=40),
    "h60_heads5_l3": dict(vocab_size=1013, dim=60, n_layers=3, n_heads=5, hidden_dim=100, max_position_embeddings=64),
    "h36_heads6_l2_relu": dict(
        vocab_size=517, dim=36, n_layers=2, n_heads=6, hidden_dim=72, activation="relu", max_position_embeddings=32
    ),
}


def random_model(kind: str, shape: dict, num_labels: int = 3, seed: int = 0):
    """A transformers model in eval mode whose every parameter (biases and LayerNorm too) is non-trivial."""
    torch.manual_seed(seed)
    if kind.startswith("distil"):
        config = transformers.DistilBertConfig(**shape, num_labels=num_labels, attn_implementation="eager")
        cls = (
            transformers.DistilBertForSequenceClassification
            if kind.endswith("classifier")
            else transformers.DistilBertModel
        )
    else:
        config = transformers.BertConfig(**shape, num_labels=num_labels, attn_implementation="eager")
        cls = transformers.BertForSequenceClassification if kind.endswith("classifier") else transformers.BertModel
    model = cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def save(model, directory: pathlib.Path, fmt: str = "safetensors", legacy_names: bool = False) -> pathlib.Path:
    """Writes `model` as `safetensors`, `sharded` safetensors, `bin` (torch.save) or `sharded_bin`."""
    directory.mkdir(parents=True, exist_ok=True)
    if fmt in ("safetensors", "sharded"):
        model.save_pretrained(directory, max_shard_size="20KB" if fmt == "sharded" else "5GB")
        return directory
    model.config.save_pretrained(directory)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if legacy_names:  # the TF-era checkpoints named LayerNorm params gamma / beta
        state = {
            k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
            for k, v in state.items()
        }
    if fmt == "bin":
        torch.save(state, directory / "pytorch_model.bin")
        return directory
    keys = sorted(state)
    halves = {
        "pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
        "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2 :],
    }
    weight_map = {}
    for name, shard_keys in halves.items():
        torch.save({k: state[k] for k in shard_keys}, directory / name)
        weight_map.update(dict.fromkeys(shard_keys, name))
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def padded_batch(vocab_size: int, num_segments: int, lengths=(11, 7, 3), seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of different lengths, right-padded with 0, with two (or more) segments per row."""
    rng = np.random.default_rng(seed)
    length = max(lengths)
    token_ids = rng.integers(1, vocab_size, size=(len(lengths), length)).astype(np.int32)
    mask = (np.arange(length)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    segment_ids = np.zeros_like(token_ids)
    if num_segments > 1:  # the second half of each row is another segment: 1, 2, 1, ... up to num_segments - 1
        for row, n in enumerate(lengths):
            segment_ids[row, n // 2 : n] = 1 + row % (num_segments - 1)
    token_ids = token_ids * mask
    return {"token_ids": token_ids, "segment_ids": segment_ids * mask, "padding_mask": mask}


def torch_inputs(batch: dict[str, np.ndarray]) -> dict:
    """flaxbert's batch as a transformers model's keyword arguments (token_type_ids where it has segment ids)."""
    kwargs = {
        "input_ids": torch.as_tensor(batch["token_ids"], dtype=torch.long),
        "attention_mask": torch.as_tensor(batch["padding_mask"], dtype=torch.long),
    }
    if "segment_ids" in batch:
        kwargs["token_type_ids"] = torch.as_tensor(batch["segment_ids"], dtype=torch.long)
    return kwargs


def torch_outputs(model, batch: dict[str, np.ndarray]):
    """The reference forward pass, in eval mode, as numpy."""
    with torch.no_grad():
        return model(**torch_inputs(batch))
