"""Tokens added to a transformers tokenizer (new words, entity markers) give transformers' own ids in flaxbert.

They were ignored: "covid19" added as id 30522 was split into "co ##vid ##19", and an entity marker "[unused1]" made a
special token (id 2 in the vocabulary) was split into "[ unused ##1 ]", so the ids and the logits differed silently.
"""

import json

import pytest
import transformers

from flaxbert.text import BertTokenizer

pytestmark = pytest.mark.parity

VOCAB = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "is", "said", "co", "##vid", "##19",
         "[", "]", "new", "_", "entity", "covid", "s", "##s", "."]  # fmt: skip
TEXTS = ["covid19 is the covid19s", "The [NEW_ENTITY] said COVID19.", "[unused1] covid [SEP] is [NEW_ENTITY]s", ""]


def _transformers_ids(tokenizer, texts=TEXTS):
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def _vocab_file(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return str(tmp_path / "vocab.txt")


@pytest.mark.parametrize("split_special_tokens", [False, True])
def test_added_and_extra_special_tokens_get_transformers_ids(tmp_path, split_special_tokens):
    reference = transformers.BertTokenizer(_vocab_file(tmp_path), split_special_tokens=split_special_tokens)
    reference.add_tokens(["covid19"])  # a new word: id 21, matched in the lower-cased text
    reference.add_special_tokens({"additional_special_tokens": ["[NEW_ENTITY]", "[unused1]"]})  # new, and id 1
    reference.save_pretrained(tmp_path / "saved")
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    ours = BertTokenizer.from_preset(tmp_path / "saved")
    assert [ours(text) for text in TEXTS] == _transformers_ids(reference)
    assert ours.vocabulary_size() == len(reference) == len(VOCAB) + 2
    assert (ours.token_to_id("[NEW_ENTITY]"), ours.id_to_token(21)) == (22, "covid19")
    # get_config() and the vocabulary file (without the added tokens, like vocab.txt) rebuild it: the native format.
    rebuilt = BertTokenizer(
        ours.save_vocabulary(tmp_path / "vocabulary.txt"), **json.loads(json.dumps(ours.get_config()))
    )
    assert [rebuilt(text) for text in TEXTS] == _transformers_ids(reference)
    marker = "[ new _ entity ]" if split_special_tokens else "[NEW_ENTITY]"
    assert rebuilt.detokenize(rebuilt(TEXTS[1])) == f"the {marker} said covid19 ."


def test_added_tokens_of_a_transformers_4_folder(tmp_path):
    """transformers 4's slow tokenizers saved vocab.txt with added_tokens.json and special_tokens_map.json."""
    _vocab_file(tmp_path)
    # listed out of id order: the ids, not the order in the file, place the tokens
    (tmp_path / "added_tokens.json").write_text(json.dumps({"[NEW_ENTITY]": 22, "covid19": 21}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"additional_special_tokens": ["[NEW_ENTITY]"]}))
    # transformers 5 loads added_tokens.json's entries as plain, normalized tokens, even one named special: lower case
    # and split_special_tokens do not split it (flaxbert made it special, so "[new_entity]" was split)
    texts = [*TEXTS, "a [new_entity] said", "a [NEW_ENTITY] said"]
    for split in (False, True):
        config = {"tokenizer_class": "BertTokenizer", "split_special_tokens": split}
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
        reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
        ours = BertTokenizer.from_preset(tmp_path)
        assert [list(ours(text)) for text in texts] == _transformers_ids(reference, texts)


def test_an_extra_special_token_named_only_by_a_string_is_matched_in_the_raw_text(tmp_path):
    """An extra special token listed as a bare string (special_tokens_map.json, no added_tokens.json entry) is added
    unnormalised, as transformers adds it: matched in the text as typed, before lower-casing."""
    _vocab_file(tmp_path)
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"additional_special_tokens": ["[NEW_ENTITY]"]}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = BertTokenizer.from_preset(tmp_path)
    texts = [*TEXTS, "a [new_entity] said", "a [NEW_ENTITY] said"]
    assert [list(ours(text)) for text in texts] == _transformers_ids(reference, texts)
    assert ours("a [NEW_ENTITY] said") == [2, 21, 8]  # [UNK], the new token after the vocabulary's 21, "said"


def test_special_tokens_bert_does_not_name_are_refused(tmp_path):
    _vocab_file(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"cls_token": "<s>"}))
    with pytest.raises(ValueError, match="names cls_token='<s>'; flaxbert's BertTokenizer uses '\\[CLS\\]' there"):
        BertTokenizer.from_preset(tmp_path)


def test_added_tokens_travel_with_a_classifier_through_presets_and_transformers(tmp_path):
    """A fine-tuned checkpoint with added tokens (resize_token_embeddings): transformers' ids and logits, kept by
    save_to_preset and by export_to_transformers."""
    import numpy as np
    import torch
    from hf_factory import BERT_SHAPES, random_model

    import flaxbert

    tokenizer = transformers.BertTokenizer(_vocab_file(tmp_path))
    tokenizer.add_tokens(["covid19"])
    tokenizer.add_special_tokens({"additional_special_tokens": ["[NEW_ENTITY]"]})
    model = random_model("bert_classifier", BERT_SHAPES["h48_heads3_l1_seg3"] | {"vocab_size": len(VOCAB)})
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    encoded = tokenizer(TEXTS, padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        want = model(**encoded).logits.numpy()
    classifier = flaxbert.TextClassifier.from_preset(tmp_path / "hf", sequence_length=16)
    assert classifier.preprocessor(TEXTS)["token_ids"].tolist() == encoded["input_ids"].tolist()
    np.testing.assert_allclose(classifier.predict(TEXTS, batch_size=8, verbose=0), want, atol=1e-5)
    classifier.save_to_preset(tmp_path / "native")
    native = flaxbert.TextClassifier.from_preset(tmp_path / "native")
    assert native.preprocessor(TEXTS)["token_ids"].tolist() == encoded["input_ids"].tolist()
    classifier.export_to_transformers(tmp_path / "export")
    exported = transformers.AutoTokenizer.from_pretrained(tmp_path / "export")
    assert exported(TEXTS, padding="max_length", max_length=16)["input_ids"] == encoded["input_ids"].tolist()
