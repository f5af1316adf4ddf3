"""Preprocessor settings by preset format: transformers checkpoints truncate pairs as transformers does, and keep
doing so through a native preset; keras-hub presets and older native presets keep round_robin."""

import json

import numpy as np
import pytest
import torch
import transformers
from hf_factory import BERT_SHAPES, random_model, save

import flaxbert
from flaxbert.presets import text_assets

# one-token words: with sequence_length 16 (budget 13, odd) the 8 + 8 word pair below is truncated differently by
# round_robin (7 + 6 tokens) and transformers (6 + 7: the odd token goes to the longer text, the second on ties)
WORDS = [f"w{i}" for i in range(94)]
PAIR = (["w1 w2 w3 w4 w5 w6 w7 w8", "w9 w10"], ["w11 w12 w13 w14 w15 w16 w17 w18", "w19 w20 w21"])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A random BertForSequenceClassification (vocabulary 99) saved with its transformers tokenizer."""
    model = random_model("bert_classifier", BERT_SHAPES["h48_heads3_l1_seg3"], num_labels=3)
    path = save(model, tmp_path_factory.mktemp("bert"))
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    transformers.BertTokenizer(vocab=vocab).save_pretrained(path)
    return path, model


def _transformers_logits(path, model, sequence_length):
    encoded = transformers.AutoTokenizer.from_pretrained(path)(
        *PAIR, truncation=True, max_length=sequence_length, padding="max_length", return_tensors="pt"
    )
    with torch.no_grad():
        return encoded["input_ids"].numpy(), model(**encoded).logits.numpy()


def test_a_transformers_checkpoint_truncates_pairs_as_transformers(bert_dir):
    path, model = bert_dir
    assert text_assets.preprocessor_settings(path) == {"truncate": "longest_first", "sequence_length": 40}
    classifier = flaxbert.TextClassifier.from_preset(path, sequence_length=16)
    assert classifier.preprocessor.truncate == "longest_first"
    want_ids, want_logits = _transformers_logits(path, model, 16)
    assert (want_ids[0] != 0).sum() == 16  # the first pair is truncated
    np.testing.assert_array_equal(classifier.preprocessor(PAIR)["token_ids"], want_ids)
    np.testing.assert_allclose(classifier.predict(PAIR, verbose=0), want_logits, atol=1e-5)


def test_a_native_preset_saved_from_it_keeps_longest_first(bert_dir, tmp_path):
    path, model = bert_dir
    flaxbert.TextClassifier.from_preset(path, sequence_length=16).save_to_preset(tmp_path / "native")
    assert json.loads((tmp_path / "native" / "config.json").read_text())["preprocessor"]["truncate"] == "longest_first"
    restored = flaxbert.TextClassifier.from_preset(tmp_path / "native")
    assert restored.preprocessor.truncate == "longest_first"
    want_ids, want_logits = _transformers_logits(path, model, 16)
    np.testing.assert_array_equal(restored.preprocessor(PAIR)["token_ids"], want_ids)
    np.testing.assert_allclose(restored.predict(PAIR, verbose=0), want_logits, atol=1e-5)


def test_a_native_preset_that_saved_round_robin_still_loads_it(bert_dir, tmp_path):
    """Presets saved before longest_first existed hold round_robin, whatever their source: they load unchanged."""
    path, _ = bert_dir
    flaxbert.TextClassifier.from_preset(path, sequence_length=16).save_to_preset(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["preprocessor"]["truncate"] = "round_robin"
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    preprocessor = flaxbert.BertTextClassifierPreprocessor.from_preset(tmp_path / "old")
    assert (preprocessor.truncate, preprocessor.sequence_length) == ("round_robin", 16)
    assert preprocessor(PAIR)["segment_ids"][0].tolist() == [0] * 9 + [1] * 7  # round robin: 7 + 6 tokens


@pytest.mark.parametrize("preprocessor_json", [None, {"sequence_length": 9}])
def test_a_keras_hub_preset_keeps_keras_hubs_default(tmp_path, preprocessor_json):
    """A keras-hub preset whose preprocessor.json names no rule (or that has none) leaves the preprocessor's default,
    keras-hub's round_robin: only transformers checkpoints get longest_first."""
    config = {"class_name": "BertTextClassifier", "registered_name": "keras_hub>BertTextClassifier", "config": {}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    if preprocessor_json is not None:
        saved = {"class_name": "BertTextClassifierPreprocessor", "config": preprocessor_json}
        (tmp_path / "preprocessor.json").write_text(json.dumps(saved))
    assert text_assets.preprocessor_settings(tmp_path) == (preprocessor_json or {})
