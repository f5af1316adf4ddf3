"""Bad input and bad checkpoints fail with flaxbert's own message, naming what is wrong and how to fix it."""

import dataclasses
import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_factory import BERT_SHAPES, DISTIL_BERT_SHAPES, random_model, save

import flaxbert
from flaxbert.models import BertConfig, BertHeadConfig, DistilBertConfig, DistilBertHeadConfig
from flaxbert.presets import hf_checkpoint

SMALL = BERT_SHAPES["h48_heads3_l1_seg3"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save(random_model("bert", SMALL), tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def backbone(bert_dir):
    return flaxbert.BertBackbone.from_preset(bert_dir)


def _inputs(length=5, **overrides):
    batch = {
        "token_ids": np.ones((2, length), int),
        "segment_ids": np.zeros((2, length), int),
        "padding_mask": np.ones((2, length), int),
    }
    return {**batch, **overrides}


def test_directory_without_config_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        flaxbert.BertBackbone.from_preset(tmp_path)


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type 'roberta' is not supported"):
        flaxbert.BertBackbone.from_preset(tmp_path)


def test_configs_flaxbert_cannot_reproduce_or_read_are_refused(tmp_path, bert_dir):
    """A decoder BERT (causal attention) once loaded silently as an encoder, with other numbers (2.7e-4 in logits)."""
    saved = json.loads((bert_dir / "config.json").read_text())
    for change, error in [
        ({"is_decoder": True}, "is_decoder / add_cross_attention is set"),
        ({"add_cross_attention": True}, "is_decoder / add_cross_attention is set"),
        ({"position_embedding_type": "relative_key"}, "'relative_key' is not supported"),
        ({"hidden_size": None}, "config.json lacks 'hidden_size', which a 'bert' config needs"),
        # values flaxbert's config refuses, named by their transformers key (they were named by flaxbert's field,
        # and a list activation was a TypeError from a dict lookup)
        (
            {"hidden_size": "32"},
            r"config.json's hidden_size='32' does not describe a model flaxbert builds: .*"
            r"\(flaxbert's hidden_dim is transformers' hidden_size\)",
        ),
        ({"type_vocab_size": 0}, "config.json's type_vocab_size=0 does not describe"),
        # a width the heads do not split: named in transformers' keys, both of them (it was flaxbert's words alone)
        (
            {"num_attention_heads": 5},
            r"config.json's hidden_size=48 does not describe .*must be divisible by num_heads.*\(flaxbert's "
            r"hidden_dim is transformers' hidden_size, its num_heads is transformers' num_attention_heads\)",
        ),
        ({"hidden_dropout_prob": 1.0}, r"config.json's hidden_dropout_prob=1.0 does not describe .*in \[0, 1\)"),
        ({"hidden_act": ["gelu"]}, r"activation \['gelu'\] is not supported; expected one of"),
    ]:
        config = {k: v for k, v in {**saved, **change}.items() if v is not None}
        (tmp_path / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=error):
            flaxbert.BertBackbone.from_preset(tmp_path, load_weights=False)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json holds a JSON list, not an object"):
        flaxbert.TextClassifier.from_preset(tmp_path)


def test_distil_bert_checkpoint_given_to_bert_backbone(tmp_path):
    path = save(random_model("distil_bert", DISTIL_BERT_SHAPES["h48_heads3_l1"]), tmp_path / "d")
    with pytest.raises(ValueError, match="holds a distil_bert checkpoint; load it with DistilBertBackbone"):
        flaxbert.BertBackbone.from_preset(path)


def test_missing_weight_is_named(tmp_path):
    model = random_model("bert", SMALL)
    path = save(model, tmp_path / "ckpt", "bin")
    import torch

    state = torch.load(path / "pytorch_model.bin")
    del state["encoder.layer.0.intermediate.dense.weight"]
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(
        ValueError,
        match=r"'encoder.layer.0.intermediate.dense.weight' \(flaxbert parameter "
        r"transformer_layer_0/feedforward_intermediate_dense/kernel\) is missing",
    ):
        flaxbert.BertBackbone.from_preset(path)


def test_weight_of_the_wrong_shape_is_named(tmp_path):
    model = random_model("bert", SMALL)
    path = save(model, tmp_path / "ckpt", "bin")
    import torch

    state = torch.load(path / "pytorch_model.bin")
    state["pooler.dense.bias"] = torch.zeros(47)
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pooled_dense/bias has shape \(47,\), expected \(48,\)"):
        flaxbert.BertBackbone.from_preset(path)
    state["pooler.dense.bias"] = torch.zeros(48)
    state["encoder.layer.0.attention.self.query.weight"] = torch.zeros(48)  # 1-D: an IndexError from a reshape
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"'encoder.layer.0.attention.self.query.weight' has shape \(48,\), which"):
        flaxbert.BertBackbone.from_preset(path)


def test_truncated_weight_file_is_named(tmp_path, bert_dir):
    path = tmp_path / "ckpt"
    path.mkdir()
    (path / "config.json").write_text((bert_dir / "config.json").read_text())
    data = (bert_dir / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        flaxbert.BertBackbone.from_preset(path)
    (path / "model.safetensors").unlink()
    (path / "pytorch_model.bin").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="pytorch_model.bin is not a readable PyTorch checkpoint"):
        flaxbert.BertBackbone.from_preset(path)
    import torch

    # A valid file of torch < 1.6's format is no corruption: it was reported as one ("download it again").
    torch.save({"w": torch.ones(2)}, path / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"pytorch_model.bin is in the legacy PyTorch format \(torch < 1.6"):
        flaxbert.BertBackbone.from_preset(path)


def test_directory_without_weights(tmp_path, bert_dir):
    (tmp_path / "config.json").write_text((bert_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="has no weights: looked for model.safetensors"):
        flaxbert.BertBackbone.from_preset(tmp_path)
    # ... unless no weights are wanted: then only config.json is read.
    assert flaxbert.BertBackbone.from_preset(tmp_path, load_weights=False).config.num_segments == 3


_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
_TINY_CONFIG = dict(model_type="bert", vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=8, max_position_embeddings=16)  # fmt: skip


def test_damaged_transformers_side_files_are_named(tmp_path):
    """They raised a bare JSONDecodeError, KeyError or AttributeError (a weight_map that is a list)."""
    (tmp_path / "config.json").write_text(json.dumps(_TINY_CONFIG))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": ["model.safetensors"]}))
    with pytest.raises(ValueError, match=r"model.safetensors.index.json: 'weight_map' is a JSON list, not an object"):
        flaxbert.BertBackbone.from_preset(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": 1}}))
    with pytest.raises(ValueError, match="'weight_map' must map each weight name to a file name"):
        flaxbert.BertBackbone.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{")
    with pytest.raises(ValueError, match=r"tokenizer.json is not valid JSON \(.*\); the file is corrupt"):
        flaxbert.BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": []}))
    with pytest.raises(ValueError, match="tokenizer.json lacks 'model'"):
        flaxbert.BertTokenizer.from_preset(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(_VOCAB) + "\n")  # beside vocab.txt, tokenizer.json is read too
    with pytest.raises(ValueError, match="tokenizer.json lacks 'model'"):
        flaxbert.BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "tokenizer_config.json").write_text("{")
    with pytest.raises(ValueError, match="tokenizer_config.json is not valid JSON"):
        flaxbert.BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[]")
    with pytest.raises(ValueError, match="tokenizer_config.json holds a JSON list, not an object"):
        flaxbert.BertTokenizer.from_preset(tmp_path)


def test_bare_encoder_has_no_classifier_head(bert_dir):
    with pytest.raises(ValueError, match="has no classification head"):
        hf_checkpoint.load_classifier(bert_dir)


def test_a_classifier_whose_index_leaves_out_the_head_is_called_incomplete(tmp_path):
    """Its config.json names BertForSequenceClassification: it was called a bare encoder to attach a new head to."""
    directory = save(random_model("bert_classifier", BERT_SHAPES["h48_heads3_l1_seg3"]), tmp_path, "sharded")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["classifier.weight"]  # a shard left out of the index and the copy
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shard}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    (directory / shard).unlink()
    assert any(k.startswith("bert.encoder.") for k in index["weight_map"])  # the encoder is all there
    with pytest.raises(ValueError, match=r"config.json names BertForSequenceClassification, but its weights hold no "
                                         r"classification head .*the checkpoint is incomplete"):  # fmt: skip
        flaxbert.TextClassifier.from_preset(directory)


@pytest.mark.parametrize(
    ("name", "pooler"),
    [
        ("BertForTokenClassification", False),  # transformers saves these two without the pooler
        ("BertForQuestionAnswering", False),
        ("BertForMultipleChoice", True),
        ("DistilBertForTokenClassification", True),
        ("DistilBertForMultipleChoice", True),
        ("DistilBertForQuestionAnswering", True),
    ],
)
def test_other_task_checkpoints_say_what_they_are_and_what_loads(tmp_path, name, pooler):
    """Other transformers heads failed on a missing pooler, a logits shape or "no classification head": now the
    error says which task the checkpoint is for, that flaxbert runs sequence classifiers, and what of it loads. Their
    encoders load; a BERT one without its pooler gets a random one and a warning, as in transformers (it was refused,
    with the advice to start from a BertForMaskedLM checkpoint, which has no pooler either)."""
    import transformers

    if name.startswith("Distil"):
        config, backbone_cls = (
            transformers.DistilBertConfig(**DISTIL_BERT_SHAPES["h48_heads3_l1"]),
            flaxbert.DistilBertBackbone,
        )
    else:
        config, backbone_cls = transformers.BertConfig(**SMALL), flaxbert.BertBackbone
    getattr(transformers, name)(config).save_pretrained(tmp_path)
    what = f"is a {name} checkpoint, a .* model .*; flaxbert runs sequence classifiers"
    encoder = "Its encoder loads: .*Backbone.from_preset"
    with pytest.raises(ValueError, match=f"{what}.*{encoder}"):
        hf_checkpoint.load_classifier(tmp_path)
    with pytest.raises(ValueError, match=f"{what}.*{encoder}"):
        flaxbert.TextClassifier.from_preset(tmp_path, preprocessor=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backbone_cls.from_preset(tmp_path).config.hidden_dim == 48
        classifier = flaxbert.TextClassifier.from_preset(tmp_path, num_classes=2, preprocessor=None)
    notes = [str(w.message) for w in caught]
    assert any(re.search(f"{what}.* num_classes=2 gets a new, randomly initialised head", n) for n in notes), notes
    assert sum("has no pooler" in n for n in notes) == (0 if pooler else 2), notes
    assert classifier.num_classes == 2 and isinstance(classifier.backbone, backbone_cls)


def test_token_ids_longer_than_max_sequence_length(backbone):
    with pytest.raises(ValueError, match="length 41, longer than max_sequence_length=40"):
        backbone(_inputs(length=41))


def test_missing_and_unexpected_input_keys(backbone):
    with pytest.raises(ValueError, match=r"missing \['segment_ids'\]"):
        backbone({"token_ids": np.ones((1, 3), int), "padding_mask": np.ones((1, 3), int)})
    with pytest.raises(ValueError, match=r"unexpected \['mask'\]"):
        backbone(_inputs(mask=np.ones((2, 5), int)))


def test_ids_out_of_range_and_bad_shapes(backbone):
    with pytest.raises(ValueError, match=r"token_ids must be in \[0, 99\)"):
        backbone(_inputs(token_ids=np.full((2, 5), 99)))
    with pytest.raises(ValueError, match=r"segment_ids must be in \[0, 3\)"):
        backbone(_inputs(segment_ids=np.full((2, 5), 3)))
    with pytest.raises(ValueError, match=r"inputs\['padding_mask'\] has shape \(2, 4\)"):
        backbone(_inputs(padding_mask=np.ones((2, 4), int)))
    with pytest.raises(ValueError, match=r"inputs\['token_ids'\] must hold integers"):
        backbone(_inputs(token_ids=np.ones((2, 5), np.float32)))
    with pytest.raises(ValueError, match="inputs are empty"):
        backbone(_inputs(length=0))
    with pytest.raises(ValueError, match=r"inputs\['padding_mask'\] is not one rectangular array.*pad every example"):
        backbone(_inputs(padding_mask=[[1, 1, 1, 1, 1], [1, 1]]))


def test_trainable_takes_a_bool_only(backbone):
    """`trainable = "False"` (read from a config file) trained the encoder: any value was taken for its truth."""
    for value in ("False", None, 0):
        with pytest.raises(ValueError, match=rf"trainable must be True or False, got {re.escape(repr(value))}"):
            backbone.trainable = value
    assert backbone.trainable is True  # left as it was
    backbone.trainable = np.bool_(False)
    assert backbone.trainable is False
    backbone.trainable = True  # the module's fixture, as the other tests expect it


def test_bad_configs():
    with pytest.raises(ValueError, match="BertConfig.hidden_dim must be divisible by num_heads, got hidden_dim=10 and "
                       "num_heads=3"):  # fmt: skip
        flaxbert.BertBackbone(10, 1, 3, 10, 20)
    with pytest.raises(ValueError, match="dtype='int8' is not supported"):
        flaxbert.BertBackbone(10, 1, 2, 10, 20, dtype="int8")
    with pytest.raises(ValueError, match="activation='swish' is not supported"):
        flaxbert.DistilBertBackbone(10, 1, 2, 10, 20, activation="swish")


_SIZES = dict(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=10, intermediate_dim=20)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: BertConfig(**_SIZES, layer_norm_epsilon=float("nan")), "layer_norm_epsilon must be a positive number"),
        (lambda: DistilBertConfig(**_SIZES, layer_norm_epsilon=float("inf")), "DistilBertConfig.layer_norm_epsilon"),
        (lambda: BertConfig(**_SIZES, dropout=float("nan")), r"BertConfig.dropout must be in \[0, 1\), got nan"),
        (
            lambda: BertConfig(**_SIZES, num_segments=True),
            "BertConfig.num_segments must be a positive integer, got True",
        ),
        (lambda: BertConfig(**{**_SIZES, "num_layers": 2.0}), "BertConfig.num_layers must be a positive integer"),
        (lambda: DistilBertHeadConfig(2, hidden_dim=True), "hidden_dim must be a positive integer or None, got True"),
        (lambda: BertHeadConfig(num_classes=True), "BertHeadConfig.num_classes must be a positive integer, got True"),
        (lambda: BertHeadConfig(2, dropout=True), r"BertHeadConfig.dropout must be in \[0, 1\), got True"),
        # a rate of 1 drops every value, and the kept ones' scale 1 / (1 - rate) is infinite
        (lambda: DistilBertHeadConfig(2, dropout=1.0), r"DistilBertHeadConfig.dropout must be in \[0, 1\), got 1.0"),
        (lambda: BertConfig(**_SIZES, dropout=1.0), r"BertConfig.dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_configs_refuse_bools_and_non_finite_numbers(make, match):
    """NaN epsilon gave NaN logits; num_segments=True one segment row; DistilBERT hidden_dim=True a 1-wide head."""
    with pytest.raises(ValueError, match=match):
        make()


def test_configs_take_numpy_numbers_and_store_python_ones():
    """np.int64(2) classes were refused with "must be a positive integer, got np.int64(2)"."""
    cfg = BertConfig(*(np.int64(v) for v in _SIZES.values()), dropout=np.float32(0.25), num_segments=np.int64(3))
    head = DistilBertHeadConfig(num_classes=np.int64(2), hidden_dim=np.int32(8), dropout=np.float64(0.5))
    assert (cfg.num_layers, cfg.num_segments, cfg.dropout, head.num_classes, head.hidden_dim) == (1, 3, 0.25, 2, 8)
    stored = [*dataclasses.astuple(cfg), head.num_classes, head.hidden_dim, head.dropout]
    assert all(type(v) in (int, float, str, bool) or v == () for v in stored)  # (): lora_targets, none
    assert json.loads(json.dumps(dataclasses.asdict(cfg)))["num_segments"] == 3


def test_float16_is_refused_on_cpu_with_the_fix():
    """XLA:CPU has no float16 matrix products with float32 accumulation: predict failed deep inside XLA."""
    with pytest.raises(ValueError, match=r"dtype='float16' needs a GPU.*Use dtype='bfloat16' or 'float32' on CPU"):
        flaxbert.BertBackbone(100, 1, 2, 16, 32, dtype="float16")
    assert flaxbert.BertBackbone(100, 1, 2, 16, 32, dtype="bfloat16").config.dtype == "bfloat16"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda p: {**p, "token_embedding": {"embedding": np.zeros((99, 7), np.float32)}},
         r"token_embedding/embedding has shape \(99, 7\), expected \(99, 48\)"),
        (lambda p: {k: v for k, v in p.items() if k != "pooled_dense"}, r"missing pooled_dense/"),
        (lambda p: jax.tree.map(lambda a: np.asarray(a).astype(np.int32), p), r"has dtype int32, expected float32"),
        (lambda p: jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), p), r"has dtype bfloat16, expected float32"),
        (lambda p: [p], r"must be a nested dict of arrays, got list"),
    ],
)  # fmt: skip
def test_assigned_params_that_do_not_fit_are_refused(backbone, change, message):
    """Params were stored unchecked: a wrong shape failed in flax at the next predict, a missing subtree in jax's
    device_put, int32 params predicted silently with integer weights and bfloat16 ones trained as bfloat16."""
    before = backbone.params
    bad = change(before)
    with pytest.raises(ValueError, match=r"BertBackbone params: the weights .*" + message):
        backbone.params = bad
    assert backbone.params is before  # a refused assignment changes nothing
    with pytest.raises(ValueError, match=message):
        flaxbert.BertBackbone.from_config(backbone.config, bad)
    backbone.params = jax.tree.map(np.asarray, before)  # float32 numpy arrays are fine
    backbone.params = before


def test_a_classifiers_params_are_checked_whole_before_any_is_taken(backbone):
    """head_params (and whole params, which had no setter) were stored unchecked; now a head of the wrong shape or
    dtype is refused, and a refused assignment leaves both the backbone and the head as they were."""
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=3)
    before = classifier.params
    wrong_head = jax.tree.map(lambda a: np.zeros((np.shape(a)[0], 5), np.float32) if np.ndim(a) == 2 else a,
                              classifier.head_params)  # fmt: skip
    with pytest.raises(ValueError, match=r"BertTextClassifier head params: the weights do not fit the model: "
                                         r"logits/kernel has shape \(48, 5\), expected \(48, 3\)"):  # fmt: skip
        classifier.head_params = wrong_head
    with pytest.raises(ValueError, match=r"head params: .*logits/kernel has shape \(48, 5\)"):
        classifier.params = {**before, **wrong_head}
    int_head = jax.tree.map(lambda a: np.asarray(a).astype(np.int32), classifier.head_params)
    with pytest.raises(ValueError, match=r"head params: .*has dtype int32, expected float32"):
        flaxbert.BertTextClassifier(backbone, num_classes=3, head_params=int_head)
    with pytest.raises(ValueError, match=r"params must be a dict \{'backbone': ..., <head params>\} like "
                                         r"classifier.params, got keys \['logits'\]"):  # fmt: skip
        classifier.params = {k: v for k, v in before.items() if k != "backbone"}
    assert classifier.params is not before and all(
        jax.tree.leaves(jax.tree.map(lambda a, b: a is b, classifier.params, before))
    )  # nothing was taken
    classifier.params = jax.tree.map(np.asarray, before)  # float32 numpy arrays of the right shapes are fine


@pytest.mark.parametrize("seed", ["7", 1.5, None, True, np.float32(2)])
def test_a_seed_that_is_not_an_integer_is_refused_where_it_is_given(seed):
    """A string and a float were taken (int() cut 1.5 to 1), and None failed later, deep in the random init."""
    with pytest.raises(ValueError, match=r"seed must be an integer, got "):
        flaxbert.BertBackbone(50, 1, 2, 8, 16, max_sequence_length=8, seed=seed)
    backbone = flaxbert.BertBackbone(50, 1, 2, 8, 16, max_sequence_length=8, seed=-3)  # any integer, as jax keys
    with pytest.raises(ValueError, match=r"seed must be an integer, got "):
        flaxbert.BertTextClassifier(backbone, num_classes=2, seed=seed)
    assert flaxbert.BertTextClassifier(backbone, num_classes=2, seed=np.int64(5)).predict(
        {"token_ids": np.ones((1, 4), int), "segment_ids": np.zeros((1, 4), int), "padding_mask": np.ones((1, 4), int)},
        verbose=0,
    ).shape == (1, 2)


def test_a_preprocessor_changed_after_construction_is_checked_at_each_call():
    """The constructor's checks ran once: a sequence_length set later failed only on texts long enough, and a larger
    tokenizer only on a text holding a rare token."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
    backbone = flaxbert.BertBackbone(len(vocab), 1, 2, 8, 16, max_sequence_length=16)
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(vocab), sequence_length=8)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    preprocessor.sequence_length = 32
    with pytest.raises(ValueError, match=r"preprocessor.sequence_length=32 is longer than the backbone's max_seq"):
        classifier.predict(["the fox"], verbose=0)
    with pytest.raises(ValueError, match=r"preprocessor.sequence_length=32 is longer"):
        classifier.fit(["the fox", "fox"], [0, 1], verbose=0)
    preprocessor.sequence_length = 16
    preprocessor.tokenizer = flaxbert.BertTokenizer([*vocab, "jumped"])
    with pytest.raises(ValueError, match=r"preprocessor: the tokenizer has 8 tokens but the model embeds only 7"):
        classifier.evaluate(["the fox"], [0], verbose=0)
    preprocessor.tokenizer = flaxbert.BertTokenizer(vocab)
    assert classifier.predict(["the fox"], verbose=0).shape == (1, 2)


def test_a_row_whose_padding_mask_marks_no_token_is_said(backbone):
    """Such a row has nothing to attend to: keras-hub (with dropout) gives its attention's bias alone there, and
    transformers and flaxbert attend evenly over its padding (0.27 apart in sequence_output). It loaded silently."""
    batch = _inputs(padding_mask=np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]))
    with pytest.warns(UserWarning, match=r"padding_mask'\] marks no token in 1 row\(s\) \(the first: row 1\)") as said:
        backbone(batch)
    assert said[0].filename == __file__
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=2)
    with pytest.warns(UserWarning, match="marks no token") as said:
        classifier.predict(batch, verbose=0)
    assert said[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone(_inputs())
