"""Export to Hugging Face transformers: transformers itself loads the directory and is the reference for every value."""

import json
import warnings

import flax.linen as nn
import jax
import numpy as np
import pytest
import tokenizers
import transformers
from hf_factory import padded_batch, torch_outputs

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
from flaxbert.models.abstract import dummy_inputs
from flaxbert.presets import hf_checkpoint, hf_export
from flaxbert.text.tokenizer import BertTokenizer, DistilBertTokenizer

pytestmark = pytest.mark.parity
ATOL = 1e-5
# Head sizes 16 and 12, vocabularies that are not multiples of 8, a non-default epsilon, three segment types.
BERT = dict(vocabulary_size=101, num_layers=2, num_heads=3, hidden_dim=48, intermediate_dim=37, max_sequence_length=40)
DISTIL = dict(
    vocabulary_size=203, num_layers=2, num_heads=5, hidden_dim=60, intermediate_dim=70, max_sequence_length=24
)
SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox", "cafe", "caf", "##e", "##é", ".", ",", "!"]
SENTENCES = ["The café fox, naïve!", "Ünïcödé — résumé... (don't) [SEP] stop?", "the quick brown fox jumps."]


def _random_params(module, cfg, seed=0):
    """Random params of the module's shapes, every leaf (biases and LayerNorm too) non-trivial."""
    # Shapes only, filled by numpy: compiling the module's init would cost seconds per model.
    shapes = nn.unbox(jax.eval_shape(module.init, jax.random.key(0), dummy_inputs(cfg))["params"])
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        noise = rng.standard_normal(leaf.shape, np.float32)
        return 1 + 0.1 * noise if path[-1].key == "scale" else 0.1 * noise

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _apply(module, params, batch):
    return jax.jit(module.apply)({"params": params}, batch)


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _load(cls, directory):
    model, info = cls.from_pretrained(directory, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


def _batch(cfg):
    batch = padded_batch(cfg.vocabulary_size, getattr(cfg, "num_segments", 1))
    return batch if isinstance(cfg, BertConfig) else {k: v for k, v in batch.items() if k != "segment_ids"}


# Dropout rates other than the configs' default 0.1, so that a rate the export does not write is seen.
CLASSIFIERS = {
    "bert_gelu_approximate": (
        BertClassifier,
        BertConfig(**BERT, layer_norm_epsilon=1e-6, dropout=0.05),
        BertHeadConfig(3, dropout=0.3),
    ),
    "distil_bert": (
        DistilBertClassifier,
        DistilBertConfig(**DISTIL, dropout=0.2),
        DistilBertHeadConfig(4, dropout=0.15),
    ),
}
# transformers' names for the encoder's rate (hidden states, attention probabilities) and the head's.
DROPOUT_NAMES = {
    "BertConfig": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"),
    "DistilBertConfig": ("dropout", "attention_dropout", "seq_classif_dropout"),
}


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classifier_logits_match_transformers_and_round_trip(tmp_path, name):
    model_cls, cfg, head = CLASSIFIERS[name]
    model = model_cls(cfg, head)
    params = _random_params(model, cfg)
    path = hf_export.export_transformers(tmp_path / "export", cfg, params, head_config=head)
    hf = _load(transformers.AutoModelForSequenceClassification, path)
    assert type(hf).__name__ == (
        "BertForSequenceClassification" if "distil" not in name else "DistilBertForSequenceClassification"
    )
    batch = _batch(cfg)
    want = torch_outputs(hf, batch).logits.numpy()
    got = _apply(model, params, batch)
    assert want.shape == (3, head.num_classes) and _max_diff(got, want) <= ATOL
    # Fine-tuning the export in transformers drops at the rates flaxbert trained with.
    rates = [getattr(hf.config, name) for name in DROPOUT_NAMES[type(cfg).__name__]]
    assert rates == [cfg.dropout, cfg.dropout, head.dropout]
    # flaxbert's own reader gets back the very same bits and configs.
    cfg2, head2, params2 = hf_checkpoint.load_classifier(path)
    assert (cfg2, head2) == (cfg, head)
    flat, flat2 = (jax.tree_util.tree_flatten_with_path(p) for p in (params, params2))
    assert flat[1] == flat2[1]
    for (key, a), (_, b) in zip(flat[0], flat2[0], strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), key


BACKBONES = {
    "bert_gelu_seg3": BertConfig(**BERT, num_segments=3, activation="gelu"),
    "bert_gelu_approximate": BertConfig(**BERT, activation="gelu_approximate"),
    "bert_relu": BertConfig(**BERT, activation="relu", layer_norm_epsilon=1e-5),
    "distil_bert_gelu_approximate": DistilBertConfig(**DISTIL, activation="gelu_approximate"),
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_outputs_match_transformers(tmp_path, name):
    cfg = BACKBONES[name]
    is_bert = isinstance(cfg, BertConfig)
    encoder = BertEncoder(cfg) if is_bert else DistilBertEncoder(cfg)
    params = _random_params(encoder, cfg, seed=3)
    path = hf_export.export_transformers(tmp_path / "export", cfg, params)
    written = json.loads((path / "config.json").read_text())
    assert written["hidden_act" if is_bert else "activation"] == {"gelu_approximate": "gelu_new"}.get(
        cfg.activation, cfg.activation
    )
    hf = _load(transformers.AutoModel, path)
    batch = _batch(cfg)
    want = torch_outputs(hf, batch)
    got = _apply(encoder, params, batch)
    if is_bert:
        assert _max_diff(got["sequence_output"], want.last_hidden_state.numpy()) <= ATOL
        assert _max_diff(got["pooled_output"], want.pooler_output.numpy()) <= ATOL
    else:
        assert _max_diff(got, want.last_hidden_state.numpy()) <= ATOL


def test_a_backbone_object_exports_itself(tmp_path):
    """The public method, which BERT and DistilBERT backbones share (it passed the params nested under "backbone",
    which the export refused)."""
    backbone = flaxbert.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=24,
                                     seed=5)  # fmt: skip
    hf = _load(transformers.AutoModel, backbone.export_to_transformers(tmp_path / "export"))
    batch = _batch(backbone.config)
    got, want = backbone(batch), torch_outputs(hf, batch)
    assert _max_diff(got["sequence_output"], want.last_hidden_state.numpy()) <= ATOL
    assert _max_diff(got["pooled_output"], want.pooler_output.numpy()) <= ATOL


def _check_tokenizer(tmp_path, tokenizer, cfg):
    encoder = BertEncoder(cfg) if isinstance(cfg, BertConfig) else DistilBertEncoder(cfg)
    params = _random_params(encoder, cfg)
    path = hf_export.export_transformers(tmp_path / "export", cfg, params, tokenizer=tokenizer)
    hf = transformers.AutoTokenizer.from_pretrained(path)
    special = {t: tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")}
    assert {t: hf.convert_tokens_to_ids(t) for t in special} == special
    assert (hf.cls_token, hf.sep_token, hf.pad_token, hf.unk_token, hf.mask_token) == tuple(special)
    cls, sep = special["[CLS]"], special["[SEP]"]
    for text in SENTENCES:
        assert hf(text)["input_ids"] == [cls, *tokenizer(text), sep], text
        assert hf(text, add_special_tokens=False)["input_ids"] == tokenizer(text), text
    first, second = SENTENCES[:2]
    pair = hf(first, second, return_token_type_ids=True)  # DistilBERT's model takes none, but they are made
    assert pair["input_ids"] == [cls, *tokenizer(first), sep, *tokenizer(second), sep]
    assert pair["token_type_ids"] == [0] * (len(tokenizer(first)) + 2) + [1] * (len(tokenizer(second)) + 1)
    # transformers' BertTokenizer builds its own [CLS]/[SEP] template; readers of tokenizer.json alone (the tokenizers
    # library, text-embeddings-inference) take the file's: they must pack as transformers does.
    rust = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    assert [rust.encode(text).ids for text in SENTENCES] == [hf(text)["input_ids"] for text in SENTENCES]
    packed = rust.encode(first, second)
    assert (packed.ids, packed.type_ids) == (pair["input_ids"], pair["token_type_ids"])
    return hf


@pytest.mark.parametrize(
    ("lowercase", "strip_accents", "the_cafe"),
    [
        (True, False, [5, 8, 10]),  # accents kept: "the caf ##é"
        (True, None, [5, 7]),  # stripped, as lowercasing does by default: "the cafe"
        (False, None, [1, 8, 10]),  # cased: "The" is not in the vocabulary, and the accent stays
    ],
)
def test_tokenizer_small_vocabulary(tmp_path, lowercase, strip_accents, the_cafe):
    tokenizer = DistilBertTokenizer(SMALL_VOCAB, lowercase=lowercase, strip_accents=strip_accents)
    hf = _check_tokenizer(tmp_path, tokenizer, DistilBertConfig(**DISTIL))
    assert type(hf).__name__ == "DistilBertTokenizer"
    assert tokenizer("The café") == the_cafe


def test_tokenizer_real_uncased_vocabulary(tmp_path, minilm_dir):
    tokenizer = BertTokenizer.from_preset(minilm_dir)
    assert tokenizer.vocabulary_size() == 30522
    cfg = BertConfig(vocabulary_size=30522, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=8)
    _check_tokenizer(tmp_path, tokenizer, cfg)
    reread = BertTokenizer.from_preset(tmp_path / "export")
    assert reread.get_config() == tokenizer.get_config() and reread.get_vocabulary() == tokenizer.get_vocabulary()


def test_a_tokenizer_transformers_cannot_express_exports_with_a_warning(tmp_path):
    """keras-hub's special_tokens_in_strings matches "[CLS]" but splits "[UNK]" typed in text; transformers matches
    both or neither: the export says that texts holding "[UNK]" get other ids there (and only those)."""
    tokenizer = BertTokenizer(SMALL_VOCAB, lowercase=True, special_tokens_in_strings=True)
    with pytest.warns(UserWarning, match=r"splits '\[UNK\]' \(keras-hub's rule\); transformers matches '\[UNK\]' too"):
        hf = _check_tokenizer(tmp_path, tokenizer, DistilBertConfig(**DISTIL))
    assert hf("[UNK]", add_special_tokens=False)["input_ids"] != tokenizer("[UNK]")


def test_unrepresentable_models_raise_and_leave_nothing(tmp_path):
    target = tmp_path / "export"
    cfg = DistilBertConfig(**DISTIL, layer_norm_epsilon=1e-6)
    encoder_params = _random_params(DistilBertEncoder(cfg), cfg)
    with pytest.raises(ValueError, match="always uses 1e-12"):
        hf_export.export_transformers(target, cfg, encoder_params)
    cfg, head = DistilBertConfig(**DISTIL), DistilBertHeadConfig(2, hidden_dim=32)
    params = _random_params(DistilBertClassifier(cfg, head), cfg)
    with pytest.raises(ValueError, match="pre_classifier is dim x dim"):
        hf_export.export_transformers(target, cfg, params, head_config=head)
    with pytest.raises(ValueError, match="params lack token_embedding/embedding"):  # a classifier's, as a backbone's
        hf_export.export_transformers(target, cfg, params)
    with pytest.raises(ValueError, match="logits/kernel.*no transformers name"):
        hf_export.export_transformers(target, cfg, {**params["backbone"], "logits": params["logits"]})
    tokenizer = BertTokenizer(SMALL_VOCAB)
    with pytest.raises(ValueError, match="embeds only 13"):
        hf_export.export_transformers(target, BertConfig(**{**BERT, "vocabulary_size": 13}), {}, tokenizer=tokenizer)
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    cfg = BertConfig(**BERT)
    params = _random_params(BertEncoder(cfg), cfg)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf_export, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        hf_export.export_transformers(tmp_path / "export", cfg, params)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "export").mkdir()  # an empty directory made for the export is used, as save_to_preset uses it
    with pytest.raises(OSError, match="disk full"):
        hf_export.export_transformers(tmp_path / "export", cfg, params)
    assert [p.name for p in tmp_path.iterdir()] == ["export"] and not any((tmp_path / "export").iterdir())
    (tmp_path / "export" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="export exists and is not empty; export_to_transformers writes a new"):
        hf_export.export_transformers(tmp_path / "export", cfg, params)


def test_a_directory_that_cannot_be_written_is_refused_before_anything_is(tmp_path, monkeypatch):
    """export_transformers had no checks of its own: a TypeError from pathlib for None, FileExistsError naming a file
    as the parent, a URL written as a relative path."""
    cfg = BertConfig(**BERT)
    params = _random_params(BertEncoder(cfg), cfg)
    (tmp_path / "a-file").write_text("")
    monkeypatch.chdir(tmp_path)
    refusals = {
        None: "export_to_transformers writes a directory: pass a str or pathlib.Path, not None",
        "s3://bucket/model": "'s3://bucket/model' is a URL; export_to_transformers writes a local directory",
        tmp_path / "a-file": "a-file is a file; export_to_transformers writes a new directory",
        tmp_path / "a-file" / "sub": r"cannot create the directory \S+/a-file/sub \(\S+/a-file is a file\)",
    }
    for directory, refusal in refusals.items():
        with pytest.raises(ValueError, match=refusal):
            hf_export.export_transformers(directory, cfg, params)
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_classifier_object_exports_after_fine_tuning(tmp_path):
    """The object-level export of a fine-tuned classifier, with its tokenizer, loads in transformers unchanged, and
    truncates long texts where the classifier's preprocessor does (8 tokens on a 12-position model), loaded back
    into flaxbert too. Its [PAD] is id 1, which config.json's pad_token_id must say (transformers keeps that
    embedding row out of training)."""
    vocab = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "."]
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(vocab, lowercase=True), 8)
    backbone = flaxbert.BertBackbone(len(vocab), 1, 2, 16, 24, max_sequence_length=12)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=3, preprocessor=preprocessor)
    texts = ["The quick fox.", "brown fox", "the", "the quick brown fox . the quick brown fox ."]
    classifier.fit(texts, [0, 1, 2, 0], batch_size=8, epochs=2, verbose=0)
    classifier.export_to_transformers(tmp_path / "hf")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "hf", attn_implementation="eager"
    ).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    assert encoded["input_ids"].shape == (4, 8)
    assert model.config.pad_token_id == tokenizer.pad_token_id == 1
    assert model.bert.embeddings.word_embeddings.padding_idx == 1
    want = model(**encoded).logits.detach().numpy()
    np.testing.assert_allclose(classifier.predict(texts, batch_size=8, verbose=0), want, atol=1e-5)
    assert flaxbert.TextClassifier.from_preset(tmp_path / "hf").preprocessor.sequence_length == 8


def test_a_pair_rule_transformers_lacks_is_said_at_export(tmp_path):
    """keras-hub's round_robin gives the first sentence of an overflowing pair the odd token, transformers'
    longest_first the second: the export of a round_robin classifier (every keras-hub preset's, and the default)
    cut such pairs elsewhere in transformers, while the docstring promised the same token ids."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "."]
    pair = (["the quick brown fox the quick"], ["brown fox the quick brown fox"])  # 6 + 6 tokens, room for 5
    backbone = flaxbert.BertBackbone(len(vocab), 1, 2, 16, 24, max_sequence_length=12)
    ids = {}
    for truncate in ("round_robin", "longest_first"):
        preprocessor = flaxbert.BertTextClassifierPreprocessor(
            flaxbert.BertTokenizer(vocab, lowercase=True), 8, truncate=truncate
        )
        classifier = flaxbert.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
        ids[truncate] = np.asarray(preprocessor(pair)["segment_ids"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            classifier.export_to_transformers(tmp_path / truncate)
        said = [w for w in caught if "truncates sentence pairs" in str(w.message)]
        assert len(said) == (truncate == "round_robin"), [str(w.message) for w in caught]
        if said:
            assert "with 'round_robin' (keras-hub's rule), which transformers does not have" in str(said[0].message)
            assert said[0].filename == __file__
        hf = transformers.AutoTokenizer.from_pretrained(tmp_path / truncate)(*pair, truncation=True)
        ids[f"transformers {truncate}"] = np.asarray(hf["token_type_ids"])
    np.testing.assert_array_equal(ids["transformers longest_first"], ids["longest_first"])
    np.testing.assert_array_equal(ids["transformers round_robin"], ids["longest_first"])  # the export's own rule
    assert (ids["round_robin"] != ids["longest_first"]).any()  # what the warning is about


def test_a_softmax_classifier_exports_its_logits_and_says_so(tmp_path):
    """transformers has no output activation: the export returns logits, and the warning says how to get the
    probabilities back (it was silent, and the reloaded model predicted logits)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "."]
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(vocab, lowercase=True), 12)
    backbone = flaxbert.BertBackbone(len(vocab), 1, 2, 16, 24, max_sequence_length=12)
    classifier = flaxbert.BertTextClassifier(backbone, num_classes=3, preprocessor=preprocessor, activation="softmax")
    texts = ["The quick fox.", "brown fox", "the"]
    with pytest.warns(UserWarning, match=r"returns logits .* pass activation='softmax' when loading it"):
        classifier.export_to_transformers(tmp_path / "hf")
    probabilities = classifier.predict(texts, batch_size=8, verbose=0)
    logits = flaxbert.TextClassifier.from_preset(tmp_path / "hf").predict(texts, batch_size=8, verbose=0)
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(logits, axis=-1)), probabilities, atol=1e-6)
    again = flaxbert.TextClassifier.from_preset(tmp_path / "hf", activation="softmax")
    np.testing.assert_allclose(again.predict(texts, batch_size=8, verbose=0), probabilities, atol=1e-6)


def test_label_names_travel_through_presets_and_transformers(tmp_path):
    """Class names are transformers' `id2label`: a fine-tuned checkpoint's names survive loading, saving and export
    (export wrote LABEL_0.. for every model, and loading dropped the names)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "."]
    backbone = flaxbert.DistilBertBackbone(len(vocab), 1, 2, 16, 24, max_sequence_length=12)
    names = ("negative", "neutral", "positive")
    classifier = flaxbert.DistilBertTextClassifier(backbone, num_classes=3, label_names=list(names))
    assert classifier.label_names == names
    classifier.export_to_transformers(tmp_path / "hf")
    config = transformers.AutoConfig.from_pretrained(tmp_path / "hf")
    assert config.id2label == dict(enumerate(names)) and config.label2id == {n: i for i, n in enumerate(names)}
    loaded = flaxbert.TextClassifier.from_preset(tmp_path / "hf", preprocessor=None)
    assert loaded.label_names == names
    loaded.save_to_preset(tmp_path / "native")
    assert flaxbert.TextClassifier.from_preset(tmp_path / "native").label_names == names
    renamed = flaxbert.TextClassifier.from_preset(tmp_path / "hf", preprocessor=None, label_names=["a", "b", "c"])
    assert renamed.label_names == ("a", "b", "c")
    with pytest.warns(UserWarning, match="new, randomly initialised head"):
        assert (
            flaxbert.TextClassifier.from_preset(tmp_path / "hf", preprocessor=None, num_classes=2).label_names is None
        )
    # transformers' default names are no names, and an unnamed head exports them
    unnamed = flaxbert.DistilBertTextClassifier(backbone, num_classes=2)
    unnamed.export_to_transformers(tmp_path / "unnamed")
    assert transformers.AutoConfig.from_pretrained(tmp_path / "unnamed").id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert flaxbert.TextClassifier.from_preset(tmp_path / "unnamed", preprocessor=None).label_names is None


@pytest.mark.parametrize(
    ("label_names", "message"),
    [
        ("neg pos", "label_names must be a list of strings"),
        (["neg", 1], "label_names must be a list of strings"),
        (["neg"], r"name each of the num_classes=2 classes once, got \['neg'\]"),
        (["neg", "neg"], r"name each of the num_classes=2 classes once, got \['neg', 'neg'\]"),
    ],
)
def test_bad_label_names_are_refused(label_names, message):
    with pytest.raises(ValueError, match=message):
        BertHeadConfig(num_classes=2, label_names=label_names)
