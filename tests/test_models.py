"""The functional core on tiny dims: parameter counts of every preset, logical axes, masks, dropout, dtypes."""

import dataclasses
import json
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaxbert
from flaxbert.models import (
    BertClassifier,
    BertConfig,
    BertEncoder,
    BertHeadConfig,
    DistilBertClassifier,
    DistilBertConfig,
    DistilBertEncoder,
    DistilBertHeadConfig,
)
from flaxbert.models.abstract import abstract_params, count_params, dummy_inputs
from flaxbert.models.layers import Projection
from flaxbert.models.params import ParamShapeError
from flaxbert.parallel import make_mesh, param_shardings
from flaxbert.presets.registry import PRESETS

TINY_BERT = BertConfig(
    vocabulary_size=101,
    num_layers=2,
    num_heads=2,
    hidden_dim=16,
    intermediate_dim=24,
    max_sequence_length=20,
    num_segments=3,
)
TINY_DISTIL = DistilBertConfig(
    vocabulary_size=101, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=24, max_sequence_length=20
)


def _keras_hub_count(cfg) -> int:
    """REFERENCE §1.7's closed form for keras-hub's parameter count."""
    v, h, i, n = cfg.vocabulary_size, cfg.hidden_dim, cfg.intermediate_dim, cfg.num_layers
    segments = cfg.num_segments if isinstance(cfg, BertConfig) else 0
    pooler = h * h + h if isinstance(cfg, BertConfig) else 0
    per_layer = 4 * (h * h + h) + 4 * h + h * i + i + i * h + h
    return v * h + cfg.max_sequence_length * h + segments * h + 2 * h + n * per_layer + pooler


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_counts_equal_keras_hub(name):
    preset = PRESETS[name]
    encoder = BertEncoder(preset.backbone) if preset.architecture == "bert" else DistilBertEncoder(preset.backbone)
    count = count_params(abstract_params(encoder, preset.backbone))
    assert count == preset.params == _keras_hub_count(preset.backbone)


def test_every_parameter_has_logical_axes_of_its_rank():
    head = BertHeadConfig(num_classes=3)
    boxed = abstract_params(BertClassifier(TINY_BERT, head), TINY_BERT)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    assert all(len(x.names) == x.value.ndim for x in leaves)
    specs = nn.get_partition_spec(boxed)
    attention = specs["backbone"]["transformer_layer_0"]["self_attention"]
    assert tuple(attention["query"]["kernel"]) == ("embed", "heads", "kv")
    assert tuple(attention["output"]["kernel"]) == ("heads", "kv", "embed")
    assert tuple(specs["backbone"]["token_embedding"]["embedding"]) == ("vocab", "embed")
    assert tuple(specs["logits"]["kernel"]) == ("embed", "classes")


def _init(module, cfg):
    return nn.unbox(module.init(jax.random.key(1), dummy_inputs(cfg))["params"])


def _batch(cfg, lengths=(9, 4, 1), length=9, seed=0):
    rng = np.random.default_rng(seed)
    mask = (np.arange(length)[None] < np.array(lengths)[:, None]).astype(np.int32)
    batch = {"token_ids": rng.integers(1, cfg.vocabulary_size, (len(lengths), length)) * mask, "padding_mask": mask}
    if isinstance(cfg, BertConfig):
        batch["segment_ids"] = rng.integers(0, cfg.num_segments, (len(lengths), length)) * mask
    return {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}


@pytest.mark.parametrize("cfg", [TINY_BERT, TINY_DISTIL], ids=["bert", "distil_bert"])
def test_padding_does_not_change_unpadded_positions(cfg):
    encoder = BertEncoder(cfg) if isinstance(cfg, BertConfig) else DistilBertEncoder(cfg)
    params = _init(encoder, cfg)
    short = _batch(cfg, length=9)
    long = {k: jnp.pad(v, ((0, 0), (0, 7))) for k, v in short.items()}
    out_short, out_long = encoder.apply({"params": params}, short), encoder.apply({"params": params}, long)
    if isinstance(cfg, BertConfig):
        np.testing.assert_allclose(out_long["pooled_output"], out_short["pooled_output"], atol=1e-6)
        out_short, out_long = out_short["sequence_output"], out_long["sequence_output"]
    real = np.asarray(short["padding_mask"], bool)
    np.testing.assert_allclose(np.asarray(out_long)[:, :9][real], np.asarray(out_short)[real], atol=1e-6)
    # and a padded key really is ignored: changing the token under it changes nothing
    poked = dict(short, token_ids=short["token_ids"].at[2, 5].set(7))
    poked_out = encoder.apply({"params": params}, poked)
    poked_out = poked_out["sequence_output"] if isinstance(cfg, BertConfig) else poked_out
    np.testing.assert_allclose(np.asarray(poked_out)[real], np.asarray(out_short)[real], atol=1e-6)


@pytest.mark.parametrize(
    "model,cfg",
    [
        (BertClassifier(TINY_BERT, BertHeadConfig(3)), TINY_BERT),
        (DistilBertClassifier(TINY_DISTIL, DistilBertHeadConfig(3, hidden_dim=8)), TINY_DISTIL),
    ],
    ids=["bert", "distil_bert"],
)
def test_dropout_only_in_training_and_keyed(model, cfg):
    params, batch = _init(model, cfg), _batch(cfg)
    eval_out = model.apply({"params": params}, batch)
    eval_again = model.apply({"params": params}, batch, train=False)
    np.testing.assert_array_equal(eval_out, eval_again)
    train = [model.apply({"params": params}, batch, train=True, rngs={"dropout": jax.random.key(k)}) for k in (0, 0, 1)]
    np.testing.assert_array_equal(train[0], train[1])
    assert not np.allclose(train[0], eval_out) and not np.allclose(train[0], train[2])
    assert eval_out.shape == (3, 3) and eval_out.dtype == jnp.float32


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
@pytest.mark.parametrize(
    "change,param,shapes",
    [
        (
            {"intermediate_dim": 32},
            "backbone/transformer_layer_0/feedforward_intermediate_dense/kernel",
            "(16, 24), but this",
        ),
        ({"max_sequence_length": 30}, "backbone/position_embedding/embedding", "(20, 16), but this"),
        ({"vocabulary_size": 99}, "backbone/token_embedding/embedding", "(101, 16), but this"),
        ({"hidden_dim": 8, "num_heads": 1}, "backbone/token_embedding/embedding", "(101, 16), but this"),
    ],
)
def test_params_of_another_config_are_refused_by_name(change, param, shapes, scan):
    """flaxbert's check, one error type, the param named from the model down (a layer's function is traced once
    for every layer and sees only its own names). Three layers: the classifier scans two, then runs one at [CLS]."""
    cfg = dataclasses.replace(TINY_BERT, num_layers=3)
    params = _init(BertClassifier(cfg, BertHeadConfig(3)), cfg)
    other = BertClassifier(dataclasses.replace(cfg, scan_layers=scan, **change), BertHeadConfig(3))
    with pytest.raises(ParamShapeError, match=f"the param {param} has shape {re.escape(shapes)}"):
        other.apply({"params": params}, _batch(cfg))


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_one_layer_of_another_shape_is_named_by_its_index(scan):
    cfg = dataclasses.replace(TINY_BERT, num_layers=3)  # the classifier scans layers 0 and 1, then runs 2 at [CLS]
    params = _init(BertClassifier(cfg, BertHeadConfig(3)), cfg)
    layer = params["backbone"]["transformer_layer_1"]["feedforward_output_dense"]
    layer["bias"] = np.zeros(17, np.float32)
    model = BertClassifier(dataclasses.replace(cfg, scan_layers=scan), BertHeadConfig(3))
    reason = "transformer_layer_0's is (16,)" if scan else "this model's config makes it (16,)"
    message = f"backbone/transformer_layer_1/feedforward_output_dense/bias has shape (17,), but {reason}"
    with pytest.raises(ParamShapeError, match=re.escape(message)):
        model.apply({"params": params}, _batch(TINY_BERT))
    layer["bias"] = None
    with pytest.raises(ParamShapeError, match=r"feedforward_output_dense/bias is a NoneType, not an array, but this"):
        BertClassifier(cfg, BertHeadConfig(3)).apply({"params": params}, _batch(TINY_BERT))
    layer["bias"] = [0.0] * 16  # a list of the right shape: taken as its array, the same outputs
    lists = BertClassifier(cfg, BertHeadConfig(3)).apply({"params": params}, _batch(TINY_BERT))
    layer["bias"] = np.zeros(16, np.float32)
    np.testing.assert_array_equal(lists, BertClassifier(cfg, BertHeadConfig(3)).apply({"params": params}, _batch(cfg)))


def test_distil_bert_head_hidden_dim_defaults_to_backbone_width():
    params = _init(DistilBertClassifier(TINY_DISTIL, DistilBertHeadConfig(5)), TINY_DISTIL)
    assert params["pooled_dense"]["kernel"].shape == (16, 16) and params["logits"]["kernel"].shape == (16, 5)
    params = _init(DistilBertClassifier(TINY_DISTIL, DistilBertHeadConfig(5, hidden_dim=8)), TINY_DISTIL)
    assert params["pooled_dense"]["kernel"].shape == (16, 8) and params["logits"]["kernel"].shape == (8, 5)


def test_initialisers_follow_keras_hub():
    params = _init(BertEncoder(TINY_BERT), TINY_BERT)
    kernel = np.asarray(params["transformer_layer_0"]["feedforward_intermediate_dense"]["kernel"])
    assert np.abs(kernel).max() <= 0.04 + 1e-7 and 0.01 < kernel.std() < 0.02  # truncated normal(0.02) at 2 sigma
    np.testing.assert_array_equal(params["transformer_layer_0"]["feedforward_intermediate_dense"]["bias"], 0)
    np.testing.assert_array_equal(params["embeddings_layer_norm"]["scale"], 1)
    other = np.asarray(params["transformer_layer_1"]["feedforward_intermediate_dense"]["kernel"])
    assert np.corrcoef(kernel.ravel(), other.ravel())[0, 1] < 0.1  # each layer its own draw


def test_the_random_init_draws_one_layer_whatever_the_depth():
    """The layers' params come from one layer's init mapped over them, so the init program's random draws do not grow
    with depth (unrolled, BERT-base's init was ~1,000 fusions for XLA to compile before the first step)."""

    def draws(num_layers):
        cfg = dataclasses.replace(TINY_BERT, num_layers=num_layers)
        init = jax.jit(lambda key: BertEncoder(cfg).init(key, dummy_inputs(cfg))["params"])
        return init.lower(jax.random.key(0)).as_text().count("call @")

    assert draws(2) == draws(6) > 0


def test_the_random_init_draws_one_layer_at_a_time_on_each_devices_share():
    """On a (2, 4) mesh the init's temporary memory stays under 1.5x each device's share of the params: the layers
    are drawn one after another, each on its shards (all at once, as a vmap, it was 3.6x)."""
    cfg = dataclasses.replace(TINY_BERT, vocabulary_size=1000, num_layers=6, num_heads=4, hidden_dim=256,
                              intermediate_dim=1024, max_sequence_length=128)  # fmt: skip
    encoder = BertEncoder(cfg)
    shardings = param_shardings(abstract_params(encoder, cfg), make_mesh(2, 4))
    init = jax.jit(lambda key: nn.unbox(encoder.init(key, dummy_inputs(cfg))["params"]), out_shardings=shardings)
    memory = init.lower(jax.random.key(0)).compile().memory_analysis()
    layers = 6 * (4 * 256 * 256 + 2 * 256 * 1024) * 4 // 4  # the layers' kernel bytes on each device (fsdp=4)
    assert memory.output_size_in_bytes > layers
    assert memory.temp_size_in_bytes < 1.5 * memory.output_size_in_bytes


def test_backbone_object_is_seeded_and_exposes_config():
    kwargs = dict(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=12
    )
    a, b, c = flaxbert.BertBackbone(**kwargs), flaxbert.BertBackbone(**kwargs), flaxbert.BertBackbone(**kwargs, seed=1)
    same = jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a.params, b.params)
    assert all(jax.tree.leaves(same))
    assert not np.array_equal(a.params["pooled_dense"]["kernel"], c.params["pooled_dense"]["kernel"])
    assert (a.hidden_dim, a.num_segments, a.dropout, a.config.activation) == (8, 2, 0.1, "gelu_approximate")
    assert a.count_params() == _keras_hub_count(a.config)
    assert a.get_config()["vocabulary_size"] == 50
    out = a(
        {"token_ids": np.ones((2, 5), int), "segment_ids": np.zeros((2, 5), int), "padding_mask": np.ones((2, 5), bool)}
    )
    assert out["sequence_output"].shape == (2, 5, 8) and out["pooled_output"].shape == (2, 8)


@pytest.mark.parametrize("cls", [flaxbert.BertBackbone, flaxbert.DistilBertBackbone], ids=lambda c: c.__name__)
def test_from_config_takes_what_get_config_returns(cls):
    """Keras' round trip: from_config(get_config()) raised TypeError (it took only a config object)."""
    backbone = cls(50, 1, 2, 8, 16, max_sequence_length=12, dtype="mixed_bfloat16", activation="relu")
    again = cls.from_config(json.loads(json.dumps(backbone.get_config())))
    assert type(again) is cls and again.config == backbone.config and again.config.dtype == "bfloat16"
    assert cls.from_config(backbone.config).config == backbone.config
    config = backbone.get_config()
    del config["num_layers"]
    with pytest.raises(ValueError, match=r"unknown keys \['hidden_size'\] and lacks \['num_layers'\]"):
        cls.from_config({**config, "hidden_size": 8})


def test_keras_dtype_policies_map_to_compute_dtypes():
    backbone = flaxbert.DistilBertBackbone(50, 1, 2, 8, 16, max_sequence_length=12, dtype="mixed_bfloat16")
    assert backbone.config.dtype == "bfloat16"
    assert backbone.params["token_embedding"]["embedding"].dtype == jnp.float32
    out = backbone({"token_ids": np.ones((1, 4), int), "padding_mask": np.ones((1, 4), int)})
    assert out.dtype == jnp.bfloat16


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", jnp.bfloat16, np.dtype(jnp.bfloat16)], ids=str)
@pytest.mark.parametrize("cfg", [TINY_BERT, TINY_DISTIL], ids=["bert", "distil_bert"])
def test_configs_store_the_compute_dtype_name(cfg, dtype):
    """The configs checked `dtype` through compute_dtype but kept it as given: "mixed_bfloat16" then failed inside
    flax's LayerNorm, and a jnp dtype class made get_config() unserialisable."""
    cfg = dataclasses.replace(cfg, dtype=dtype)
    assert cfg.dtype == "bfloat16" and cfg == dataclasses.replace(cfg, dtype="bfloat16")
    backbone_cls = flaxbert.BertBackbone if isinstance(cfg, BertConfig) else flaxbert.DistilBertBackbone
    assert json.loads(json.dumps(backbone_cls.from_config(cfg).get_config()))["dtype"] == "bfloat16"


@pytest.mark.parametrize("cfg", [TINY_BERT, TINY_DISTIL], ids=["bert", "distil_bert"])
def test_scanned_layers_equal_the_unrolled_loop_in_values_and_gradients(cfg):
    cfg = dataclasses.replace(cfg, num_layers=3)
    encoder_cls = BertEncoder if isinstance(cfg, BertConfig) else DistilBertEncoder
    inputs = dummy_inputs(cfg, batch_size=2, length=7)
    inputs["token_ids"] = jnp.arange(14).reshape(2, 7) * 5
    inputs["padding_mask"] = inputs["padding_mask"].at[1, 4:].set(0)
    params = nn.unbox(encoder_cls(cfg).init(jax.random.key(0), inputs)["params"])
    assert [k for k in params if k.startswith("transformer_layer")] == [f"transformer_layer_{i}" for i in range(3)]

    def loss(params, scan):
        encoder = encoder_cls(dataclasses.replace(cfg, scan_layers=scan, dropout=0.3))
        outputs = encoder.apply({"params": params}, inputs, train=True, rngs={"dropout": jax.random.key(4)})
        return jnp.sum(jnp.sin(jax.tree.leaves(outputs)[-1]))

    # Training, so that the dropout masks must match too (dropout 0.3 moves the loss by far more than the tolerance).
    (scanned, scanned_grads), (looped, looped_grads) = (jax.value_and_grad(loss)(params, s) for s in (True, False))
    np.testing.assert_allclose(scanned, looped, rtol=1e-5, atol=1e-6)  # a sum of ~100 sines, reordered
    for a, b in zip(jax.tree.leaves(scanned_grads), jax.tree.leaves(looped_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(b).max()))  # fp32 sums reordered


@pytest.mark.parametrize("scan", [False, True], ids=["looped", "scanned"])
@pytest.mark.parametrize("cfg", [TINY_BERT, TINY_DISTIL], ids=["bert", "distil_bert"])
def test_the_first_token_only_pass_is_the_whole_passes_first_row(cfg, scan):
    """What the classifier heads run: the last layer at position 0 alone gives the whole output's first row, in
    training too (the same dropout masks) and in its gradients; its pooled output is the whole pass's."""
    cfg = dataclasses.replace(cfg, num_layers=3, dropout=0.3, scan_layers=scan)
    encoder = (BertEncoder if isinstance(cfg, BertConfig) else DistilBertEncoder)(cfg)
    inputs = dummy_inputs(cfg, batch_size=2, length=7)
    inputs["token_ids"] = jnp.arange(14).reshape(2, 7) * 5
    inputs["padding_mask"] = inputs["padding_mask"].at[1, 4:].set(0)
    params = nn.unbox(encoder.init(jax.random.key(0), inputs)["params"])

    def outputs(params, first_token_only, train):
        rngs = {"dropout": jax.random.key(4)} if train else None
        out = encoder.apply({"params": params}, inputs, train, first_token_only, rngs=rngs)
        return out if isinstance(out, dict) else {"sequence_output": out}

    for train in (False, True):
        first, whole = (outputs(params, only, train) for only in (True, False))
        assert first["sequence_output"].shape == (2, 1, cfg.hidden_dim)
        np.testing.assert_allclose(first["sequence_output"], whole["sequence_output"][:, :1], rtol=1e-5, atol=1e-6)
        if "pooled_output" in whole:
            np.testing.assert_allclose(first["pooled_output"], whole["pooled_output"], rtol=1e-5, atol=1e-6)
    dropped = outputs(params, True, True)["sequence_output"]  # dropout 0.3 moves it by far more than the tolerance
    assert np.max(np.abs(dropped - outputs(params, True, False)["sequence_output"])) > 1e-2

    def loss(params, first_token_only):
        return jnp.sum(jnp.sin(outputs(params, first_token_only, True)["sequence_output"][:, 0]))

    first_grads, whole_grads = (jax.grad(loss)(params, only) for only in (True, False))
    for a, b in zip(jax.tree.leaves(first_grads), jax.tree.leaves(whole_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("cfg", [TINY_BERT, TINY_DISTIL], ids=["bert", "distil_bert"])
def test_the_classifiers_run_the_last_layer_at_cls_alone(cfg):
    """A classifier's compiled forward pass, head included, costs well under its encoder's whole pass (XLA's count):
    its last layer runs [CLS] alone (half of this 2-layer encoder's work, less the keys and values)."""
    inputs = dummy_inputs(cfg, batch_size=2, length=16)
    if isinstance(cfg, BertConfig):
        encoder, classifier = BertEncoder(cfg), BertClassifier(cfg, BertHeadConfig(num_classes=2))
    else:
        encoder, classifier = DistilBertEncoder(cfg), DistilBertClassifier(cfg, DistilBertHeadConfig(num_classes=2))
    params = nn.unbox(classifier.init(jax.random.key(0), inputs)["params"])

    def flops(module, params, **kwargs):
        apply = jax.jit(lambda p: module.apply({"params": p}, inputs, **kwargs))
        return apply.lower(params).compile().cost_analysis()["flops"]

    whole, first_token = (flops(encoder, params["backbone"], first_token_only=only) for only in (False, True))
    assert first_token < 0.8 * whole and flops(classifier, params) < 0.8 * whole  # ~0.7 each; the head is tiny


def test_the_train_step_traces_one_layer_and_scanned_compiles_one_whatever_the_depth():
    """The lowered program's matmuls do not grow with num_layers (one layer function, called or scanned, and the
    classifier's [CLS]-only last layer); compiled, the unrolled program has each layer's inlined, more than the
    scanned one's single loop body (compiled without dropout, which changes no matmul and is a third of the
    compile)."""

    def matmuls(num_layers, scan, compiled=False):
        dropout = 0.0 if compiled else TINY_BERT.dropout
        cfg = dataclasses.replace(TINY_BERT, num_layers=num_layers, scan_layers=scan, dropout=dropout)
        model = BertClassifier(cfg, BertHeadConfig(num_classes=2))
        params = nn.unbox(abstract_params(model, cfg))
        inputs = dummy_inputs(cfg, batch_size=2, length=8)

        def loss(p):
            return jnp.sum(model.apply({"params": p}, inputs, train=True, rngs={"dropout": jax.random.key(0)}))

        lowered = jax.jit(jax.grad(loss)).lower(params)
        return lowered.compile().as_text().count(" dot(") if compiled else lowered.as_text().count("dot_general")

    assert matmuls(2, scan=True) == matmuls(6, scan=True) == matmuls(2, scan=False) == matmuls(6, scan=False) > 0
    assert matmuls(3, scan=False, compiled=True) > matmuls(3, scan=True, compiled=True) > 0  # inlined vs one body


def test_scanned_dropout_repeats_per_key_and_changes_with_it():
    cfg = dataclasses.replace(TINY_BERT, dropout=0.5, scan_layers=True)
    inputs = dummy_inputs(cfg, batch_size=1, length=6)
    params = nn.unbox(BertEncoder(cfg).init(jax.random.key(0), inputs)["params"])

    def run(key=None):
        train = {"train": True, "rngs": {"dropout": key}} if key is not None else {}
        return BertEncoder(cfg).apply({"params": params}, inputs, **train)["sequence_output"]

    np.testing.assert_array_equal(run(jax.random.key(3)), run(jax.random.key(3)))
    assert not np.allclose(run(jax.random.key(3)), run(jax.random.key(4)))
    assert not np.allclose(run(jax.random.key(3)), run())


@pytest.mark.parametrize(
    ("features", "contract", "axes", "reference"),
    [
        ((24,), 1, ("embed", "mlp"), lambda init, dtype: nn.Dense(24, dtype=dtype, kernel_init=init)),
        (
            (2, 4),
            1,
            ("embed", "heads", "kv"),
            lambda init, dtype: nn.DenseGeneral((2, 4), dtype=dtype, kernel_init=init),
        ),
        (
            (8,),
            2,
            ("heads", "kv", "embed"),
            lambda init, dtype: nn.DenseGeneral(8, axis=(-2, -1), dtype=dtype, kernel_init=init),
        ),
    ],
)
@pytest.mark.parametrize(("dtype", "tolerance"), [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
def test_projection_is_flax_dense_in_params_values_and_gradients(features, contract, axes, reference, dtype, tolerance):
    # The encoder's dense layers flatten their operands to one 2-D matmul (XLA:CPU runs the 3-D weight gradient far
    # slower); they must stay flax's Dense / DenseGeneral: the same param tree and random draws, outputs (in the
    # compute dtype, bfloat16 included), gradients.
    init = jax.nn.initializers.truncated_normal(0.02)
    x = jax.random.normal(jax.random.key(1), (3, 5, 8) if contract == 1 else (3, 5, 2, 4))
    ours = Projection(features, axes, dtype, contract=contract)
    flax_layer = reference(init, dtype)
    params = nn.unbox(ours.init(jax.random.key(0), x))
    flax_params = flax_layer.init(jax.random.key(0), x)
    assert jax.tree.map(lambda p: (p.shape, p.dtype), params) == jax.tree.map(lambda p: (p.shape, p.dtype), flax_params)
    np.testing.assert_array_equal(params["params"]["kernel"], flax_params["params"]["kernel"])
    params = jax.tree.map(lambda p: p + 0.1, params)  # a nonzero bias, so the bias path is compared too

    def loss(layer, params, x):
        return jnp.sum(jnp.sin(layer.apply(params, x).astype(jnp.float32)))

    out, flax_out = ours.apply(params, x), flax_layer.apply(params, x)
    assert out.dtype == flax_out.dtype == dtype
    np.testing.assert_allclose(out.astype(np.float32), flax_out.astype(np.float32), rtol=tolerance, atol=tolerance)
    grads = jax.grad(loss, argnums=(1, 2))(ours, params, x)
    flax_grads = jax.grad(loss, argnums=(1, 2))(flax_layer, params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=10 * tolerance, atol=tolerance), grads, flax_grads)
