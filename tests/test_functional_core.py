"""The functional core as a JAX user calls it (`model.apply`, the pure steps): what a traced model can check it
refuses in flaxbert's words, and what it cannot see (values under jit) shows as NaN rather than as another row's
numbers. transformers, the reference, raises on an out-of-range id."""

import dataclasses
import functools

import jax
import numpy as np
import optax
import pytest
from hf_factory import BERT_SHAPES, random_model, save

from flaxbert.models import (
    BertClassifier,
    BertConfig,
    BertEncoder,
    BertHeadConfig,
    DistilBertClassifier,
    DistilBertConfig,
    DistilBertEncoder,
    DistilBertHeadConfig,
    check_inputs,
)
from flaxbert.models.params import ParamShapeError
from flaxbert.presets import hf_checkpoint
from flaxbert.training import steps
from flaxbert.training.state import TrainState

BERT = BertConfig(vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=24,
                  max_sequence_length=12)  # fmt: skip
DISTIL = DistilBertConfig(vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=24,
                          max_sequence_length=12)  # fmt: skip


def _batch(rows=2, length=6, segments=True):
    rng = np.random.default_rng(0)
    batch = {"token_ids": rng.integers(1, 40, (rows, length)).astype(np.int32),
             "padding_mask": np.ones((rows, length), np.int32)}  # fmt: skip
    if segments:
        batch["segment_ids"] = np.zeros((rows, length), np.int32)
    return batch


@pytest.fixture(scope="module")
def bert():
    model = BertClassifier(BERT, BertHeadConfig(3))
    return model, model.init(jax.random.key(0), _batch())["params"]


def test_an_out_of_range_id_makes_its_row_nan_instead_of_reading_another_row(bert):
    """jnp.take read id -1 as the last row (numpy's negative indexing): the same logits as id 39, with no sign.
    Every id outside [0, vocabulary_size) now reads NaN, so its row's outputs are NaN; the other rows are untouched."""
    model, params = bert
    apply = jax.jit(model.apply)
    clean = _batch()
    want = np.asarray(apply({"params": params}, clean))
    for bad in (-1, -40, 40, 1000):
        ids = clean["token_ids"].copy()
        ids[0, 3] = bad
        got = np.asarray(apply({"params": params}, {**clean, "token_ids": ids}))
        assert np.isnan(got[0]).all(), bad
        np.testing.assert_array_equal(got[1], want[1])
    segments = clean["segment_ids"].copy()
    segments[1, 2] = -1  # num_segments=2: was read as segment 1
    got = np.asarray(apply({"params": params}, {**clean, "segment_ids": segments}))
    assert np.isnan(got[1]).all() and not np.isnan(got[0]).any()
    negative = np.where(clean["token_ids"] == clean["token_ids"][0, 0], -1, 1)
    with pytest.raises(ValueError, match=r"token_ids must be in \[0, 40\) \(vocabulary_size=40\); found values from"):
        check_inputs({**clean, "token_ids": negative}, BERT)  # on the host, before any of it reaches the model


def test_one_segment_models_read_segment_zero_only():
    """With num_segments=1 every segment id read the one row (flax's nn.Embed broadcasts it): a pair's second
    sentence (segment 1) ran as if it were the first, where transformers raises."""
    cfg = dataclasses.replace(BERT, num_segments=1, num_layers=1)
    model = BertEncoder(cfg)
    params = model.init(jax.random.key(0), _batch())["params"]
    clean = _batch()
    pooled = np.asarray(model.apply({"params": params}, clean)["pooled_output"])
    segments = clean["segment_ids"].copy()
    segments[0, -1] = 1
    got = np.asarray(model.apply({"params": params}, {**clean, "segment_ids": segments})["pooled_output"])
    assert np.isnan(got[0]).all()
    np.testing.assert_array_equal(got[1], pooled[1])


def test_logits_and_gradients_match_transformers_with_the_new_lookups(tmp_path):
    """The lookups now gather without wrapping negative ids: for in-range ids, transformers' logits and the
    embedding tables' gradients (torch autograd) are what they were."""
    import torch

    shapes = BERT_SHAPES["h48_heads3_l1_seg3"]
    hf = random_model("bert_classifier", shapes)
    cfg, head, params = hf_checkpoint.load_classifier(save(hf, tmp_path / "bert"))
    model = BertClassifier(cfg, head)
    rng = np.random.default_rng(1)
    batch = {"token_ids": rng.integers(0, cfg.vocabulary_size, (3, 7)).astype(np.int32),
             "segment_ids": rng.integers(0, cfg.num_segments, (3, 7)).astype(np.int32),
             "padding_mask": np.array([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4], np.int32)}  # fmt: skip
    labels = np.array([0, 1, 1])

    def loss(params):
        logits = model.apply({"params": params}, batch)
        return steps.sparse_categorical_crossentropy(logits, labels).sum(), logits

    (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
    hf.zero_grad()
    out = hf(input_ids=torch.tensor(batch["token_ids"], dtype=torch.long),
             token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long),
             attention_mask=torch.tensor(batch["padding_mask"]))  # fmt: skip
    torch.nn.functional.cross_entropy(out.logits, torch.tensor(labels), reduction="sum").backward()
    np.testing.assert_allclose(np.asarray(logits), out.logits.detach().numpy(), atol=1e-5)
    embeddings = hf.bert.embeddings
    tables = {"token_embedding": embeddings.word_embeddings, "segment_embedding": embeddings.token_type_embeddings}
    for ours, theirs in tables.items():
        np.testing.assert_allclose(np.asarray(grads["backbone"][ours]["embedding"]), theirs.weight.grad.numpy(),
                                   atol=1e-6)  # fmt: skip


BAD_BATCHES = [
    (lambda b: {**b, "padding_mask": b["padding_mask"][:1]},
     r"inputs\['padding_mask'\] has shape \(1, 6\); every input must be \[batch, length\] like token_ids \(2, 6\)"),
    (lambda b: {**b, "segment_ids": np.int32(0)}, r"inputs\['segment_ids'\] has shape \(\); every input must be"),
    (lambda b: {**b, "padding_mask": b["padding_mask"].astype(np.float32)},
     r"inputs\['padding_mask'\] must hold integers \(1 for tokens, 0 for padding; bool is taken too\): pass "
     r"mask.astype\(int\), got dtype float32"),
    (lambda b: {"input_ids": b["token_ids"], "attention_mask": b["padding_mask"], "token_type_ids": b["segment_ids"]},
     r"missing \['token_ids', 'segment_ids', 'padding_mask'\].* transformers' names are flaxbert's \{'input_ids': "
     r"'token_ids', 'attention_mask': 'padding_mask', 'token_type_ids': 'segment_ids'\}"),
    (lambda b: {k: v for k, v in b.items() if k != "segment_ids"}, r"missing \['segment_ids'\], unexpected \[\]"),
    (lambda b: {**b, "label": np.zeros(2)}, r"unexpected \['label'\]"),
    (lambda b: (b["token_ids"], b["padding_mask"]), r"the model takes a dict of \[batch, length\] integer arrays"),
    (lambda b: {**b, "token_ids": b["token_ids"].tolist()}, r"inputs\['token_ids'\] is a list; pass an array"),
    (lambda b: {k: v[:, :0] for k, v in b.items()}, r"inputs are empty \(shape \(2, 0\)\)"),
    (lambda b: {k: v[None] for k, v in b.items()}, r"inputs\['token_ids'\] has shape \(1, 2, 6\)"),
    (lambda b: {k: np.tile(v, 3) for k, v in b.items()}, r"token_ids has length 18, longer than max_sequence_length"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD_BATCHES)
def test_a_batch_the_model_cannot_read_is_refused_in_words_jitted_or_not(bert, change, message):
    """A [1, L] padding_mask broadcast one row's mask over the batch and a float mask counted 0.5 as a token, without
    an error; the rest failed inside jax (KeyError 'token_ids', incompatible shapes for broadcasting, ...)."""
    model, params = bert
    for apply in (model.apply, jax.jit(model.apply)):
        with pytest.raises(ValueError, match=message):
            apply({"params": params}, change(_batch()))


def test_distil_bert_refuses_segment_ids_it_would_ignore():
    model = DistilBertEncoder(DISTIL)
    params = model.init(jax.random.key(0), _batch(segments=False))["params"]
    with pytest.raises(ValueError, match=r"unexpected \['segment_ids'\]\. DistilBERT takes no segment_ids"):
        model.apply({"params": params}, _batch())


def test_params_of_another_depth_are_refused_not_run_on_the_first_layers(bert):
    """Params of a 2-layer model given a 1-layer config ran its first layer alone (other logits, no error); a
    1-layer model's params given a 2-layer config failed with a bare KeyError."""
    model, params = bert
    shallow = BertClassifier(dataclasses.replace(BERT, num_layers=1), BertHeadConfig(3))
    for scan in (False, True):
        deeper_cfg = dataclasses.replace(BERT, num_layers=1, scan_layers=scan)
        with pytest.raises(ParamShapeError, match=r"backbone/transformer_layer_\* holds 2 layers \(also "
                                                  r"\['transformer_layer_1'\]\), but this model's config has "
                                                  r"num_layers=1"):  # fmt: skip
            BertClassifier(deeper_cfg, BertHeadConfig(3)).apply({"params": params}, _batch())
    shallow_params = shallow.init(jax.random.key(0), _batch())["params"]
    with pytest.raises(ParamShapeError, match=r"holds 1 layer \(missing \['transformer_layer_1'\]\), but this "
                                              r"model's config has num_layers=2"):  # fmt: skip
        model.apply({"params": shallow_params}, _batch())


def test_configs_of_the_other_architecture_are_named():
    """A DistilBertHeadConfig given to BertClassifier ran with its hidden_dim ignored; a DistilBertConfig given to
    BertEncoder failed on a missing field (AttributeError 'num_segments')."""
    cases = [
        (BertClassifier(BERT, DistilBertHeadConfig(3, hidden_dim=8)), _batch(),
         r"BertClassifier takes backbone: BertConfig, head: BertHeadConfig; got head=DistilBertHeadConfig"),
        (DistilBertClassifier(BERT, BertHeadConfig(3)), _batch(segments=False),
         r"got backbone=BertConfig, head=BertHeadConfig"),
        (BertEncoder(DISTIL), _batch(), r"BertEncoder takes cfg: BertConfig; got cfg=DistilBertConfig"),
    ]  # fmt: skip
    for module, batch, message in cases:
        with pytest.raises(TypeError, match=message):
            module.init(jax.random.key(0), batch)


def test_a_state_made_for_another_compute_dtype_is_refused_by_the_step(bert):
    """TrainState.create(..., compute_dtype="bfloat16") with a float32 model fed the model bfloat16-rounded
    weights: the step ran, 4e-4 away from a float32 step."""
    model, params = bert
    batch = {"inputs": _batch(), "label": np.array([0, 2]), "weight": np.ones(2, np.float32),
             "mask": np.ones(2, np.float32)}  # fmt: skip
    step = functools.partial(steps.train_step, model=model, seed=0, loss_fn=steps.sparse_categorical_crossentropy)
    state = TrainState.create(params, optax.sgd(0.1), compute_dtype="bfloat16")
    with pytest.raises(ValueError, match=r"the train state was made for compute dtype bfloat16, the model computes in "
                                         r"float32: make the state with TrainState.create\(params, tx, "
                                         r"compute_dtype=cfg.dtype\)"):  # fmt: skip
        jax.jit(step)(state, batch)
    state, metrics = jax.jit(step)(TrainState.create(params, optax.sgd(0.1), compute_dtype=BERT.dtype), batch)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss_sum"]))


@pytest.mark.parametrize("from_logits", [True, False])
def test_a_label_outside_the_classes_gives_a_nan_loss_not_another_classs(from_logits):
    """Label -1 read the last class (a finite loss of the wrong class); the other rows' losses are unchanged."""
    outputs = jax.nn.softmax(np.array([[1.0, 2.0, 0.5], [0.3, 0.1, 2.0]], np.float32)) if not from_logits else (
        np.array([[1.0, 2.0, 0.5], [0.3, 0.1, 2.0]], np.float32))  # fmt: skip
    loss = functools.partial(steps.sparse_categorical_crossentropy, from_logits=from_logits)
    want = np.asarray(loss(outputs, np.array([2, 2])))
    for bad in (-1, 3):
        got = np.asarray(jax.jit(loss)(outputs, np.array([bad, 2])))
        assert np.isnan(got[0]) and got[1] == want[1], (bad, got)
