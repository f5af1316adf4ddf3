"""A bfloat16 train state keeps its Projections' params cast to bfloat16, written by the optimizer update: the same
steps as when the model casts them itself, bit for bit, with the casts sharded as their params."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxbert.models import (
    BertClassifier,
    BertConfig,
    BertHeadConfig,
    DistilBertClassifier,
    DistilBertConfig,
    DistilBertHeadConfig,
)
from flaxbert.models.abstract import abstract_params
from flaxbert.models.compute_params import compute_copies, projections, with_copies
from flaxbert.models.random_init import random_params
from flaxbert.parallel import make_mesh
from flaxbert.training import programs, steps
from flaxbert.training.state import TrainState

DIMS = dict(vocabulary_size=61, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=24, max_sequence_length=12,
            dropout=0.1, dtype="bfloat16")  # fmt: skip
MODELS = {
    "bert": BertClassifier(BertConfig(**DIMS), BertHeadConfig(num_classes=3, dropout=0.1)),
    "distil_bert": DistilBertClassifier(DistilBertConfig(**DIMS), DistilBertHeadConfig(num_classes=3, dropout=0.1)),
}


def _params(model):
    return jax.tree.map(jnp.asarray, random_params(abstract_params(model, model.backbone), seed=0))


def _batch(model, n=6, length=12):
    rng = np.random.default_rng(0)
    mask = (np.arange(length)[None] < rng.integers(3, length + 1, n)[:, None]).astype(np.int32)
    inputs = {"token_ids": rng.integers(1, 61, (n, length)).astype(np.int32) * mask, "padding_mask": mask}
    if isinstance(model.backbone, BertConfig):
        inputs["segment_ids"] = np.zeros((n, length), np.int32)
    return {"inputs": inputs, "label": rng.integers(0, 3, n).astype(np.int32), "weight": np.ones(n, np.float32),
            "mask": np.ones(n, np.float32)}  # fmt: skip


def _paths(tree) -> set[str]:
    return {jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_the_casts_are_every_projections_kernel_and_bias_and_nothing_else(arch):
    params = _params(MODELS[arch])
    copies = compute_copies(params, jnp.bfloat16)
    every = _paths(params)
    projections = {p for p in every if p.endswith(("['kernel']", "['bias']")) and "layer_norm" not in p}
    assert _paths(copies) == projections and len(projections) == 2 * (2 * 6 + 2)  # 6 a layer, the pooler, the logits
    for path, copy in jax.tree_util.tree_flatten_with_path(copies)[0]:
        original = functools.reduce(lambda node, key: node[key.key], path, params)
        assert copy.dtype == jnp.bfloat16 and copy.shape == original.shape
        np.testing.assert_array_equal(np.asarray(copy), np.asarray(original.astype(jnp.bfloat16)))
    merged = with_copies(params, copies)
    assert _paths(merged) == every
    assert {str(leaf.dtype) for leaf in jax.tree.leaves(merged)} == {"bfloat16", "float32"}
    assert compute_copies(params, "float32") is None and compute_copies(params, None) is None
    assert with_copies(params, None) is params


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_train_steps_on_the_states_casts_equal_the_models_own_casts_bit_for_bit(arch):
    """The reference state keeps no casts (no compute dtype): the model casts its float32 params itself, as every
    step did before the state kept them. Dropout on, AdamW, three steps."""
    model = MODELS[arch]
    step = jax.jit(functools.partial(steps.train_step, model=model, seed=3,
                                     loss_fn=steps.sparse_categorical_crossentropy))  # fmt: skip
    tx = optax.adamw(1e-2, weight_decay=0.01)
    kept = TrainState.create(_params(model), tx, compute_dtype="bfloat16")
    cast_inside = TrainState.create(_params(model), tx)
    assert cast_inside.compute_params is None and kept.compute_dtype == jnp.bfloat16
    batch = _batch(model)
    zeroed = kept.replace(compute_params=jax.tree.map(jnp.zeros_like, kept.compute_params))
    assert float(step(zeroed, batch)[1]["loss_sum"]) != float(step(kept, batch)[1]["loss_sum"])  # the model reads them
    for _ in range(3):
        kept, kept_metrics = step(kept, batch)
        cast_inside, inside_metrics = step(cast_inside, batch)
        assert jax.tree.map(float, kept_metrics) == jax.tree.map(float, inside_metrics)
    for name in ("params", "opt_state"):
        np.testing.assert_equal(jax.device_get(getattr(kept, name)), jax.device_get(getattr(cast_inside, name)))
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), kept.params, _params(model))
    assert all(jax.tree.leaves(moved))  # the steps trained every param
    # the update wrote the casts of the params it wrote
    np.testing.assert_equal(jax.device_get(kept.compute_params),
                            jax.device_get(compute_copies(kept.params, jnp.bfloat16)))  # fmt: skip


def test_the_casts_are_sharded_as_their_params_and_checkpoints_leave_them_out():
    model = MODELS["bert"]
    mesh, tx = make_mesh(2, 4), optax.adam(1e-3)
    abstract, shardings = programs.state_shardings(model, model.backbone, tx, mesh)
    layer = ("backbone", "transformer_layer_1", "feedforward_intermediate_dense")
    for name in ("kernel", "bias"):
        param = functools.reduce(lambda node, key: node[key], (*layer, name), shardings.params)
        cast = functools.reduce(lambda node, key: node[key], (*layer, name), shardings.compute_params)
        assert cast == param and cast.spec != ()  # sharded over fsdp, not replicated
        cast_shape = functools.reduce(lambda node, key: node[key], (*layer, name), abstract.compute_params)
        assert cast_shape.dtype == jnp.bfloat16
    state = programs.create_state(_params(model), tx, shardings)
    saved = state.saved()
    assert sorted(saved) == ["opt_state", "params", "step"]  # a checkpoint's names, as before the state kept casts
    assert sorted(abstract.saved()) == sorted(shardings.saved()) == sorted(saved)
    casts = jax.device_get(state.compute_params)
    recast = programs.restored_state(abstract, jax.tree.map(jnp.copy, saved), shardings)
    assert jax.tree.map(lambda a: a.sharding, recast.compute_params) == shardings.compute_params
    np.testing.assert_equal(jax.device_get(recast.compute_params), casts)
    np.testing.assert_equal(jax.device_get(recast.params), jax.device_get(state.params))


def test_a_16_bit_classifier_casts_its_params_once_for_every_predict_until_they_change(monkeypatch):
    """Each predict and evaluate cast every projection's params to the compute dtype again (~4.5 ms a call for a
    bfloat16 MiniLM-L6 on a CPU, a program over all of them). The casts are kept with the placed params: the same
    numbers without casting again, cast anew for new params, and released once the params change or a fit starts."""
    import gc
    import weakref

    import flaxbert

    backbone = flaxbert.BertBackbone(50, 1, 2, 8, 16, max_sequence_length=8, seed=0, dtype="bfloat16")
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, seed=0)
    ones = np.ones((4, 8), int)
    x = {"token_ids": ones, "segment_ids": 0 * ones, "padding_mask": ones}
    casts = []
    real = programs.model_params
    monkeypatch.setattr(programs, "model_params", lambda *args: casts.append(1) or real(*args))
    first = classifier.predict(x, batch_size=8, verbose=0)
    assert len(casts) == 1
    np.testing.assert_array_equal(classifier.predict(x, batch_size=8, verbose=0), first)
    assert len(casts) == 1  # not cast again
    kept = classifier._inference_step("predict")[1]
    kernel = kept["backbone"]["transformer_layer_0"]["feedforward_output_dense"]["kernel"]
    assert kernel.dtype == jnp.bfloat16
    cast = weakref.ref(kernel)
    del kept, kernel
    classifier.params = jax.tree.map(lambda a: np.asarray(a) * 2, classifier.params)
    doubled = classifier.predict(x, batch_size=8, verbose=0)
    assert len(casts) == 2 and not np.array_equal(doubled, first)  # new params: cast anew, and used
    gc.collect()
    assert cast() is None  # the old casts are not kept
    kept = classifier._inference_step("predict")[1]
    cast = weakref.ref(kept["backbone"]["transformer_layer_0"]["feedforward_output_dense"]["kernel"])
    del kept
    classifier.fit(x, [0, 1, 0, 1], batch_size=8, verbose=0)
    gc.collect()
    assert cast() is None  # a fit does not hold them while it trains


def test_predict_evaluate_and_validation_run_their_steps_on_the_casts_to_the_same_numbers(monkeypatch):
    """`predict` and `evaluate` give their steps the params cast once per call, and a fit's validation its train
    state's casts, instead of each step casting them again: the same numbers as steps on the float32 params, bit for
    bit, on a (2, 4) mesh; the casts sharded as their params; the fit's eval program the one `evaluate` runs."""
    import flaxbert
    from flaxbert.training import loops

    backbone = flaxbert.BertBackbone(61, 2, 2, 16, 24, max_sequence_length=12, dtype="bfloat16", seed=0)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=3, seed=0)
    classifier.compile(mesh=(2, 4))
    batch = _batch(MODELS["bert"], n=16)
    x, y = batch["inputs"], batch["label"]
    given = []  # (loop, the params it was given)

    def recorded(name, real):
        def loop(params, *args, **kwargs):
            given.append((name, params))
            return real(params, *args, **kwargs)

        return loop

    for name in ("predict", "evaluate"):
        monkeypatch.setattr(loops, name, recorded(name, getattr(loops, name)))
    logits = classifier.predict(x, batch_size=8, verbose=0)
    scores = classifier.evaluate(x, y, batch_size=8, verbose=0)
    predict_fn, shardings = classifier._steps("predict")
    eval_fn, _ = classifier._steps("eval")
    where = ("backbone", "transformer_layer_0", "feedforward_intermediate_dense", "kernel")
    for name, params in given:
        assert {str(leaf.dtype) for leaf in jax.tree.leaves(projections(params))} == {"bfloat16"}
        kernel = functools.reduce(lambda node, key: node[key], where, params)
        sharding = functools.reduce(lambda node, key: node[key], where, shardings)
        assert kernel.dtype == jnp.bfloat16 and kernel.sharding.is_equivalent_to(sharding, 2), name
    own_casts = jax.device_put(classifier.params, shardings)  # float32: the steps cast them, as before
    rows = flaxbert.parallel.batch_sharding(classifier.mesh)
    halves = [jax.device_put({k: v[i : i + 8] for k, v in x.items()}, rows) for i in (0, 8)]
    np.testing.assert_array_equal(logits, np.concatenate([jax.device_get(predict_fn(own_casts, h)) for h in halves]))
    sums = loops.device_zero_sums(classifier.mesh)
    for i, half in zip((0, 8), halves, strict=True):
        labels = {"label": y[i : i + 8], "weight": np.ones(8, np.float32), "mask": np.ones(8, np.float32)}
        sums = eval_fn(own_casts, sums, {"inputs": half, **jax.device_put(labels, rows)})
    assert scores == steps.summarize(jax.device_get(sums))
    given.clear()
    compiled = eval_fn._cache_size()
    history = classifier.fit(x, y, batch_size=8, verbose=0, validation_data=(x, y))
    assert [name for name, _ in given] == ["evaluate"]
    assert given[0][1]["backbone"]["transformer_layer_1"]["self_attention"]["query"]["kernel"].dtype == jnp.bfloat16
    assert eval_fn._cache_size() == compiled  # the validation ran the program evaluate compiled
    after = classifier.evaluate(x, y, batch_size=8, verbose=0)
    assert history.history["val_loss"] == [after["loss"]] and eval_fn._cache_size() == compiled
