"""Building a text classifier from a preset: today a local Hugging Face transformers checkpoint directory."""

from __future__ import annotations

import dataclasses
import warnings

from flaxbert.presets import hf_checkpoint, hf_convert


def load_text_classifier(cls, preset, load_weights: bool = True, *, num_classes: int | None = None,
                         preprocessor="auto", sequence_length: int = 512, dtype=None, seed: int = 0,
                         **head_kwargs):  # fmt: skip
    """Loads a classifier of class `cls` (or the right subclass, for `TextClassifier`) from `preset`.

    A `*ForSequenceClassification` checkpoint keeps its trained head when `num_classes` is None or equals the saved
    head's size; any other `num_classes` gets a fresh head, and says so. A bare encoder needs `num_classes`.

    Args:
        cls: `TextClassifier` or one of its subclasses.
        preset: the checkpoint directory (config.json, weights, vocab.txt / tokenizer.json).
        load_weights: False builds the architecture with random weights and reads no weight file.
        num_classes: the number of classes; required when the checkpoint has no head.
        preprocessor: "auto" builds one from the checkpoint's tokenizer; None for preprocessed inputs only.
        sequence_length: the auto preprocessor's sequence length.
        dtype: compute dtype, e.g. "bfloat16" (params stay float32).
        seed: the seed of any randomly initialised params.
        **head_kwargs: `activation`, `dropout` (and `hidden_dim` for DistilBERT) for the head.
    """
    cls = _class_for(cls, type(hf_checkpoint.load_config(preset)))
    saved = _saved_head(preset) if load_weights else None
    if saved is not None and num_classes not in (None, saved.num_classes):
        warnings.warn(f"{preset} has a {saved.num_classes}-class head; num_classes={num_classes} gets a new, "
                      "randomly initialised head.", stacklevel=3)  # fmt: skip
        saved = None
    if num_classes is None and saved is None:
        raise ValueError(f"{preset} has no classification head to keep: pass num_classes.")
    head_params = None
    if saved is not None:
        config, head, params = hf_checkpoint.load_classifier(preset, dtype, cls.backbone_cls.architecture)
        backbone = cls.backbone_cls.from_config(config, params.pop("backbone"))
        head_kwargs = {**{f.name: getattr(head, f.name) for f in dataclasses.fields(head)}, **head_kwargs}
        head_params = params
    else:
        backbone = cls.backbone_cls.from_preset(preset, load_weights, dtype=dtype, seed=seed)
        head_kwargs = dict(head_kwargs, num_classes=num_classes)
    if preprocessor == "auto":
        tokenizer = cls.tokenizer_cls.from_preset(preset)
        preprocessor = cls.preprocessor_cls(tokenizer, sequence_length=sequence_length)
    return cls(backbone, preprocessor=preprocessor, seed=seed, head_params=head_params, **head_kwargs)


def _class_for(cls, config_type):
    """`cls` itself, or for the base class the registered subclass whose backbone takes this config."""
    if cls.backbone_cls is not None:
        return cls
    return next(sub for sub in cls.__subclasses__() if sub.backbone_cls.config_cls is config_type)


def _saved_head(preset):
    """The head config of a `*ForSequenceClassification` checkpoint, or None for a bare encoder."""
    config = hf_checkpoint.read_config(preset)
    if not any(name.endswith("ForSequenceClassification") for name in config.get("architectures") or []):
        return None
    return hf_convert.head_config(config, str(preset))
