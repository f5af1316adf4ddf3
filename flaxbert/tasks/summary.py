"""A classifier's summary, as Keras' `Model.summary()` prints one: its layers, their shapes and parameter counts.

Read from the params' shapes (`abstract_params`): it touches no device and gathers nothing from a mesh. The encoder's
layers, all alike, share one row.
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax

from flaxbert.models import lora
from flaxbert.models.abstract import abstract_params, count_params

_LAYER = re.compile(r"transformer_layer_(\d+)$")
# The encoder's parts in the order its forward pass meets them; any other part follows, by name.
_ORDER = ("token_embedding", "segment_embedding", "position_embedding", "embeddings_layer_norm", "transformer_layers",
          "pooled_dense")  # fmt: skip
_WIDTHS = (50, 37, 15)  # 102 characters, as Keras' summary is wide


def summary_lines(classifier) -> list[str]:
    """The lines `TextClassifier.summary()` prints."""
    config = classifier.backbone.config
    shapes = nn.unbox(abstract_params(classifier.model, config))
    encoder, head = shapes["backbone"], {k: v for k, v in shapes.items() if k != "backbone"}
    backbone_count, head_count = count_params(encoder), count_params(head)
    total = backbone_count + head_count
    trains = classifier.backbone._trains
    trainable = head_count + (backbone_count if trains is True else 0)
    if trains == "adapters":  # after enable_lora: the adapters and the adapted layers' biases
        pairs = zip(jax.tree.leaves(encoder), jax.tree.leaves(lora.trained_mask(encoder)), strict=True)
        trainable += sum(leaf.size for leaf, trained in pairs if trained)
    names = f", label_names {list(classifier.label_names)}" if classifier.label_names else ""
    output = "probabilities" if classifier.activation == "softmax" else "logits"
    lines = [f'Model: "{type(classifier).__name__}" ({classifier.num_classes} classes{names}; outputs {output})']
    if classifier.preprocessor is not None:
        lines.append(_preprocessor_line(classifier.preprocessor))
    rule = "-" * sum(_WIDTHS)
    lines += [rule, _row("Layer", "Shape", "Param #"), "=" * sum(_WIDTHS)]
    frozen = "" if trains else ", frozen"
    if config.lora_rank and trains:
        frozen = f", LoRA rank {config.lora_rank}" + ("" if trains == "adapters" else ", all trainable")
    compute = f"{config.dtype} compute" if config.dtype != "float32" else "float32"
    lines.append(_row(f"backbone ({type(classifier.backbone).__name__}, {compute}{frozen})", "", backbone_count))
    lines += [_row(f"  {name}", shape, count) for name, shape, count in _encoder_rows(encoder, config)]
    lines.append(_row(f"head (dropout {classifier.head.dropout:g})", "", head_count))
    for name, part in sorted(head.items(), key=_head_order):
        lines.append(_row(f"  {name}", _shape(part), count_params(part)))
    lines += [
        rule,
        f"Total params: {total:,} ({_size(total)} in float32)",
        f"Trainable params: {trainable:,} ({_size(trainable)})",
        f"Non-trainable params: {total - trainable:,} ({_size(total - trainable)})",
    ]
    return lines


def _encoder_rows(encoder: dict, config) -> list[tuple[str, str, str]]:
    """(name, shape, count) per part of the encoder, its layers as one row."""
    layers, rows = [], {}
    for name, part in encoder.items():
        if match := _LAYER.match(name):
            layers.append((int(match.group(1)), part))
        else:
            rows[name] = (name, _shape(part), f"{count_params(part):,}")
    layers.sort(key=lambda layer: layer[0])
    if layers:
        each = count_params(layers[0][1])
        shape = (f"{config.num_heads} heads x {config.head_dim}, {config.hidden_dim} -> {config.intermediate_dim} -> "
                 f"{config.hidden_dim}")  # fmt: skip
        name = f"transformer_layer_0 .. {layers[-1][0]} ({len(layers)})"
        rows["transformer_layers"] = (name, shape, f"{len(layers)} x {each:,}")
    return [rows[name] for name in sorted(rows, key=lambda name: (_ORDER.index(name) if name in _ORDER else 99, name))]


def _head_order(item) -> tuple[int, str]:
    """The head's dense layers before its logits, the order the forward pass meets them."""
    return (item[0] == "logits", item[0])


def _shape(part: dict) -> str:
    """A part's shape in words: an embedding table's rows x width, a LayerNorm's width, a dense layer's in -> out."""
    if "embedding" in part:
        return " x ".join(str(n) for n in part["embedding"].shape)
    if "scale" in part:
        return str(part["scale"].shape[0])
    kernel = part.get("kernel")
    if kernel is not None and len(kernel.shape) == 2:
        return f"{kernel.shape[0]} -> {kernel.shape[1]}"
    return ", ".join(str(tuple(leaf.shape)) for leaf in jax.tree.leaves(part))


def _size(count: int) -> str:
    """The bytes of `count` float32 values in the largest unit that keeps them at 1 or more, as Keras' summary says
    them ("4.02 KB", "417.65 MB"; "0.00 MB" read as nothing for a small head)."""
    size, units = count * 4.0, ["B", "KB", "MB", "GB", "TB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"{size:,.2f} {units[0]}"


def _row(name: str, shape: str, count) -> str:
    count = f"{count:,}" if isinstance(count, int) else count
    name_width, shape_width, count_width = _WIDTHS
    return f"{name:<{name_width - 1}} {shape:<{shape_width - 1}} {count:>{count_width}}"


def _preprocessor_line(preprocessor) -> str:
    tokenizer = preprocessor.tokenizer
    case = "lowercased" if tokenizer.lowercase else "cased"
    return (f"Preprocessor: {type(preprocessor).__name__} (sequence_length {preprocessor.sequence_length}; "
            f"{type(tokenizer).__name__}, {tokenizer.vocabulary_size():,} tokens, {case})")  # fmt: skip
