"""The three peers of the side-by-side benchmarks, built the same way: flaxbert, keras-hub (Keras 3 on JAX) and
Hugging Face transformers (PyTorch), each a 2-class sequence classifier with dropout 0.1 everywhere, AdamW(5e-5,
weight decay 0.01), random init, on the same random token data.

AdamW comes in two forms that differ in one detail: Keras adds its epsilon (1e-7) to sqrt(v) before the bias
correction, torch and optax add theirs (1e-8) after it, so at BERT's ~1e-5 gradients Keras' first updates are about
a quarter smaller. flaxbert runs Keras' form (`flaxbert_optimizer`: the update of `keras.optimizers.AdamW`, as
flaxbert's own `compile()` default is Keras' Adam), so its training runs are keras-hub's; transformers runs torch's.
Per step both do the same work.

Each peer module is imported only inside its own worker process (see throughput.py), so importing this file pulls in
numpy and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import os
import platform

import numpy as np

VOCAB = 30522
NUM_CLASSES = 2
DROPOUT = 0.1
LEARNING_RATE = 5e-5
WEIGHT_DECAY = 0.01
MAX_POSITIONS = 512

# name -> (architecture, num_layers, num_heads, hidden_dim, intermediate_dim); the keras-hub presets' dims.
MODELS = {
    "bert_tiny": ("bert", 2, 2, 128, 512),
    "bert_small": ("bert", 4, 8, 512, 2048),
    "bert_base": ("bert", 12, 12, 768, 3072),
    "distil_bert_base": ("distil_bert", 6, 12, 768, 3072),
}
PRECISIONS = ("float32", "bfloat16")
# Dense bf16 tensor-core peaks (NVIDIA's datasheets, without sparsity), matched against the device name; the MFU
# denominator. The H200 has the H100 SXM's compute (and more memory bandwidth); the device tool lends H200s.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
FLOPS_FORMULA = (
    "train FLOPs per example = 6 * N * L + 12 * layers * L^2 * hidden, N = non-embedding params "
    "(encoder layers, pooler / pre-classifier, classifier), L = sequence length (PaLM appendix B); it counts the "
    "head at every position, where every framework runs it at [CLS] alone: +0.67% on bert_base, +1.3% on "
    "distil_bert_base, +3.6% on bert_tiny"
)


@dataclasses.dataclass(frozen=True)
class Shape:
    model: str
    batch: int
    precision: str

    @classmethod
    def parse(cls, text: str) -> Shape:
        """`bert_tiny:32:float32` -> Shape."""
        model, batch, precision = text.split(":")
        if model not in MODELS or precision not in PRECISIONS:
            raise ValueError(f"bad shape {text!r}: model in {sorted(MODELS)}, precision in {PRECISIONS}")
        return cls(model, int(batch), precision)

    @property
    def dims(self):
        return MODELS[self.model]

    def __str__(self) -> str:
        return f"{self.model}:{self.batch}:{self.precision}"


def layer_params(model: str) -> int:
    """One encoder layer's params: attention (q, k, v, output), feed-forward, two LayerNorms."""
    _, _, _, hidden, inter = MODELS[model]
    attention = 4 * hidden * hidden + 4 * hidden
    mlp = 2 * hidden * inter + inter + hidden
    norms = 4 * hidden
    return attention + mlp + norms


def non_embedding_params(model: str) -> int:
    _, layers, _, hidden, _ = MODELS[model]
    head = hidden * hidden + hidden + hidden * NUM_CLASSES + NUM_CLASSES  # pooler (BERT) or pre-classifier (DistilBERT)
    return layers * layer_params(model) + head


def train_flops_per_example(model: str, seq: int) -> float:
    _, layers, _, hidden, _ = MODELS[model]
    return 6.0 * non_embedding_params(model) * seq + 12.0 * layers * seq * seq * hidden


def first_token_saving(model: str, seq: int) -> float:
    """The fraction of `train_flops_per_example` that flaxbert's classifiers do not execute: their last layer computes
    [CLS] alone (`flaxbert.models.layers.transformer_layers`), its keys and values still at every position. The
    formula, and so every framework's TFLOP/s and MFU, counts the whole model (model FLOPs)."""
    hidden = MODELS[model][3]
    keys_and_values = 2 * hidden * hidden + 2 * hidden
    skipped = 6.0 * (layer_params(model) - keys_and_values) * (seq - 1) + 12.0 * (seq * seq - seq) * hidden
    return skipped / train_flops_per_example(model, seq)


def random_inputs(model: str, size: int, seq: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`size` rows of real tokens (no padding) and random labels; the same for every peer."""
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1000, VOCAB, (size, seq), dtype=np.int32)
    token_ids[:, 0] = 101  # [CLS]
    inputs = {"token_ids": token_ids, "padding_mask": np.ones((size, seq), np.int32)}
    if MODELS[model][0] == "bert":
        inputs["segment_ids"] = np.zeros((size, seq), np.int32)
    return inputs, rng.integers(0, NUM_CLASSES, size, dtype=np.int32)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    packages = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax", "numpy", "keras",
                "keras-hub", "torch", "transformers", "tokenizers")  # fmt: skip
    for package in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[package] = importlib.metadata.version(package)
    return found


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# -- flaxbert ------------------------------------------------------------------------------------------------------
def flaxbert_classifier(
    model: str, precision: str, backbone=None, scan_layers: bool = False, attention_kernel: str = "auto"
):
    """A flaxbert classifier with random init (or around `backbone`), compiled with Keras' AdamW."""
    import flaxbert

    arch, layers, heads, hidden, inter = MODELS[model]
    dims = dict(dropout=DROPOUT, max_sequence_length=MAX_POSITIONS, dtype=precision, scan_layers=scan_layers,
                attention_kernel=attention_kernel)  # fmt: skip
    if arch == "bert":
        backbone = backbone or flaxbert.BertBackbone(VOCAB, layers, heads, hidden, inter, **dims)
        classifier = flaxbert.BertTextClassifier(backbone, NUM_CLASSES, dropout=DROPOUT)
    else:
        backbone = backbone or flaxbert.DistilBertBackbone(VOCAB, layers, heads, hidden, inter, **dims)
        classifier = flaxbert.DistilBertTextClassifier(backbone, NUM_CLASSES, dropout=DROPOUT)
    classifier.compile(optimizer=flaxbert_optimizer())
    return classifier


def flaxbert_train_step(classifier, x: dict, y):
    """`(train_fn, state, sums, batch, seed)`: the classifier's own jitted train step (`train_fn(state, sums, batch,
    seed) -> (state, sums)`, state donated), a fresh train state, zero metric sums, and `x` / `y` (one batch) placed
    on the classifier's mesh as the loops place theirs, weights and mask all ones."""
    import jax

    from flaxbert.parallel import batch_sharding
    from flaxbert.training import programs

    (train_fn, create_state), _, _ = classifier._steps("train", True)
    rows = len(y)
    batch = {"inputs": x, "label": y, "weight": np.ones(rows, np.float32), "mask": np.ones(rows, np.float32)}
    batch = jax.device_put(batch, batch_sharding(classifier.mesh))
    mesh = classifier.mesh
    return train_fn, create_state(classifier.params), programs.zero_totals(mesh), batch, programs.seed_array(0, mesh)


def step_loop(train_fn, state, sums, batch, seed):
    """`run(n)`: n calls of a train step `train_fn(state, sums, batch, seed) -> (state, sums)` (the state donated, so
    each call takes the last one's), returning once they are done."""
    import jax

    box = [state, sums]

    def run(n: int) -> None:
        for _ in range(n):
            box[0], box[1] = train_fn(box[0], box[1], batch, seed)
        jax.block_until_ready(box[1])

    return run


def flaxbert_optimizer():
    """`keras.optimizers.AdamW(LEARNING_RATE, weight_decay=WEIGHT_DECAY)` in optax: Keras' Adam update, and before it
    the decoupled decay `param -= lr * weight_decay * param` (a constant rate, so the decay is one constant factor)."""
    import optax

    from flaxbert.training.keras_adam import keras_adam

    return optax.chain(keras_adam(LEARNING_RATE), optax.add_decayed_weights(-LEARNING_RATE * WEIGHT_DECAY))


# -- keras-hub -----------------------------------------------------------------------------------------------------
def keras_hub_classifier(model: str, precision: str, dims=None):
    """A keras-hub classifier (`preprocessor=None`), compiled with keras AdamW and jit_compile=True.

    `dims` overrides MODELS[model] as (arch, layers, heads, hidden, inter, vocab).
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    import keras_hub

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    arch, layers, heads, hidden, inter, vocab = dims or (*MODELS[model], VOCAB)
    common = dict(vocabulary_size=vocab, num_layers=layers, num_heads=heads, hidden_dim=hidden,
                  intermediate_dim=inter, dropout=DROPOUT, max_sequence_length=MAX_POSITIONS)  # fmt: skip
    if arch == "bert":
        backbone = keras_hub.models.BertBackbone(**common)
        classifier = keras_hub.models.BertTextClassifier(backbone, NUM_CLASSES, preprocessor=None, dropout=DROPOUT)
    else:
        backbone = keras_hub.models.DistilBertBackbone(**common)
        classifier = keras_hub.models.DistilBertTextClassifier(
            backbone, NUM_CLASSES, preprocessor=None, dropout=DROPOUT
        )
    classifier.compile(
        optimizer=keras.optimizers.AdamW(LEARNING_RATE, weight_decay=WEIGHT_DECAY),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
        jit_compile=True,
    )
    return classifier


# -- transformers --------------------------------------------------------------------------------------------------
def transformers_classifier(model: str, device: str):
    """A transformers `*ForSequenceClassification` with the keras-hub activations (BERT: tanh GELU; DistilBERT:
    exact GELU), dropout 0.1 on hidden states, attention probabilities and the classifier."""
    import transformers

    arch, layers, heads, hidden, inter = MODELS[model]
    if arch == "bert":
        config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                                         num_attention_heads=heads, intermediate_size=inter,
                                         hidden_act="gelu_pytorch_tanh", hidden_dropout_prob=DROPOUT,
                                         attention_probs_dropout_prob=DROPOUT, classifier_dropout=DROPOUT,
                                         max_position_embeddings=MAX_POSITIONS, num_labels=NUM_CLASSES)  # fmt: skip
        return transformers.BertForSequenceClassification(config).to(device)
    config = transformers.DistilBertConfig(vocab_size=VOCAB, dim=hidden, n_layers=layers, n_heads=heads,
                                           hidden_dim=inter, activation="gelu", dropout=DROPOUT,
                                           attention_dropout=DROPOUT, seq_classif_dropout=DROPOUT,
                                           max_position_embeddings=MAX_POSITIONS, num_labels=NUM_CLASSES)  # fmt: skip
    return transformers.DistilBertForSequenceClassification(config).to(device)


def torch_inputs(inputs: dict[str, np.ndarray]) -> dict:
    """flaxbert/keras-hub input names -> transformers keyword arguments (as CPU tensors)."""
    import torch

    names = {"token_ids": "input_ids", "segment_ids": "token_type_ids", "padding_mask": "attention_mask"}
    return {names[k]: torch.from_numpy(v.astype(np.int64)) for k, v in inputs.items()}


def xla_dropout_masks():
    """While it lasts, models built draw their dropout masks with XLA's operations on every device, as flaxbert did
    before session 32, instead of the Pallas kernel on NVIDIA GPUs (`flaxbert/models/dropout_kernel.py`; the same
    masks): the A/B of that change."""
    from flaxbert.models import dropout_kernel

    return _replaced(dropout_kernel, "applies", lambda device, masks: False)


def xla_layer_norm_backward():
    """While it lasts, models built compute their LayerNorms' backward passes with XLA's operations on every device,
    as flaxbert did before session 33, instead of the Pallas kernel on NVIDIA GPUs
    (`flaxbert/models/layer_norm_kernel.py`; the same gradients to float32 rounding): the A/B of that change."""
    from flaxbert.models import layer_norm_kernel

    return _replaced(layer_norm_kernel, "applies", lambda device, shape: False)


def plain_layer_norm_backward():
    """While it lasts, models built differentiate each block's residual add, dropout and LayerNorm as separate
    operations (the LayerNorm's backward pass by its own kernel on NVIDIA GPUs) and draw their dropout masks as
    packed words, as flaxbert did before session 36, instead of `layer_norm.residual_layer_norm`'s one kernel call
    that also writes the branch's gradient and its bias's sums, and lets XLA fuse the forward add into the LayerNorm
    (the same gradients to float32 rounding): the A/B of that change. One switch decides both
    (`layer_norm.residual_kernel_applies`)."""
    from flaxbert.models import layer_norm

    return _replaced(layer_norm, "residual_kernel_applies", lambda shape: False)


def two_attention_backward_kernels():
    """While it lasts, models built run the Pallas attention's backward pass as two kernels at every length, as
    flaxbert did before session 34 (one by blocks of queries for dq, one by blocks of keys for dk and dv, each
    recomputing the scores), instead of one kernel a (sequence, head) up to 128 tokens
    (`fused_attention._backward_kernel`; the same gradients to float32 rounding): the A/B of that change."""
    from flaxbert.models import fused_attention

    return _replaced(fused_attention, "ONE_BACKWARD_KERNEL_UP_TO", 0)


def no_pallas_kernels():
    """While it lasts, models built run XLA's operations wherever flaxbert would run its Pallas kernels (attention,
    dropout masks, LayerNorm backward passes; the switch `$FLAXBERT_PALLAS_KERNELS=0` throws, the same math): the A/B
    of all the kernels at once."""
    from flaxbert.models import target_device

    return _replaced(target_device, "pallas_kernels_allowed", lambda: False)


@contextlib.contextmanager
def model_casts():
    """While it lasts, train states keep no bfloat16 casts of their params and `predict` and `evaluate` make none,
    and the model casts them in every forward pass, as flaxbert did before session 33 (training) and session 35
    (inference), instead of reading the casts the optimizer update wrote or `programs.model_params` made
    (`flaxbert/models/compute_params.py`; the same numbers): the A/B of those changes."""
    from flaxbert.training import programs, state

    with _replaced(state, "compute_copies", lambda params, dtype: None), \
            _replaced(programs, "model_params", lambda params, dtype: params):  # fmt: skip
        yield


@contextlib.contextmanager
def _replaced(module, name: str, value):
    """`module.<name>` is `value` while it lasts, with the traces made before and during it forgotten."""
    original = getattr(module, name)
    setattr(module, name, value)
    _forget_traces()
    try:
        yield
    finally:
        setattr(module, name, original)
        _forget_traces()


def _forget_traces():
    """Drops the traces an arm's models leave behind: the jitted layer functions, and the steps kept for classifiers
    to come, which would otherwise serve the next arm."""
    from flaxbert.models import layers
    from flaxbert.training import shared_steps

    layers._layer_apply.cache_clear()
    shared_steps.clear()


@contextlib.contextmanager
def autodiff_norm_and_gelu():
    """While it lasts, models built use flax's `nn.LayerNorm` and `jax.nn.gelu` differentiated automatically, as
    flaxbert did before session 23, instead of its own (`flaxbert/models/layer_norm.py`, `activations.py`), whose
    backward passes keep only their inputs: the A/B of that change."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from flaxbert.models import bert, distil_bert, layer_norm, layers

    class FlaxLayerNorm(nn.LayerNorm):
        """flax's LayerNorm, taking a block's residual branch (`layer_norm.Branch`) as flaxbert's does: added first."""

        def __call__(self, x, branch=None):
            if branch is not None:
                x = layer_norm.residual_input(x, branch.h, branch.h_bias, branch.keep, branch.rate)
            return super().__call__(x)

    def flax_layer_norm(cfg, name):
        return FlaxLayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype, param_dtype=jnp.float32,
                             use_fast_variance=False, name=name,
                             scale_init=layers._partitioned(nn.initializers.ones_init(), ("norm",)),
                             bias_init=layers._partitioned(nn.initializers.zeros_init(), ("norm",)))  # fmt: skip

    modules, activations = (layers, bert, distil_bert), dict(layers.ACTIVATION_FNS)
    ours = [module.layer_norm for module in modules]
    for module in modules:
        module.layer_norm = flax_layer_norm
    _forget_traces()
    layers.ACTIVATION_FNS.update(gelu=functools.partial(jax.nn.gelu, approximate=False),
                                 gelu_approximate=functools.partial(jax.nn.gelu, approximate=True))  # fmt: skip
    try:
        with plain_layer_norm_backward():  # flax's LayerNorms: masks as words, as before session 36
            yield
    finally:
        for module, layer_norm in zip(modules, ours, strict=True):
            module.layer_norm = layer_norm
        layers.ACTIVATION_FNS.update(activations)
        _forget_traces()


# The A/B arms the GPU scripts take as variant modes: each the code before one change, everything else as it is.
ARMS = {
    "autodiff": autodiff_norm_and_gelu,
    "xla_masks": xla_dropout_masks,
    "model_casts": model_casts,
    "xla_norms": xla_layer_norm_backward,
    "two_attention_bwd": two_attention_backward_kernels,
    "plain_norm_bwd": plain_layer_norm_backward,
    "no_kernels": no_pallas_kernels,
}
