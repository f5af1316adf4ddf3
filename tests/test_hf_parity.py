"""fp32 parity with Hugging Face transformers on random-init checkpoints of unusual shapes, in every file format."""

import json

import jax
import numpy as np
import pytest
from hf_factory import BERT_SHAPES, DISTIL_BERT_SHAPES, padded_batch, random_model, save, torch_inputs, torch_outputs

import flaxbert
from flaxbert.models import BertClassifier, DistilBertClassifier
from flaxbert.presets import hf_checkpoint

# Every checkpoint here is whole: a warning of encoder weights that have no place (beyond config.json's model) fails.
pytestmark = [pytest.mark.parity, pytest.mark.filterwarnings("error:.*have no place in the model")]
ATOL = 1e-5


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("fmt", ["safetensors", "sharded", "bin", "sharded_bin"])
@pytest.mark.parametrize("shape", list(BERT_SHAPES))
def test_bert_backbone_matches_transformers(tmp_path, shape, fmt):
    model = random_model("bert", BERT_SHAPES[shape])
    path = save(model, tmp_path / "ckpt", fmt, legacy_names=(fmt == "bin"))
    batch = padded_batch(model.config.vocab_size, model.config.type_vocab_size)
    want = torch_outputs(model, batch)
    backbone = flaxbert.BertBackbone.from_preset(path)
    got = backbone(batch)
    assert _max_diff(got["sequence_output"], want.last_hidden_state.numpy()) <= ATOL
    assert _max_diff(got["pooled_output"], want.pooler_output.numpy()) <= ATOL
    assert backbone.count_params() == sum(p.numel() for p in model.parameters())


def test_weights_beyond_the_configs_model_are_said_and_the_model_is_transformers_load(tmp_path):
    """config.json of 1 layer beside 2 layers' weights: transformers builds 1 layer and reports the rest as
    unexpected; flaxbert dropped them silently. Both build the same model; flaxbert now says what it left out."""
    import json

    import transformers

    path = save(random_model("bert", BERT_SHAPES["h48_heads3_l1_seg3"] | {"num_hidden_layers": 2}), tmp_path / "c")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 1}))
    reference = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    batch = padded_batch(reference.config.vocab_size, reference.config.type_vocab_size)
    with pytest.warns(UserWarning, match=r"16 encoder weights .* \(1 layers\), and are not used: encoder.layer.1"):
        backbone = flaxbert.BertBackbone.from_preset(path)
    assert _max_diff(backbone(batch)["sequence_output"], torch_outputs(reference, batch).last_hidden_state) <= ATOL


@pytest.mark.parametrize(
    "first, second", [("safetensors", "sharded"), ("sharded", "bin"), ("safetensors", "bin"), ("bin", "sharded_bin")]
)
def test_a_folder_with_two_checkpoints_loads_the_one_transformers_loads(tmp_path, first, second):
    """A folder can hold weights in two formats (a repo that added safetensors beside its pytorch_model.bin, say), and
    they need not be the same weights: flaxbert must read the file transformers prefers."""
    import shutil

    import transformers

    shape = BERT_SHAPES["h48_heads3_l1_seg3"]
    path = save(random_model("bert", shape, seed=0), tmp_path / "ckpt", first)
    other = save(random_model("bert", shape, seed=1), tmp_path / "other", second)
    for file in other.iterdir():
        if file.name != "config.json":
            shutil.copy(file, path / file.name)
    reference = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    batch = padded_batch(reference.config.vocab_size, reference.config.type_vocab_size)
    want = torch_outputs(reference, batch).last_hidden_state.numpy()
    assert _max_diff(flaxbert.BertBackbone.from_preset(path)(batch)["sequence_output"], want) <= ATOL


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("shape", list(DISTIL_BERT_SHAPES))
def test_distil_bert_backbone_matches_transformers(tmp_path, shape, fmt):
    model = random_model("distil_bert", DISTIL_BERT_SHAPES[shape])
    path = save(model, tmp_path / "ckpt", fmt)
    batch = padded_batch(model.config.vocab_size, 1)
    del batch["segment_ids"]
    want = torch_outputs(model, batch).last_hidden_state.numpy()
    got = flaxbert.DistilBertBackbone.from_preset(path)(batch)
    assert _max_diff(got, want) <= ATOL


def test_a_distil_bert_config_in_berts_generic_names_loads_as_transformers_reads_it(tmp_path):
    """transformers' DistilBertConfig reads hidden_size, num_attention_heads and num_hidden_layers as dim, n_heads and
    n_layers; flaxbert had called such a config.json incomplete."""
    model = random_model("distil_bert", DISTIL_BERT_SHAPES[next(iter(DISTIL_BERT_SHAPES))])
    path = save(model, tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    for alias, key in [("hidden_size", "dim"), ("num_attention_heads", "n_heads"), ("num_hidden_layers", "n_layers")]:
        config[alias] = config.pop(key)
    (path / "config.json").write_text(json.dumps(config))
    batch = padded_batch(model.config.vocab_size, 1)
    del batch["segment_ids"]
    want = torch_outputs(model, batch).last_hidden_state.numpy()
    assert _max_diff(flaxbert.DistilBertBackbone.from_preset(path)(batch), want) <= ATOL
    (path / "config.json").write_text(json.dumps({**config, "dim": config["hidden_size"] * 2}))
    with pytest.raises(ValueError, match=rf"sets both dim={config['hidden_size'] * 2} and "
                                         rf"hidden_size={config['hidden_size']}, which transformers"):  # fmt: skip
        flaxbert.DistilBertBackbone.from_preset(path)


@pytest.mark.parametrize(
    "kind, activation",
    [("bert", "gelu"), ("bert", "gelu_pytorch_tanh"), ("bert", "gelu_fast"), ("distil_bert", "gelu")],
)
def test_a_config_without_the_fields_at_transformers_defaults_loads_as_transformers_reads_it(
    tmp_path, kind, activation
):
    """Configs written by older transformers leave out fields at their defaults (`layer_norm_eps`, `hidden_act`,
    `type_vocab_size`, ...), and transformers fills them in; flaxbert must fill in the same values (every test
    checkpoint written today has them all). The feed-forward input kernels are scaled up so that its activations reach
    where the GELU forms differ, as do LayerNorm epsilons of 1e-12 and 1e-6."""
    import torch
    import transformers

    distil = kind == "distil_bert"
    shape = dict(DISTIL_BERT_SHAPES["h48_heads3_l1"] if distil else BERT_SHAPES["h48_heads3_l1_seg3"])
    shape.pop("type_vocab_size", None)
    shape["activation" if distil else "hidden_act"] = activation
    model = random_model(kind, shape)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("intermediate.dense.weight", "ffn.lin1.weight")):
                param.mul_(4.0)
    path = save(model, tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    defaults = type(model.config)().to_dict()
    kept = {k: v for k, v in config.items() if k == "model_type" or k not in defaults or v != defaults[k]}
    left_out = {"activation", "dropout"} if distil else {"layer_norm_eps", "type_vocab_size", "hidden_dropout_prob"}
    assert left_out <= set(config) - set(kept)
    assert (("activation" if distil else "hidden_act") in kept) == (activation != "gelu")
    (path / "config.json").write_text(json.dumps(kept))
    reference_cls = transformers.DistilBertModel if distil else transformers.BertModel
    reference = reference_cls.from_pretrained(path, attn_implementation="eager").eval()
    batch = padded_batch(reference.config.vocab_size, 1 if distil else reference.config.type_vocab_size)
    if distil:
        del batch["segment_ids"]
    want = torch_outputs(reference, batch)
    backbone = (flaxbert.DistilBertBackbone if distil else flaxbert.BertBackbone).from_preset(path)
    assert backbone.config.dropout == (reference.config.dropout if distil else reference.config.hidden_dropout_prob)
    got = backbone(batch)
    if distil:
        assert _max_diff(got, want.last_hidden_state.numpy()) <= ATOL
    else:
        assert _max_diff(got["sequence_output"], want.last_hidden_state.numpy()) <= ATOL
        assert _max_diff(got["pooled_output"], want.pooler_output.numpy()) <= ATOL


@pytest.mark.parametrize("shape", list(BERT_SHAPES))
def test_bert_classifier_head_matches_transformers(tmp_path, shape):
    model = random_model("bert_classifier", BERT_SHAPES[shape], num_labels=3)
    path = save(model, tmp_path / "ckpt", "safetensors")
    batch = padded_batch(model.config.vocab_size, model.config.type_vocab_size)
    want = torch_outputs(model, batch).logits.numpy()
    cfg, head, params = hf_checkpoint.load_classifier(path)
    assert head.num_classes == 3 and head.dropout == model.config.hidden_dropout_prob
    got = BertClassifier(cfg, head).apply({"params": params}, batch)
    assert got.shape == (3, 3)
    assert _max_diff(got, want) <= ATOL
    # The same directory (weights under the `bert.` prefix) also loads as a bare backbone.
    pooled = flaxbert.BertBackbone.from_preset(path)(batch)["pooled_output"]
    assert _max_diff(pooled, model.bert(**torch_inputs(batch)).pooler_output.detach().numpy()) <= ATOL


@pytest.mark.parametrize("shape", list(DISTIL_BERT_SHAPES))
def test_distil_bert_classifier_head_matches_transformers(tmp_path, shape):
    model = random_model("distil_bert_classifier", DISTIL_BERT_SHAPES[shape], num_labels=4)
    path = save(model, tmp_path / "ckpt", "bin")
    batch = padded_batch(model.config.vocab_size, 1)
    del batch["segment_ids"]
    want = torch_outputs(model, batch).logits.numpy()
    cfg, head, params = hf_checkpoint.load_classifier(path)
    assert (head.num_classes, head.dropout) == (4, model.config.seq_classif_dropout)
    got = DistilBertClassifier(cfg, head).apply({"params": params}, batch)
    assert _max_diff(got, want) <= ATOL


def test_softmax_head_returns_probabilities(tmp_path):
    model = random_model("bert_classifier", BERT_SHAPES["h48_heads3_l1_seg3"], num_labels=3)
    path = save(model, tmp_path / "ckpt")
    batch = padded_batch(model.config.vocab_size, 3)
    cfg, head, params = hf_checkpoint.load_classifier(path)
    import dataclasses

    import torch

    probs = BertClassifier(cfg, dataclasses.replace(head, activation="softmax")).apply({"params": params}, batch)
    want = torch.softmax(torch_outputs(model, batch).logits, -1).numpy()
    assert _max_diff(probs, want) <= ATOL
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-6)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_checkpoints_load_as_float32(tmp_path, half, fmt):
    """Checkpoints stored in float16 / bfloat16 (many on the Hub) load with their weights cast to float32, exactly:
    the logits are those of the same weights in float32 in transformers (a params dtype check refused them once)."""
    import torch

    stored = random_model("bert_classifier", BERT_SHAPES["h48_heads3_l1_seg3"]).to(getattr(torch, half))
    path = save(stored, tmp_path / "ckpt", fmt)
    batch = padded_batch(stored.config.vocab_size, stored.config.type_vocab_size)
    want = torch_outputs(stored.float(), batch).logits.numpy()
    classifier = flaxbert.BertTextClassifier.from_preset(path, preprocessor=None)
    assert _max_diff(classifier.predict(batch, verbose=0), want) <= ATOL
    assert {str(leaf.dtype) for leaf in jax.tree.leaves(classifier.params)} == {"float32"}
    backbone = flaxbert.BertBackbone.from_preset(path)
    assert {str(leaf.dtype) for leaf in jax.tree.leaves(backbone.params)} == {"float32"}


@pytest.mark.parametrize("kind", ["bert", "distil_bert"])
def test_a_training_steps_loss_and_every_gradient_match_transformers_backward_pass(tmp_path, kind):
    """The forward parity tests run inference; here the training path, differentiated: flaxbert's model applied with
    train=True (dropout off in the checkpoint, since the two frameworks draw other masks) and fit's cross-entropy,
    against transformers' in train mode and torch's backward pass. Two layers with the erf GELU both HF BERT and
    DistilBERT use, padded rows, three classes; each gradient is mapped to transformers' names by the export's own
    layout (`hf_convert.state_dict_from_params`)."""
    import torch

    from flaxbert.presets import hf_convert
    from flaxbert.training import steps

    if kind == "bert":
        shape = dict(BERT_SHAPES["h48_heads3_l1_seg3"], num_hidden_layers=2, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)  # fmt: skip
    else:
        shape = dict(DISTIL_BERT_SHAPES["h48_heads3_l1"], n_layers=2, dropout=0.0, attention_dropout=0.0,
                     seq_classif_dropout=0.0)  # fmt: skip
    model = random_model(f"{kind}_classifier", shape, num_labels=3).train()
    path = save(model, tmp_path / "ckpt", "safetensors")
    batch = padded_batch(model.config.vocab_size, 3 if kind == "bert" else 1)
    if kind == "distil_bert":
        del batch["segment_ids"]
    labels = np.array([2, 0, 1])
    want_loss = torch.nn.functional.cross_entropy(model(**torch_inputs(batch)).logits, torch.as_tensor(labels))
    want_loss.backward()
    want = {name: p.grad.numpy() for name, p in model.named_parameters()}

    cfg, head, params = hf_checkpoint.load_classifier(path)
    module = (BertClassifier if kind == "bert" else DistilBertClassifier)(cfg, head)

    def loss(params):
        logits = module.apply({"params": params}, batch, train=True, rngs={"dropout": jax.random.key(0)})
        return steps.sparse_categorical_crossentropy(logits, labels).mean()  # the loss fit trains with

    got_loss, grads = jax.value_and_grad(loss)(params)
    np.testing.assert_allclose(got_loss, want_loss.item(), rtol=1e-6)
    got = hf_convert.state_dict_from_params(jax.tree.map(np.asarray, grads), cfg, with_head=True)
    assert set(got) == set(want)
    scale = max(np.abs(g).max() for g in want.values())
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-6 * scale, err_msg=name)
