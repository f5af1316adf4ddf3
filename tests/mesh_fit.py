"""A tiny classifier's one-epoch fit, data-parallel over 4 x 2 devices, traced afresh: for the kernel tests that
compare a fit through a kernel (patched in, interpreted) with one through XLA's operations."""

import numpy as np
import optax

import flaxbert
from flaxbert.models import layers
from flaxbert.training import shared_steps


def fit_on_a_mesh() -> tuple[dict, dict]:
    """(history, params) of one epoch of a 2-layer BERT classifier over a 4 x 2 mesh, batch 8 of 16 rows. Traced
    layer functions and kept steps are dropped before and after, so that neither serves another arm's fit."""
    layers._layer_apply.cache_clear()
    shared_steps.clear()
    try:
        dims = dict(vocabulary_size=101, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=24)
        backbone = flaxbert.BertBackbone(**dims, max_sequence_length=24, attention_kernel="xla", seed=0)
        classifier = flaxbert.BertTextClassifier(backbone, num_classes=3, seed=0)
        classifier.compile(optimizer=optax.sgd(0.1), mesh=(4, 2))
        rng = np.random.default_rng(0)
        x = {"token_ids": rng.integers(0, 101, (16, 12)).astype(np.int32), "segment_ids": np.zeros((16, 12), np.int32),
             "padding_mask": (np.arange(12) < rng.integers(6, 13, (16, 1))).astype(np.int32)}  # fmt: skip
        history = classifier.fit(x, rng.integers(0, 3, 16), batch_size=8, epochs=1, verbose=0, seed=0)
    finally:
        layers._layer_apply.cache_clear()
        shared_steps.clear()
    return history.history, classifier.params


def fit_through_kernel(monkeypatch, module, name: str, kernel) -> tuple[dict, dict]:
    """`fit_on_a_mesh` with the kernel `module` (`dropout_kernel`, `layer_norm_kernel`) applying everywhere and its
    entry point `name` replaced by `kernel` (the caller's: one that runs it interpreted, and records its calls)."""
    monkeypatch.setattr(module, "applies", lambda *args: True)
    monkeypatch.setattr(module, name, kernel)
    return fit_on_a_mesh()
