"""Frozen architecture configs: keras-hub's argument names and defaults, plus the numerics a checkpoint needs.

A config fully describes a network's structure and numerics; train vs eval is a call-time argument, never a field.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from flaxbert.models import lora

ACTIVATIONS = ("gelu", "gelu_approximate", "relu")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_KERNELS = ("auto", "xla", "pallas", "cudnn")
# keras dtype policies name the compute dtype after "mixed_"; params stay float32 either way.
_DTYPE_ALIASES = {None: "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def compute_dtype(dtype) -> str:
    """Normalises a user's `dtype` (None, a name, a keras policy name, or a numpy/jax dtype) to a compute dtype name."""
    name = _DTYPE_ALIASES.get(dtype, dtype)
    name = getattr(name, "__name__", None) or getattr(name, "name", None) or str(name)
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {COMPUTE_DTYPES} (params always stay float32).")
    return name


def with_execution(config, *, scan_layers: bool | None = None, attention_kernel: str | None = None):
    """`config` with how its encoder runs changed (`scan_layers`, `attention_kernel`; None keeps the config's own).

    These fields change the compiled program, never the params or the numbers, so a preset loads with either. The
    new config validates them (`check_execution` does the same before a preset's weights are read).
    """
    changes = {"scan_layers": scan_layers, "attention_kernel": attention_kernel}
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


def check_execution(scan_layers, attention_kernel) -> None:
    """Rejects `scan_layers` / `attention_kernel` values no config takes (None passes: it means "keep")."""
    if scan_layers is not None and not isinstance(scan_layers, bool):
        raise ValueError(f"scan_layers must be True or False, got {scan_layers!r}.")
    if attention_kernel is not None and attention_kernel not in ATTENTION_KERNELS:
        raise ValueError(f"attention_kernel={attention_kernel!r} is not supported; use one of {ATTENTION_KERNELS}.")


def _positive_int(cfg, field: str, what: str = "a positive integer") -> None:
    """A positive integer field. A numpy integer is stored as an int (JSON and jit's static arguments want one); a
    bool is refused (True would be a size of 1)."""
    value = getattr(cfg, field)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{type(cfg).__name__}.{field} must be {what}, got {value!r}.")
    object.__setattr__(cfg, field, int(value))


def _finite(cfg, field: str, accepts, what: str) -> None:
    """A finite real field that `accepts`, stored as a float; bools, NaN and infinities are refused."""
    value = getattr(cfg, field)
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (real and math.isfinite(value) and accepts(value)):
        raise ValueError(f"{type(cfg).__name__}.{field} must be {what}, got {value!r}.")
    object.__setattr__(cfg, field, float(value))


def _check_common(cfg) -> None:
    for field in ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                  "max_sequence_length"):  # fmt: skip
        _positive_int(cfg, field)
    if cfg.hidden_dim % cfg.num_heads:
        raise ValueError(
            f"{type(cfg).__name__}.hidden_dim must be divisible by num_heads, got hidden_dim={cfg.hidden_dim} and "
            f"num_heads={cfg.num_heads} (each head gets hidden_dim // num_heads dimensions)."
        )
    _finite(cfg, "dropout", lambda rate: 0.0 <= rate < 1.0, "in [0, 1)")
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"activation={cfg.activation!r} is not supported; use one of {ACTIVATIONS}.")
    _finite(cfg, "layer_norm_epsilon", lambda epsilon: epsilon > 0, "a positive number")
    # Stored as its name: a keras policy name ("mixed_bfloat16") reached flax as given and failed there, and a jnp
    # dtype class made get_config() unserialisable.
    object.__setattr__(cfg, "dtype", compute_dtype(cfg.dtype))
    if cfg.scan_layers is None or cfg.attention_kernel is None:  # None means "keep" in from_preset only
        raise ValueError(f"a config needs scan_layers (True or False) and attention_kernel (one of "
                         f"{ATTENTION_KERNELS}); got {cfg.scan_layers!r} and {cfg.attention_kernel!r}.")  # fmt: skip
    check_execution(cfg.scan_layers, cfg.attention_kernel)
    lora.check_config(cfg)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """keras-hub `BertBackbone`'s arguments (REFERENCE §1.1) plus the activation and LayerNorm epsilon.

    `activation` is "gelu_approximate" (tanh form) for keras-hub presets, which were converted from Google's TF
    checkpoints, and "gelu" (exact erf form) for Hugging Face `bert` checkpoints. `dtype` is the compute dtype: a name,
    a keras policy name ("mixed_bfloat16") or a numpy/jax dtype, stored as its name ("bfloat16").
    `scan_layers` runs the layers as one `lax.scan` (one layer to compile; see `layers.transformer_layers`) instead of
    unrolling them; the params and the numbers are the same either way. Off by default: on CPU the scanned bert_tiny
    train step measured ~18% slower and compiled no faster; on an H200 (bert_base, batch 32, bfloat16) the cold first
    step took 23 s instead of 34 s, but it trained at 1,734 instead of 3,086 examples/s (benchmarks/RESULTS.md).
    `attention_kernel="pallas"` computes attention with flaxbert's Pallas kernels (`models/fused_attention.py`; same
    function, dropout masks included) where the shape allows, instead of XLA's ops. For GPUs; on CPU the kernels only
    run interpreted. `attention_kernel="cudnn"` runs cuDNN's fused attention where no probability dropout applies
    (predict, evaluate, training at dropout 0) on an NVIDIA GPU in bfloat16 or float16 (`layers.cudnn_applies`);
    training with dropout, float32 and other devices keep XLA's ops, so it is the same function everywhere.
    "auto" (the default) is the Pallas kernels on an NVIDIA GPU of compute capability 8.0 or later computing in
    bfloat16 or float16 at lengths up to 128 and head sizes up to 64, and "xla" everywhere else
    (`layers.auto_attention_kernel`): extrapolated from one H200 measurement (bert_base, length 128, batch 256:
    train +10%, predict +12%; benchmarks/RESULTS.md).
    `lora_rank` and `lora_targets` (keras-hub's layer names) put LoRA adapters on those layers (`models/lora.py`);
    `backbone.enable_lora(rank)` sets them. 0 and () (the default): none.
    """

    vocabulary_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    intermediate_dim: int
    dropout: float = 0.1
    max_sequence_length: int = 512
    num_segments: int = 2
    activation: str = "gelu_approximate"
    layer_norm_epsilon: float = 1e-12
    dtype: str = "float32"
    scan_layers: bool = False
    attention_kernel: str = "auto"
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()

    def __post_init__(self):
        _check_common(self)
        _positive_int(self, "num_segments")

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads


@dataclasses.dataclass(frozen=True)
class DistilBertConfig:
    """keras-hub `DistilBertBackbone`'s arguments (REFERENCE §2); DistilBERT always uses exact GELU.

    `dtype`, `scan_layers`, `attention_kernel`, `lora_rank` and `lora_targets` mean what they do in `BertConfig`
    (no `pooled_dense` here: DistilBERT has no pooler).
    """

    vocabulary_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    intermediate_dim: int
    dropout: float = 0.1
    max_sequence_length: int = 512
    activation: str = "gelu"
    layer_norm_epsilon: float = 1e-12
    dtype: str = "float32"
    scan_layers: bool = False
    attention_kernel: str = "auto"
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()

    def __post_init__(self):
        _check_common(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads


def _check_head(cfg) -> None:
    _positive_int(cfg, "num_classes")
    if cfg.activation == "linear":  # Keras' name for none (keras-hub writes None so in its task.json)
        object.__setattr__(cfg, "activation", None)
    if cfg.activation not in (None, "softmax"):
        raise ValueError(
            f"activation={cfg.activation!r} is not supported for a classifier head; "
            "use None (or 'linear') for logits or 'softmax' for probabilities."
        )
    _finite(cfg, "dropout", lambda rate: 0.0 <= rate < 1.0, "in [0, 1)")
    names = cfg.label_names
    if names is None:
        return
    if isinstance(names, np.ndarray) and names.ndim == 1:  # an array of names (a LabelEncoder's classes_, say)
        names = names.tolist()
    if isinstance(names, str) or not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"label_names must be a list of strings (one per class) or None, got {names!r}.")
    if len(names) != cfg.num_classes or len(set(names)) != len(names):
        raise ValueError(
            f"label_names must name each of the num_classes={cfg.num_classes} classes once, got {list(names)}."
        )
    object.__setattr__(cfg, "label_names", tuple(names))  # hashable, as the frozen config is


@dataclasses.dataclass(frozen=True)
class BertHeadConfig:
    """keras-hub `BertTextClassifier`'s head: pooled output -> dropout -> dense(num_classes).

    `label_names` (one string per class, or None) are not computed with: they travel with the head into presets and
    transformers checkpoints (their `id2label`), as transformers keeps them in its config.
    """

    num_classes: int
    activation: str | None = None
    dropout: float = 0.1
    label_names: tuple[str, ...] | None = None

    def __post_init__(self):
        _check_head(self)


@dataclasses.dataclass(frozen=True)
class DistilBertHeadConfig:
    """keras-hub `DistilBertTextClassifier`'s head: [CLS] -> dense(hidden_dim, relu) -> dropout -> dense(num_classes).

    `hidden_dim=None` uses the backbone's hidden size; `label_names` as in `BertHeadConfig`.
    """

    num_classes: int
    activation: str | None = None
    hidden_dim: int | None = None
    dropout: float = 0.2
    label_names: tuple[str, ...] | None = None

    def __post_init__(self):
        _check_head(self)
        if self.hidden_dim is not None:  # None: the backbone's hidden size
            _positive_int(self, "hidden_dim", "a positive integer or None")


_CLASSES = {"bert": "BertBackbone / BertTextClassifier", "distil_bert": "DistilBertBackbone / DistilBertTextClassifier"}


def check_architecture(found: str, expected: str | None, source) -> None:
    """Rejects a checkpoint of the other architecture with a message that names the class to use instead."""
    if expected is not None and found != expected:
        raise ValueError(f"{source} holds a {found} checkpoint; load it with {_CLASSES[found]}.")


def config_architecture(config) -> str:
    return "bert" if isinstance(config, BertConfig) else "distil_bert"


def check_config_types(module, **expected) -> None:
    """Raises naming the config a flax module was built with where it is not of the type the module reads (a
    DistilBertConfig given to BertEncoder failed on a missing field, a DistilBertHeadConfig given to BertClassifier
    ran with its hidden_dim ignored). `expected`: the module's field name -> the config class it takes."""
    wrong = {name: kind for name, kind in expected.items() if not isinstance(getattr(module, name), kind)}
    if wrong:
        given = ", ".join(f"{name}={type(getattr(module, name)).__name__}" for name in wrong)
        takes = ", ".join(f"{name}: {kind.__name__}" for name, kind in expected.items())
        raise TypeError(
            f"{type(module).__name__} takes {takes}; got {given}. Pair each model with its own architecture's "
            "configs (hf_checkpoint.load_classifier returns the matching ones)."
        )
