"""Building a text classifier from a preset: a flaxbert preset or a Hugging Face transformers checkpoint."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxbert.backbones import native_abstract
from flaxbert.models.abstract import abstract_params, check_params
from flaxbert.models.config import (
    check_architecture,
    check_execution,
    compute_dtype,
    config_architecture,
    with_execution,
)
from flaxbert.parallel import make_mesh, param_shardings
from flaxbert.parallel.mesh import warning_stacklevel
from flaxbert.presets import hf_checkpoint, hf_convert, keras_format, native, text_assets
from flaxbert.presets.resolve import resolve


class NoHeadError(ValueError):
    """`from_preset(num_classes=None)` on a preset that has no classification head to keep."""


class NoTokenizerError(ValueError):
    """A `sequence_length` for the preprocessor of a preset that has no tokenizer to build one from."""


def load_text_classifier(cls, preset, load_weights: bool = True, *, num_classes: int | None = None,
                         preprocessor="auto", sequence_length: int | None = None, dtype=None, seed: int = 0,
                         scan_layers: bool | None = None, attention_kernel: str | None = None,
                         **head_kwargs):  # fmt: skip
    """Loads a classifier of class `cls` (or the right subclass, for `TextClassifier`) from `preset`.

    A saved head (a keras-hub or flaxbert classifier preset, a `*ForSequenceClassification` checkpoint) is kept when
    `num_classes` is None or equals its size. Any other `num_classes` gets a new, randomly initialised head, and says
    so; as in keras-hub (and transformers' `num_labels=N, ignore_mismatched_sizes=True`), that head keeps the saved
    one's settings (`activation`, `dropout`, DistilBERT's `hidden_dim`) but not its `label_names`, which name the old
    classes. A preset without a head needs `num_classes`.

    Args:
        cls: `TextClassifier` or one of its subclasses.
        preset: a local directory, an `hf://org/repo` handle or a built-in name (`flaxbert.presets.resolve`).
        load_weights: False builds the architecture with random weights and reads no weight file.
        num_classes: the number of classes; required when the checkpoint has no head.
        preprocessor: "auto" builds one from the checkpoint's tokenizer; None for preprocessed inputs only.
        sequence_length: overrides the auto preprocessor's sequence length (default: the preset's, else 512); refused
            where there is no auto preprocessor (`preprocessor` None or given, a preset without a tokenizer).
        dtype: compute dtype, e.g. "bfloat16" (params stay float32).
        seed: the seed of any randomly initialised params.
        scan_layers, attention_kernel: how the encoder runs (see `BertConfig`); None keeps the preset's.
        **head_kwargs: `activation`, `dropout`, `label_names` (and `hidden_dim` for DistilBERT) for the head, over
            the saved head's settings; a kept head keeps its saved label names unless `label_names` is given. Any
            other keyword is refused with a TypeError naming the accepted ones.
    """
    _check_keywords(cls, head_kwargs)  # before resolving: a download
    whole = isinstance(num_classes, int | np.integer) and not isinstance(num_classes, bool | np.bool_)
    if num_classes is not None and not (whole and num_classes >= 1):
        raise ValueError(f"num_classes must be None (the preset's head) or a positive integer, got {num_classes!r}.")
    check_execution(scan_layers, attention_kernel)  # before reading any weights
    execution = {"scan_layers": scan_layers, "attention_kernel": attention_kernel}
    preset = resolve(preset, load_weights, cls.backbone_cls and cls.backbone_cls.architecture)
    saved_config = hf_checkpoint.read_config(preset)
    args = (preset, load_weights, num_classes, preprocessor, sequence_length, dtype, seed, execution, head_kwargs)
    if native.is_native(saved_config):
        return _load_native(cls, *args)
    if keras_format.is_keras(saved_config):
        return _load_keras(cls, saved_config, *args)
    return _load_transformers(cls, *args)


def _choose_head(preset, head, num_classes, head_kwargs, width: int):
    """Keeps a saved head when `num_classes` is None or its size, and says when it drops one: the new head starts from
    the saved one's settings but its classes and their names. `width` is the backbone's hidden_dim, a DistilBERT
    head's default hidden_dim."""
    keep = head is not None and num_classes in (None, head.num_classes)
    if not keep and num_classes is None:
        raise NoHeadError(f"{preset} has no classification head to keep: pass num_classes.")
    if not keep:
        saved = {} if head is None else _settings(head)
        if head is not None:
            kept = ", ".join(f"{k}={v!r}" for k, v in saved.items() if k not in head_kwargs and v is not None)
            warnings.warn(f"{preset} has a {head.num_classes}-class head; num_classes={num_classes} gets a new, "
                          f"randomly initialised head" + (f" with the saved one's {kept}." if kept else "."),
                          stacklevel=warning_stacklevel(5))  # fmt: skip
        return False, {**saved, **head_kwargs, "num_classes": num_classes}
    saved_dim = getattr(head, "hidden_dim", None) or width
    if head_kwargs.get("hidden_dim", saved_dim) != saved_dim:
        raise ValueError(
            f"hidden_dim={head_kwargs['hidden_dim']} does not fit {preset}'s saved head (hidden_dim {saved_dim}): "
            "leave hidden_dim out to keep the trained head."
        )
    return True, {**dataclasses.asdict(head), **head_kwargs}


def _settings(head) -> dict:
    """What a new head takes from a saved one: everything but its class count and the classes' names."""
    return {k: v for k, v in dataclasses.asdict(head).items() if k not in ("num_classes", "label_names")}


def _load_keras(cls, saved_config, preset, load_weights, num_classes, preprocessor, sequence_length, dtype, seed,
                execution, head_kwargs):  # fmt: skip
    config = keras_format.backbone_config(saved_config, preset, dtype)
    cls = _class_for(cls, type(config), head_kwargs)
    check_architecture(config_architecture(config), cls.backbone_cls.architecture, preset)
    task = keras_format.read_task(preset)
    head = (keras_format.head_config(task, preset, cls.backbone_cls.architecture, head_kwargs)
            if keras_format.is_classifier(task) else None)  # fmt: skip
    if task is not None and head is None and num_classes is None:
        raise ValueError(
            f"{preset} is a keras-hub {keras_format.task_name(task)} preset: its head is no text classifier, so only "
            "its backbone loads, as in keras-hub: pass num_classes for a new classification head."
        )
    keep, head_kwargs = _choose_head(preset, head, num_classes, head_kwargs, config.hidden_dim)
    preprocessor = _auto_preprocessor(cls, preset, preprocessor, sequence_length, config)
    backbone = cls.backbone_cls.from_preset(preset, load_weights, dtype=dtype, seed=seed, **execution)
    head_params = None
    if keep and load_weights:
        head_params = keras_format.head_params(preset, head)
        model = cls.model_cls(config, cls.head_cls(**head_kwargs))
        boxed = abstract_params(model, config)
        check_params({"backbone": backbone.params, **head_params}, boxed, str(preset))
        head_params = jax.tree.map(jnp.asarray, head_params)
    return cls(backbone, preprocessor=preprocessor, seed=seed, head_params=head_params, **head_kwargs)


def _load_native(cls, preset, load_weights, num_classes, preprocessor, sequence_length, dtype, seed, execution,
                 head_kwargs):  # fmt: skip
    saved = native.read(preset)
    config = with_execution(native.backbone_config(saved, compute_dtype(dtype) if dtype else None), **execution)
    cls = _class_for(cls, type(config), head_kwargs)
    check_architecture(saved["architecture"], cls.backbone_cls.architecture, preset)
    keep_head, head_kwargs = _choose_head(
        preset, native.head_config(saved), num_classes, head_kwargs, config.hidden_dim
    )
    preprocessor = _auto_preprocessor(cls, preset, preprocessor, sequence_length, config)
    if not load_weights:
        return cls(cls.backbone_cls.from_config(config, seed=seed), preprocessor=preprocessor, seed=seed,
                   **head_kwargs)  # fmt: skip
    mesh = make_mesh()
    boxed = native_abstract(saved, config)
    params = native.restore_params(preset, nn.unbox(boxed), param_shardings(boxed, mesh))  # born on the mesh
    backbone = cls.backbone_cls.from_config(config, params.pop("backbone"))
    return cls(backbone, preprocessor=preprocessor, seed=seed, head_params=params if keep_head else None,
               **head_kwargs)  # fmt: skip


def _load_transformers(cls, preset, load_weights, num_classes, preprocessor, sequence_length, dtype, seed, execution,
                       head_kwargs):  # fmt: skip
    config = hf_checkpoint.load_config(preset, dtype)
    cls = _class_for(cls, type(config), head_kwargs)
    check_architecture(config_architecture(config), cls.backbone_cls.architecture, preset)  # before any weights
    preprocessor = _auto_preprocessor(cls, preset, preprocessor, sequence_length, config)
    state = hf_checkpoint.read_state_dict(preset) if load_weights else None  # read once, for the head and the rest
    saved_config = hf_checkpoint.checkpoint_config(preset, state) if load_weights else hf_checkpoint.read_config(preset)
    head = _saved_head(saved_config, preset, num_classes, load_weights)
    keep, head_kwargs = _choose_head(preset, head, num_classes, head_kwargs, config.hidden_dim)
    head_params = None
    if not load_weights:
        backbone = cls.backbone_cls.from_config(with_execution(config, **execution), seed=seed)
    elif keep:
        config, _, params = hf_checkpoint.load_classifier(preset, dtype, state=state)
        backbone = cls.backbone_cls.from_config(with_execution(config, **execution), params.pop("backbone"))
        head_params = params
    else:  # a new head: a pooler the checkpoint lacks is born from the classifier's seed too
        config, params = hf_checkpoint.load_backbone(preset, dtype, state=state, seed=seed)
        backbone = cls.backbone_cls.from_config(with_execution(config, **execution), params)
    return cls(backbone, preprocessor=preprocessor, seed=seed, head_params=head_params, **head_kwargs)


def _auto_preprocessor(cls, preset, preprocessor, sequence_length, config):
    """For "auto", the preset's own preprocessor, its tokenizer checked against the model's vocabulary_size (a bigger
    one failed only at the first rare token, in predict or fit); otherwise `preprocessor` itself. `sequence_length`
    sets the auto preprocessor's length: without one it would do nothing, so it is refused."""
    if preprocessor != "auto":
        if sequence_length is not None:
            given = "preprocessor=None" if preprocessor is None else "a preprocessor"
            fix = "leave it out" if preprocessor is None else "set it on the preprocessor you pass"
            raise ValueError(f"sequence_length={sequence_length} sets the length of the preprocessor that from_preset "
                             f"builds, but {given} was passed: it would do nothing; {fix}.")  # fmt: skip
        return preprocessor
    built = text_assets.preprocessor(cls.preprocessor_cls, cls.tokenizer_cls, preset, sequence_length,
                                     config.vocabulary_size)  # fmt: skip
    if built is None and sequence_length is not None:
        raise NoTokenizerError(
            f"{preset} has no tokenizer (vocabulary), so from_preset builds no preprocessor for "
            f"sequence_length={sequence_length} to set: leave sequence_length out and pass preprocessed inputs "
            "(token_ids, padding_mask), or pass preprocessor=... with its own sequence_length."
        )
    return built


def _class_for(cls, config_type, head_kwargs: dict):
    """`cls` itself, or for the base class the registered subclass whose backbone takes this config; with its head's
    keywords checked (the base class could check only those of every subclass)."""
    if cls.backbone_cls is not None:
        return cls
    sub = next(sub for sub in cls.__subclasses__() if sub.backbone_cls.config_cls is config_type)
    _check_keywords(sub, head_kwargs, f" (this preset makes a {sub.__name__})")
    return sub


def _check_keywords(cls, head_kwargs: dict, note: str = "") -> None:
    """Refuses keywords from_preset does not take, naming the ones it does (a head config or the classifier's
    constructor raised a TypeError about itself). The base class takes the head keywords of any subclass."""
    heads = [cls] if cls.backbone_cls is not None else cls.__subclasses__()
    head_fields = sorted({f.name for c in heads for f in dataclasses.fields(c.head_cls)} - {"num_classes"})
    unknown = [k for k in head_kwargs if k not in head_fields]
    if not unknown:
        return
    named = [p for p in inspect.signature(load_text_classifier).parameters if p not in ("cls", "preset", "head_kwargs")]
    accepted = named + head_fields
    close = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, accepted, n=1)) else repr(k)
             for k in unknown]  # fmt: skip
    raise TypeError(
        f"from_preset got an unexpected keyword argument {', '.join(close)}{note}; {cls.__name__}.from_preset takes "
        f"{', '.join(accepted)}."
    )


def _saved_head(config: dict, preset, num_classes: int | None, load_weights: bool):
    """The head config of a `*ForSequenceClassification` checkpoint, or None for a bare encoder; a head flaxbert
    cannot run (regression, multi-label, another task's) is refused, or with `num_classes` replaced by a new one.
    `config` is `hf_checkpoint.checkpoint_config`'s with weights, else config.json's (the head's config is there)."""
    if not hf_convert.is_classifier(config):
        task = hf_checkpoint.other_task(preset, config)
        if task is None and num_classes is None and not load_weights and not config.get("architectures"):
            raise ValueError(
                f"{preset}'s config.json names no architectures, so only its weights would show whether it has a "
                "classification head, and load_weights=False reads none: pass num_classes."
            )
        if task is None:  # a base checkpoint: its encoder, with a new head
            return None
        if num_classes is None:
            raise ValueError(f"{task.what} {task.encoder}")
        warnings.warn(f"{task.what} num_classes={num_classes} gets a new, randomly initialised head on its encoder.",
                      stacklevel=warning_stacklevel(5))  # fmt: skip
        return None
    unsupported = hf_convert.unsupported_head(config, str(preset))
    if unsupported is None:
        return hf_convert.head_config(config, str(preset))
    if num_classes is None:
        raise ValueError(f"{unsupported} Pass num_classes for a new head on its encoder.")
    warnings.warn(
        f"{unsupported} num_classes={num_classes} gets a new, randomly initialised head.",
        stacklevel=warning_stacklevel(5),
    )
    return None
