"""The one file that knows Hugging Face transformers' names: config fields and state-dict keys (REFERENCE §7.4).

Weights map through an explicit table of `(hf_key, flaxbert_path, transform)` rows built per layer, so the same table
serves reading (HF -> flaxbert) and writing (flaxbert -> HF). torch `Linear.weight` is [out, in]; flax
kernels are [in, out]; attention kernels split their hidden axis into (heads, head_dim) row-major, as HF's
`view(..., heads, head_dim)` does.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from flaxbert.models.config import BertConfig, BertHeadConfig, DistilBertConfig, DistilBertHeadConfig
from flaxbert.parallel.mesh import warning_stacklevel

MODEL_TYPES = {"bert": "bert", "distilbert": "distil_bert"}
# HF's activation names -> flaxbert's. The tanh-form variants all compute 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))).
_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "relu": "relu",
}
_PREFIXES = {"bert": "bert.", "distil_bert": "distilbert."}
# flaxbert's activation -> the transformers name that computes the same function. "gelu_new" is written out as
# 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))), the very formula of jax.nn.gelu(approximate=True).
_EXPORT_ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}
# transformers hard-codes DistilBERT's LayerNorm epsilon; its config has no field for it.
_DISTIL_BERT_EPSILON = 1e-12


def architecture(hf_config: dict, source: str) -> str:
    """'bert' or 'distil_bert' from a transformers config.json, or a clear error for anything else."""
    model_type = hf_config.get("model_type")
    if "registered_name" in hf_config:
        raise ValueError(
            f"{source} is a keras-hub preset ({hf_config['registered_name']}); reading keras-hub's .weights.h5 "
            "format is not implemented yet. Use a Hugging Face transformers checkpoint of the same model instead."
        )
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{source}: model_type {model_type!r} is not supported; flaxbert reads transformers checkpoints with "
            f"model_type {sorted(MODEL_TYPES)}."
        )
    return MODEL_TYPES[model_type]


def _activation(name, source):
    if not isinstance(name, str) or name not in _HF_ACTIVATIONS:
        raise ValueError(f"{source}: activation {name!r} is not supported; expected one of {sorted(_HF_ACTIVATIONS)}.")
    return _HF_ACTIVATIONS[name]


def backbone_config(hf: dict, source: str, dtype: str = "float32") -> BertConfig | DistilBertConfig:
    """Maps a transformers config.json dict to a flaxbert backbone config."""
    try:
        return _backbone_config(_distil_bert_aliases(hf, source), source, dtype)
    except KeyError as missing:
        raise ValueError(
            f"{source}: config.json lacks {missing}, which a {hf.get('model_type')!r} config needs; the file is "
            "incomplete or not a transformers config."
        ) from None
    except ValueError as error:  # a value the flaxbert config refuses ("BertConfig.<field> must be ..."): say whose
        field = re.match(r"(?:Distil)?BertConfig\.(\w+) ", str(error))
        keys = _DISTIL_BERT_KEYS if architecture(hf, source) == "distil_bert" else _BERT_KEYS
        if field is None or field[1] not in keys:
            raise
        key = keys[field[1]]
        named = [name for name in keys if re.search(rf"\b{name}\b", str(error))]  # the fields the message names
        said = ", ".join(f"its {name} is transformers' {keys[name]}" for name in named if name != field[1])
        raise ValueError(
            f"{source}: config.json's {key}={hf.get(key)!r} does not describe a model flaxbert builds: {error} "
            f"(flaxbert's {field[1]} is transformers' {key}{', ' + said if said else ''})."
        ) from None


# The generic names transformers' DistilBertConfig also reads (its attribute_map), and the keys they stand for
_DISTIL_BERT_ALIASES = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}


def _distil_bert_aliases(hf: dict, source: str) -> dict:
    """A DistilBERT config.json written with BERT's generic names (hidden_size, num_attention_heads,
    num_hidden_layers), read as transformers reads it: as dim, n_heads and n_layers. Both names with different values
    are refused: which one a model was trained with cannot be told."""
    if architecture(hf, source) != "distil_bert":
        return hf
    hf = dict(hf)
    for alias, key in _DISTIL_BERT_ALIASES.items():
        if alias not in hf:
            continue
        value = hf.pop(alias)
        if key in hf and hf[key] != value:
            raise ValueError(
                f"{source}: config.json sets both {key}={hf[key]!r} and {alias}={value!r}, which transformers' "
                f"DistilBertConfig reads as the same setting; keep the one the model was trained with."
            )
        hf[key] = value
    return hf


# transformers' config.json key of each flaxbert config field it sets
_BERT_KEYS = {"vocabulary_size": "vocab_size", "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
              "hidden_dim": "hidden_size", "intermediate_dim": "intermediate_size", "dropout": "hidden_dropout_prob",
              "max_sequence_length": "max_position_embeddings", "num_segments": "type_vocab_size",
              "layer_norm_epsilon": "layer_norm_eps"}  # fmt: skip
_DISTIL_BERT_KEYS = {"vocabulary_size": "vocab_size", "num_layers": "n_layers", "num_heads": "n_heads",
                     "hidden_dim": "dim", "intermediate_dim": "hidden_dim", "dropout": "dropout",
                     "max_sequence_length": "max_position_embeddings"}  # fmt: skip


def _backbone_config(hf: dict, source: str, dtype: str) -> BertConfig | DistilBertConfig:
    if architecture(hf, source) == "distil_bert":
        return DistilBertConfig(
            vocabulary_size=hf["vocab_size"],
            num_layers=hf["n_layers"],
            num_heads=hf["n_heads"],
            hidden_dim=hf["dim"],
            intermediate_dim=hf["hidden_dim"],
            dropout=hf.get("dropout", 0.1),
            max_sequence_length=hf.get("max_position_embeddings", 512),
            activation=_activation(hf.get("activation", "gelu"), source),
            dtype=dtype,
        )
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(f"{source}: position_embedding_type {position_type!r} is not supported (only 'absolute').")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise ValueError(
            f"{source}: is_decoder / add_cross_attention is set: transformers runs this BERT as a decoder (causal "
            "attention), which flaxbert's bidirectional encoder cannot reproduce. Use an encoder checkpoint."
        )
    return BertConfig(
        vocabulary_size=hf["vocab_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        hidden_dim=hf["hidden_size"],
        intermediate_dim=hf["intermediate_size"],
        dropout=hf.get("hidden_dropout_prob", 0.1),
        max_sequence_length=hf.get("max_position_embeddings", 512),
        num_segments=hf.get("type_vocab_size", 2),
        activation=_activation(hf.get("hidden_act", "gelu"), source),
        layer_norm_epsilon=hf.get("layer_norm_eps", 1e-12),
        dtype=dtype,
    )


def dropout_note(hf: dict, source: str) -> str | None:
    """Says that flaxbert's one dropout rate stands in for the config's two different ones, or None if they agree.

    transformers drops attention probabilities at their own rate (BERT `attention_probs_dropout_prob`, DistilBERT
    `attention_dropout`); flaxbert, like keras-hub, has one `dropout` and takes the hidden states' rate for both.
    """
    distil = architecture(hf, source) == "distil_bert"
    names = ("dropout", "attention_dropout") if distil else ("hidden_dropout_prob", "attention_probs_dropout_prob")
    hidden, attention = (hf.get(name, 0.1) for name in names)
    if hidden == attention:
        return None
    return (
        f"{source}: transformers drops hidden states at {names[0]}={hidden} and attention probabilities at "
        f"{names[1]}={attention}; flaxbert has one dropout rate and uses {hidden} for both. Outputs (predict, "
        f"evaluate) are the same; fine-tuning drops attention probabilities at {hidden}, not {attention} (another "
        "rate: from_config(dataclasses.replace(backbone.config, dropout=...), backbone.params))."
    )


def num_labels(hf: dict) -> int:
    return len(hf["id2label"]) if "id2label" in hf else hf.get("num_labels", 2)


def is_classifier(hf: dict) -> bool:
    """Whether the config is a `*ForSequenceClassification` checkpoint's (one with a classification head)."""
    return any(name.endswith("ForSequenceClassification") for name in hf.get("architectures") or [])


# transformers' fine-tuned heads for tasks other than sequence classification, by the architecture's suffix, and
# their task. (Pre-training heads, ForMaskedLM and ForPreTraining, are how base checkpoints are published: their
# encoder is what a backbone loads.)
_OTHER_TASKS = {
    "ForTokenClassification": "token classification model (a label for each token)",
    "ForMultipleChoice": "multiple choice model (a score for each candidate text)",
    "ForQuestionAnswering": "question answering model (answer spans)",
}


def other_task(hf: dict) -> tuple[str, str] | None:
    """(architecture, task) of a checkpoint fine-tuned for a task other than sequence classification, or None."""
    for name in hf.get("architectures") or []:
        for suffix, task in _OTHER_TASKS.items():
            if name.endswith(suffix):
                return name, task
    return None


def has_pooler(weight_names) -> bool:
    """Whether a BERT state dict holds the pooler, which transformers leaves out of its token-level heads."""
    return any(name.endswith("pooler.dense.weight") for name in weight_names)


def unused_encoder_weights(weight_names, cfg) -> list[str]:
    """The checkpoint's encoder weights (embeddings, layers, pooler) that the model config.json describes has no
    place for: weights of layers beyond its num_hidden_layers, say. transformers loads such a checkpoint too, and
    reports them as unexpected; the buffers it saves beside them (position_ids) are not weights."""
    arch = "bert" if isinstance(cfg, BertConfig) else "distil_bert"
    used = {hf.removeprefix(_PREFIXES[arch]) for hf, _, _ in weight_rows(cfg, with_head=False)}
    sections = ("embeddings.", "encoder.", "pooler.") if arch == "bert" else ("embeddings.", "transformer.")
    names = normalize_keys(dict.fromkeys(weight_names), arch)
    return sorted(
        name
        for name in names
        if name.startswith(sections) and name not in used and not name.endswith(("position_ids", "token_type_ids"))
    )


def names_its_head(hf: dict) -> bool:
    """Whether config.json names the head its weights hold: a sequence classifier or another task's model. A config
    that names a pre-training model (ForMaskedLM, copied beside a fine-tuned state dict from the base checkpoint) or
    none at all leaves the weights to say."""
    return is_classifier(hf) or other_task(hf) is not None


def head_from_weights(hf: dict, shapes: dict[str, tuple[int, ...]], source: str) -> dict:
    """`hf` naming the `*ForSequenceClassification` architecture its weights `shapes` show, when it names none or
    only a pre-training model (`names_its_head`): transformers' AutoModelForSequenceClassification reads the head by
    its weights' names, whatever `architectures` says.

    A sequence classification head is `classifier.weight` beside BERT's pooler (a token classification head has no
    pooler) or beside DistilBERT's `pre_classifier.weight`; its rows are the classes, which also set `num_labels`
    (`id2label` is kept only where it names as many). A one-row head where the config asks for more labels is a
    multiple-choice one (transformers scores each choice with one output). A config that names its head is returned
    as it is.
    """
    if names_its_head(hf):
        return hf
    bert = architecture(hf, source) == "bert"
    head = shapes.get("classifier.weight")
    beside = has_pooler(shapes) if bert else any(name.endswith("pre_classifier.weight") for name in shapes)
    if head is None or len(head) != 2 or not beside:
        return hf
    prefix = "Bert" if bert else "DistilBert"
    if head[0] == 1 and num_labels(hf) != 1:  # one output the config does not ask for: a multiple-choice scorer
        return {**hf, "architectures": [f"{prefix}ForMultipleChoice"]}
    completed = {**hf, "architectures": [f"{prefix}ForSequenceClassification"],
                 "num_labels": int(head[0])}  # fmt: skip
    if num_labels(hf) != head[0]:
        completed.pop("id2label", None)
        completed.pop("label2id", None)
    return completed


def unsupported_head(hf: dict, source: str) -> str | None:
    """Why flaxbert cannot run the checkpoint's head (a regression or multi-label one), or None."""
    problem = hf.get("problem_type")
    if problem not in (None, "single_label_classification"):
        return f"{source}: problem_type {problem!r} is not supported; flaxbert heads are single-label."
    # transformers' *ForSequenceClassification picks the loss when problem_type is unset: one label is regression.
    if problem is None and num_labels(hf) == 1:
        return (
            f"{source}: num_labels is 1 and problem_type is unset, which transformers trains as a regression (mean "
            "squared error); flaxbert heads are single-label classifiers."
        )
    return None


def head_config(hf: dict, source: str) -> BertHeadConfig | DistilBertHeadConfig:
    """The classifier head of a `*ForSequenceClassification` checkpoint."""
    unsupported = unsupported_head(hf, source)
    if unsupported is not None:
        raise ValueError(unsupported)
    names = label_names(hf, source)
    if architecture(hf, source) == "distil_bert":
        return DistilBertHeadConfig(
            num_classes=num_labels(hf), dropout=hf.get("seq_classif_dropout", 0.2), label_names=names
        )
    dropout = hf.get("classifier_dropout")
    return BertHeadConfig(
        num_classes=num_labels(hf),
        dropout=hf.get("hidden_dropout_prob", 0.1) if dropout is None else dropout,
        label_names=names,
    )


def label_names(hf: dict, source: str) -> tuple[str, ...] | None:
    """The classes' names from `id2label`; None where they are transformers' defaults (LABEL_0, ...) or do not name
    classes 0..n-1 once each (transformers tolerates that: they are only names; a warning says they are dropped)."""
    id2label = hf.get("id2label", {})
    try:
        by_id = {int(i): name for i, name in id2label.items()}
    except (AttributeError, TypeError, ValueError):
        by_id = None
    names = None if by_id is None else [by_id.get(i) for i in range(len(by_id))]
    if names is None or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        warnings.warn(
            f"{source}: config.json's id2label {str(id2label)[:200]} does not give classes 0..{len(id2label) - 1} "
            "one distinct name each, so the classifier has no label_names (its outputs are class ids only); pass "
            "label_names=[name of class 0, ...] to from_preset to name them.",
            stacklevel=warning_stacklevel(4),
        )
        return None
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else tuple(names)


def _linear(hf_name, path):
    return [(f"{hf_name}.weight", (*path, "kernel"), "linear"), (f"{hf_name}.bias", (*path, "bias"), "copy")]


def _norm(hf_name, path):
    return [(f"{hf_name}.weight", (*path, "scale"), "copy"), (f"{hf_name}.bias", (*path, "bias"), "copy")]


def _attention(hf_names, path):
    rows = []
    for hf_name, name in zip(hf_names[:3], ("query", "key", "value"), strict=True):
        rows += [
            (f"{hf_name}.weight", (*path, name, "kernel"), "split_out"),
            (f"{hf_name}.bias", (*path, name, "bias"), "split_bias"),
        ]
    return rows + [
        (f"{hf_names[3]}.weight", (*path, "output", "kernel"), "split_in"),
        (f"{hf_names[3]}.bias", (*path, "output", "bias"), "copy"),
    ]


def _bert_rows(cfg: BertConfig, pooler: bool):
    rows = [
        ("embeddings.word_embeddings.weight", ("token_embedding", "embedding"), "copy"),
        ("embeddings.position_embeddings.weight", ("position_embedding", "embedding"), "copy"),
        ("embeddings.token_type_embeddings.weight", ("segment_embedding", "embedding"), "copy"),
        *_norm("embeddings.LayerNorm", ("embeddings_layer_norm",)),
    ]
    for i in range(cfg.num_layers):
        hf, ours = f"encoder.layer.{i}.", f"transformer_layer_{i}"
        qkvo = [f"{hf}attention.self.{n}" for n in ("query", "key", "value")] + [f"{hf}attention.output.dense"]
        rows += _attention(qkvo, (ours, "self_attention"))
        rows += _norm(f"{hf}attention.output.LayerNorm", (ours, "self_attention_layer_norm"))
        rows += _linear(f"{hf}intermediate.dense", (ours, "feedforward_intermediate_dense"))
        rows += _linear(f"{hf}output.dense", (ours, "feedforward_output_dense"))
        rows += _norm(f"{hf}output.LayerNorm", (ours, "feedforward_layer_norm"))
    return rows + (_linear("pooler.dense", ("pooled_dense",)) if pooler else [])


def _distil_bert_rows(cfg: DistilBertConfig):
    rows = [
        ("embeddings.word_embeddings.weight", ("token_embedding", "embedding"), "copy"),
        ("embeddings.position_embeddings.weight", ("position_embedding", "embedding"), "copy"),
        *_norm("embeddings.LayerNorm", ("embeddings_layer_norm",)),
    ]
    for i in range(cfg.num_layers):
        hf, ours = f"transformer.layer.{i}.", f"transformer_layer_{i}"
        rows += _attention(
            [f"{hf}attention.{n}" for n in ("q_lin", "k_lin", "v_lin", "out_lin")], (ours, "self_attention")
        )
        rows += _norm(f"{hf}sa_layer_norm", (ours, "self_attention_layer_norm"))
        rows += _linear(f"{hf}ffn.lin1", (ours, "feedforward_intermediate_dense"))
        rows += _linear(f"{hf}ffn.lin2", (ours, "feedforward_output_dense"))
        rows += _norm(f"{hf}output_layer_norm", (ours, "feedforward_layer_norm"))
    return rows


def weight_rows(cfg, with_head: bool, pooler: bool = True) -> list[tuple[str, tuple[str, ...], str]]:
    """The full HF-key <-> flaxbert-path table; with a head, backbone paths sit under "backbone". `pooler=False`
    leaves out BERT's pooler."""
    is_bert = isinstance(cfg, BertConfig)
    rows = _bert_rows(cfg, pooler) if is_bert else _distil_bert_rows(cfg)
    if not with_head:
        return rows
    prefix = _PREFIXES["bert" if is_bert else "distil_bert"]
    rows = [(prefix + hf, ("backbone", *path), kind) for hf, path, kind in rows]
    head = _linear("classifier", ("logits",))
    return rows + (head if is_bert else _linear("pre_classifier", ("pooled_dense",)) + head)


def _to_flax(kind: str, w: np.ndarray, cfg) -> np.ndarray:
    heads, head_dim = cfg.num_heads, cfg.head_dim
    if kind == "linear":
        return w.T
    if kind == "split_out":  # [out=D, in=D] -> [D, H, K]
        return w.T.reshape(w.shape[1], heads, head_dim)
    if kind == "split_bias":  # [D] -> [H, K]
        return w.reshape(heads, head_dim)
    if kind == "split_in":  # [out=D, in=D] -> [H, K, D]
        return w.T.reshape(heads, head_dim, w.shape[0])
    return w


def normalize_keys(state: dict[str, np.ndarray], arch: str) -> dict[str, np.ndarray]:
    """Old checkpoints name LayerNorm params gamma/beta; some omit or add the `bert.` / `distilbert.` prefix."""
    renamed = {}
    for key, value in state.items():
        if "LayerNorm" in key or "layer_norm" in key:
            key = key.removesuffix(".gamma") + ".weight" if key.endswith(".gamma") else key
            key = key.removesuffix(".beta") + ".bias" if key.endswith(".beta") else key
        renamed[key] = value
    prefix = _PREFIXES[arch]
    return {k.removeprefix(prefix): v for k, v in renamed.items()}


def params_from_state_dict(
    state: dict[str, np.ndarray], cfg, with_head: bool, source: str, pooler: bool = True
) -> dict:
    """Builds flaxbert's nested params from a transformers state dict; a missing key raises naming both names.
    `pooler=False` reads no BERT pooler (the caller makes one)."""
    arch = "bert" if isinstance(cfg, BertConfig) else "distil_bert"
    state = normalize_keys(state, arch)
    params: dict = {}
    for hf_key, path, kind in weight_rows(cfg, with_head, pooler):
        key = hf_key.removeprefix(_PREFIXES[arch])
        if key not in state:
            raise ValueError(f"{source}: weight {hf_key!r} (flaxbert parameter {'/'.join(path)}) is missing.")
        weight = np.asarray(state[key])
        try:
            converted = _to_flax(kind, weight, cfg)
        except (ValueError, IndexError) as e:  # a reshape that does not fit, or too few axes
            raise ValueError(
                f"{source}: weight {hf_key!r} has shape {weight.shape}, which does not fit flaxbert parameter "
                f"{'/'.join(path)} of a model with {cfg.num_heads} heads of size {cfg.head_dim}."
            ) from e
        node = params
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = converted
    return params


def _to_hf(kind: str, w: np.ndarray, cfg) -> np.ndarray:
    """The inverse of `_to_flax`: a flaxbert array in transformers' layout."""
    hidden = cfg.hidden_dim
    if kind == "linear":
        return w.T
    if kind == "split_out":  # [D, H, K] -> [out=D, in=D]
        return w.reshape(w.shape[0], hidden).T
    if kind == "split_bias":  # [H, K] -> [D]
        return w.reshape(hidden)
    if kind == "split_in":  # [H, K, D] -> [out=D, in=D]
        return w.reshape(hidden, w.shape[-1]).T
    return w


def _leaf_paths(tree, prefix=()):
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _leaf_paths(value, (*prefix, name))
        else:
            yield (*prefix, name)


def state_dict_from_params(params: dict, cfg, with_head: bool) -> dict[str, np.ndarray]:
    """Builds a transformers state dict from flaxbert params: the inverse of `params_from_state_dict`.

    Args:
        params: the encoder's params, or with `with_head` a classifier's `{"backbone": ..., <head params>}`.
        cfg: the backbone's `BertConfig` / `DistilBertConfig`.
        with_head: write `*ForSequenceClassification` keys (`bert.` / `distilbert.` prefix plus the head).

    Returns:
        `{hf_key: array}` with contiguous float32 arrays in torch's layout.

    Raises:
        ValueError: a parameter of the table is missing from `params`, or `params` holds one the table lacks.
    """
    rows = weight_rows(cfg, with_head)
    state = {}
    for hf_key, path, kind in rows:
        node = params
        try:
            for name in path:
                node = node[name]
        except (KeyError, TypeError) as e:
            raise ValueError(f"params lack {'/'.join(path)}, which transformers needs as {hf_key!r}.") from e
        array = _to_hf(kind, np.asarray(node, dtype=np.float32), cfg)
        state[hf_key] = np.ascontiguousarray(array)
    # A leaf outside the table would be silently dropped, and the export would not be the model the user trained.
    extra = set(_leaf_paths(params)) - {path for _, path, _ in rows}
    if extra:
        raise ValueError(f"params hold {sorted('/'.join(p) for p in extra)}, which have no transformers name.")
    return state


def hf_config(backbone_cfg, head_cfg=None, pad_token_id: int = 0) -> dict:
    """The transformers config.json dict that describes a flaxbert backbone, with or without a classifier head.

    Args:
        backbone_cfg: a `BertConfig` or `DistilBertConfig`.
        head_cfg: a `BertHeadConfig` / `DistilBertHeadConfig` for a `*ForSequenceClassification` checkpoint.
        pad_token_id: the id of `[PAD]` in the tokenizer's vocabulary.

    Raises:
        ValueError: the model cannot be expressed in transformers (a DistilBERT with a LayerNorm epsilon other than
            1e-12, or a DistilBERT head whose hidden size differs from the backbone's).
    """
    cfg = backbone_cfg
    activation = _EXPORT_ACTIVATIONS[cfg.activation]
    common = {"vocab_size": cfg.vocabulary_size, "max_position_embeddings": cfg.max_sequence_length}
    common |= {"pad_token_id": int(pad_token_id), "initializer_range": 0.02, "dtype": "float32"}
    if isinstance(cfg, BertConfig):
        config = {
            "model_type": "bert",
            "hidden_size": cfg.hidden_dim,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads,
            "intermediate_size": cfg.intermediate_dim,
            "type_vocab_size": cfg.num_segments,
            "hidden_act": activation,
            "layer_norm_eps": cfg.layer_norm_epsilon,
            # keras-hub's one dropout rate also drops attention probabilities.
            "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": cfg.dropout,
            "position_embedding_type": "absolute",
            **common,
        }
        name = "Bert"
    else:
        if cfg.layer_norm_epsilon != _DISTIL_BERT_EPSILON:
            raise ValueError(
                f"DistilBertConfig.layer_norm_epsilon={cfg.layer_norm_epsilon!r} cannot be exported: transformers' "
                f"DistilBERT always uses {_DISTIL_BERT_EPSILON}, so the exported model would compute other outputs."
            )
        config = {
            "model_type": "distilbert",
            "dim": cfg.hidden_dim,
            "n_layers": cfg.num_layers,
            "n_heads": cfg.num_heads,
            "hidden_dim": cfg.intermediate_dim,
            "activation": activation,
            "dropout": cfg.dropout,
            "attention_dropout": cfg.dropout,
            "sinusoidal_pos_embds": False,
            **common,
        }
        name = "DistilBert"
    if head_cfg is None:
        return config | {"architectures": [f"{name}Model"]}
    if name == "DistilBert":
        if head_cfg.hidden_dim not in (None, cfg.hidden_dim):
            raise ValueError(
                f"DistilBertHeadConfig.hidden_dim={head_cfg.hidden_dim} cannot be exported: transformers' "
                f"pre_classifier is dim x dim ({cfg.hidden_dim} x {cfg.hidden_dim}); use hidden_dim=None."
            )
        config["seq_classif_dropout"] = head_cfg.dropout
    else:
        config["classifier_dropout"] = head_cfg.dropout
    labels = dict(enumerate(head_cfg.label_names or [f"LABEL_{i}" for i in range(head_cfg.num_classes)]))
    return config | {
        "architectures": [f"{name}ForSequenceClassification"],
        "num_labels": head_cfg.num_classes,
        "id2label": {str(i): label for i, label in labels.items()},
        "label2id": {label: i for i, label in labels.items()},
        "problem_type": "single_label_classification",
    }
