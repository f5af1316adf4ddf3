"""The config of a `train.py` run: frozen dataclasses, Python config files with `get_config()` (or a run's own
config.json), dotted overrides.

A config names a preset and never repeats its architecture. Overrides such as `optimizer.learning_rate=3e-5` are
parsed with the type of the field they set, and an unknown key fails with the closest known keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import math
import types
import typing
from pathlib import Path


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and what it accepts."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the examples come from: files in a Hub dataset repository (`hub_repo` set) or local paths."""

    hub_repo: str = "nyu-mll/glue"  # "" reads train / validation / test as local paths
    hub_revision: str = "main"
    train: str = "sst2/train-00000-of-00001.parquet"
    validation: str = "sst2/validation-00000-of-00001.parquet"
    test: str = ""  # GLUE's SST-2 test split has no labels; "" skips the test evaluation
    text_columns: tuple[str, ...] = ("sentence",)  # two names make sentence pairs
    label_column: str = "label"
    label_names: tuple[str, ...] = ()  # for files whose labels are names; () infers them from the training file
    train_limit: int = 0  # > 0 trains on the first that many examples (CPU-sized runs)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = "keras_default"  # keras-hub's compile default (Adam, eps 1e-7), or "recommended"
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1  # recommended only
    weight_decay: float = 0.01  # recommended only
    clipnorm: float = 1.0  # recommended only


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = -1  # -1: every device not used by fsdp
    fsdp: int = 1


@dataclasses.dataclass(frozen=True)
class Config:
    preset: str = ""
    num_classes: int = 2
    sequence_length: int = 128
    bucket: bool = True  # pad each batch to its length bucket instead of sequence_length
    group_by_length: bool = False  # batch sentences of similar length together: buckets pad far less (needs bucket)
    # "balanced": each training example weighs n / (k x its class's count), k the classes in the training split
    # (scikit-learn's "balanced"): rare classes count as much as common ones in the loss. "": every example weighs 1.
    class_weight: str = ""
    # > 0: fine-tune LoRA adapters of this rank (keras-hub's backbone.enable_lora), the rest of the backbone frozen;
    # model/ gets them merged into its kernels, and adapter.lora.h5 the adapters alone (keras-hub's format).
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()  # the layers they adapt, keras-hub's names; () is keras-hub's: query, value
    # How the model computes; None keeps the preset's (a flaxbert preset saves them; others: float32, auto, False).
    precision: str | None = None  # compute dtype: float32 or bfloat16 (params stay float32)
    attention_kernel: str | None = None  # "auto" (Pallas on a recent NVIDIA GPU in 16 bits, else "xla"), "xla",
    # "pallas" (flaxbert's kernels) or "cudnn" (see BertConfig)
    scan_layers: bool | None = None  # the encoder layers as one lax.scan: one layer to compile (GPU time to first step)
    batch_size: int = 32
    eval_batch_size: int = 256  # the evaluations before and after training, each epoch's validation, predictions
    epochs: int = 3
    seed: int = 0
    log_every: int = 50  # steps between training-metric rows in metrics.jsonl
    checkpoint_every: int = 0  # steps between checkpoints; 0 saves at each epoch's end only
    output_dir: str = ""  # "" -> runs/<preset name>
    offline: bool = False  # use only the Hugging Face cache (also set by HF_HUB_OFFLINE=1)
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    mesh: MeshConfig = MeshConfig()


PRECISIONS = ("float32", "bfloat16")
# As flaxbert.models.config's; repeated so that this module imports no jax.
ATTENTION_KERNELS = ("auto", "xla", "pallas", "cudnn")
OPTIMIZERS = ("keras_default", "recommended")
CLASS_WEIGHTS = ("", "balanced")
# As flaxbert.models.lora.TARGETS (BERT's; DistilBERT has no pooled_dense): repeated for the same reason.
LORA_TARGETS = ("query", "key", "value", "attention_output", "feedforward_intermediate_dense",
                "feedforward_output_dense", "pooled_dense")  # fmt: skip
LORA_DEFAULT_TARGETS = ("query", "value")  # lora.DEFAULT_TARGETS


def load(path) -> Config:
    """Runs `get_config()` of a Python config file, or reads a run's `config.json` (the config it ran with)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist (configs live in configs/*.py).")
    if path.suffix == ".json":
        return _from_json(path)
    if path.suffix != ".py":
        raise ConfigError(f"--config takes a Python file with get_config() or a run's config.json, got {str(path)!r}.")
    spec = importlib.util.spec_from_file_location(f"flaxbert_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{str(path)!r} has no get_config() function.")
    config = module.get_config()
    if not isinstance(config, Config):
        raise ConfigError(f"get_config() in {str(path)!r} must return a flaxbert.run.config.Config.")
    return config


def _from_json(path: Path) -> Config:
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:  # JSON and decoding errors are ValueErrors
        raise ConfigError(f"cannot read {str(path)!r} as a run's config.json: {error}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{str(path)!r} is not a run's config.json (a JSON object of config keys).")
    return _filled(Config(), tree, "", path)


def _filled(config, tree: dict, prefix: str, path: Path):
    """`config` with the values of `tree` (a JSON object of its fields), each checked against its field's type."""
    hints, changes = typing.get_type_hints(type(config)), {}
    for name, value in tree.items():
        key = prefix + name
        if name not in hints:
            raise ConfigError(f"{str(path)!r}: {_unknown(key)}")
        current = getattr(config, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{str(path)!r}: config key {key!r} takes an object of its fields, got {value!r}.")
            changes[name] = _filled(current, value, f"{key}.", path)
        else:
            changes[name] = _json_value(value, hints[name], key, path)
    return dataclasses.replace(config, **changes)


def _json_value(value, kind, key: str, path: Path):
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # `T | None`
        if value is None:
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if typing.get_origin(kind) is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (bool, int, str, float) and type(value) is kind:
        return value
    name = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"{str(path)!r}: config key {key!r} takes a {name}, got {value!r}.")


def config_keys(config=Config()) -> list[str]:
    """Every settable dotted key, e.g. `optimizer.learning_rate`."""
    out = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            out += [f"{field.name}.{key}" for key in config_keys(value)]
        else:
            out.append(field.name)
    return out


def override(config: Config, key: str, text: str) -> Config:
    """`config` with the dotted `key` set from its command-line text, parsed as the field's type."""
    if key not in config_keys(config):
        raise ConfigError(_unknown(key))
    return _set(config, key, text, key)


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, config_keys(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(config_keys())}"
    return f"unknown config key {key!r}{hint}"


def _set(config, path: str, text: str, key: str):
    head, _, rest = path.partition(".")
    if rest:
        return dataclasses.replace(config, **{head: _set(getattr(config, head), rest, text, key)})
    hints = typing.get_type_hints(type(config))
    return dataclasses.replace(config, **{head: _parse(text, hints[head], key)})


def _parse(text: str, kind, key: str):
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # `T | None`: "none" (any case) is None
        if text.lower() == "none":
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes"):
                return True
            if text.lower() in ("0", "false", "no"):
                return False
            raise ValueError
        if kind in (int, float, str):
            return kind(text)
        if typing.get_origin(kind) is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
    except ValueError:
        pass
    name = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"config key {key!r} takes a {name}, got {text!r}.")


def _recommended_only(optimizer: OptimizerConfig) -> list[str]:
    """The settings of `optimizer` only the "recommended" optimizer reads that differ from their defaults: the Keras
    default one dropped them without a word."""
    defaults = OptimizerConfig()
    names = ("warmup_fraction", "weight_decay", "clipnorm")
    return [f"optimizer.{n}={getattr(optimizer, n)}" for n in names if getattr(optimizer, n) != getattr(defaults, n)]


def validate(config: Config, training: bool = True) -> None:
    """Checks values no type can express, before anything is loaded (`training=False`: no training file needed)."""
    unread = _recommended_only(config.optimizer)
    checks = [
        (bool(config.preset), "preset is empty: pass --preset NAME_OR_PATH (or set preset in the config)"),
        (config.num_classes >= 2, f"num_classes must be at least 2, got {config.num_classes}"),
        (config.sequence_length >= 8, f"sequence_length must be at least 8, got {config.sequence_length}"),
        (config.bucket or not config.group_by_length, "group_by_length=true needs bucket=true (it only helps buckets)"),
        (
            config.class_weight in CLASS_WEIGHTS,
            f"class_weight must be 'balanced' or '' (every example weighs 1), got {config.class_weight!r}",
        ),
        (config.lora_rank >= 0, f"lora_rank must be 0 (no LoRA) or a positive rank, got {config.lora_rank}"),
        (
            config.lora_rank > 0 or not config.lora_targets,
            f"lora_targets={','.join(config.lora_targets)} needs a lora_rank (e.g. --config.lora_rank=8)",
        ),
        (
            all(name in LORA_TARGETS for name in config.lora_targets),
            f"lora_targets must name layers among {LORA_TARGETS}, got {config.lora_targets}",
        ),
        (
            config.precision in (*PRECISIONS, None),
            f"precision must be one of {PRECISIONS} (or none: the preset's), got {config.precision!r}",
        ),
        (
            config.attention_kernel in (*ATTENTION_KERNELS, None),
            f"attention_kernel must be one of {ATTENTION_KERNELS} (or none: the preset's), "
            f"got {config.attention_kernel!r}",
        ),
        (config.optimizer.name in OPTIMIZERS, f"optimizer.name must be one of {OPTIMIZERS}"),
        (
            0 < config.optimizer.learning_rate < math.inf,
            f"optimizer.learning_rate must be positive and finite, got {config.optimizer.learning_rate}",
        ),
        (
            0 <= config.optimizer.warmup_fraction <= 1,
            f"optimizer.warmup_fraction must be in [0, 1], got {config.optimizer.warmup_fraction}",
        ),
        (
            0 <= config.optimizer.weight_decay < math.inf,
            f"optimizer.weight_decay must be non-negative and finite, got {config.optimizer.weight_decay}",
        ),
        (
            0 < config.optimizer.clipnorm < math.inf,
            f"optimizer.clipnorm must be positive and finite (the largest global gradient norm), got "
            f"{config.optimizer.clipnorm}",
        ),
        (
            config.optimizer.name == "recommended" or not unread,
            f"{', '.join(unread)}: read by optimizer.name=recommended only (this config's optimizer is "
            f"{config.optimizer.name}); add --config.optimizer.name=recommended, or leave those settings out",
        ),
        (config.batch_size >= 1 and config.eval_batch_size >= 1, "batch sizes must be positive"),
        (config.epochs >= 1, f"epochs must be at least 1, got {config.epochs}"),
        (0 <= config.seed < 2**31, f"seed must be an integer in [0, 2**31), got {config.seed}"),
        (config.log_every >= 1, "log_every must be at least 1"),
        (config.checkpoint_every >= 0, "checkpoint_every must be 0 (epoch ends) or positive"),
        (
            config.mesh.fsdp >= 1 and (config.mesh.data >= 1 or config.mesh.data == -1),
            f"mesh sizes must be positive (DATA may be -1: every device the FSDP size leaves), got "
            f"{config.mesh.data},{config.mesh.fsdp}",
        ),
        (bool(config.data.train) or not training, "data.train is empty: pass --train-file or set data.train"),
        (bool(config.data.validation), "data.validation is empty: pass --validation-file or set data.validation"),
        (bool(config.data.label_column), "data.label_column is empty: pass --label-column NAME"),
        (
            1 <= len(config.data.text_columns) <= 2,
            "data.text_columns must name one text column, or two for sentence pairs: pass --text-column NAME[,NAME]",
        ),
        (config.data.train_limit >= 0, "data.train_limit must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message + ".")


def to_dict(config) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))
