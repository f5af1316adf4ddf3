"""`classifier.summary()`: its parameter counts against transformers' models of the same shape, row by row; and the
classifier's and preprocessor's reprs."""

import re

import pytest
import torch
import transformers

import flaxbert

DIMS = dict(vocabulary_size=97, num_layers=3, num_heads=2, hidden_dim=16, intermediate_dim=40, max_sequence_length=24)


def _torch_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _counts(lines: list[str]) -> dict[str, str]:
    """Each table row's first word and its count column (as printed)."""
    rows = {}
    for line in lines:
        match = re.match(r"\s*(\S+).*?\s((?:\d+ x )?[\d,]+)$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_bert_counts_equal_transformers_bert_for_sequence_classification():
    torch.manual_seed(0)
    reference = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=97, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=40,
        max_position_embeddings=24, type_vocab_size=2, num_labels=5))  # fmt: skip
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(92))]
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(vocabulary), sequence_length=20)
    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**DIMS), 5, preprocessor=preprocessor)
    lines = []
    classifier.summary(print_fn=lines.append)
    rows = _counts(lines)
    embeddings = reference.bert.embeddings
    assert _number(rows["token_embedding"]) == _torch_count(embeddings.word_embeddings)
    assert _number(rows["segment_embedding"]) == _torch_count(embeddings.token_type_embeddings)
    assert _number(rows["position_embedding"]) == _torch_count(embeddings.position_embeddings)
    assert _number(rows["embeddings_layer_norm"]) == _torch_count(embeddings.LayerNorm)
    assert rows["transformer_layer_0"] == f"3 x {_torch_count(reference.bert.encoder.layer[0]):,}"
    assert _number(rows["pooled_dense"]) == _torch_count(reference.bert.pooler)
    assert _number(rows["logits"]) == _torch_count(reference.classifier)
    assert _number(rows["backbone"]) == _torch_count(reference.bert) == classifier.backbone.count_params()
    total = _torch_count(reference)
    assert 1024 <= total * 4 < 2**20  # in KB, as Keras says it
    assert f"Total params: {total:,} ({total * 4 / 1024:,.2f} KB in float32)" in lines
    assert f"Trainable params: {total:,} ({total * 4 / 1024:,.2f} KB)" in lines
    assert "Non-trainable params: 0 (0.00 B)" in lines
    assert lines[0] == 'Model: "BertTextClassifier" (5 classes; outputs logits)'
    assert lines[1] == ("Preprocessor: BertTextClassifierPreprocessor (sequence_length 20; BertTokenizer, 97 tokens, "
                        "cased)")  # fmt: skip
    assert "2 heads x 8, 16 -> 40 -> 16" in next(line for line in lines if "transformer_layer_0" in line)


def test_distil_bert_counts_with_a_frozen_backbone(capsys):
    config = transformers.DistilBertConfig(vocab_size=97, dim=16, n_layers=3, n_heads=2, hidden_dim=40,
                                           max_position_embeddings=24, num_labels=3)  # fmt: skip
    reference = transformers.DistilBertForSequenceClassification(config)
    backbone = flaxbert.DistilBertBackbone(**DIMS, dtype="bfloat16")
    classifier = flaxbert.DistilBertTextClassifier(backbone, 3, label_names=["neg", "neu", "pos"],
                                                   activation="softmax")  # fmt: skip
    backbone.trainable = False
    classifier.summary()
    lines = capsys.readouterr().out.splitlines()
    rows = _counts(lines)
    head = _torch_count(reference.pre_classifier) + _torch_count(reference.classifier)
    assert _number(rows["pooled_dense"]) == _torch_count(reference.pre_classifier)
    assert _number(rows["logits"]) == _torch_count(reference.classifier)
    assert _number(rows["head"]) == head
    assert _number(rows["backbone"]) == _torch_count(reference.distilbert)
    assert rows["transformer_layer_0"] == f"3 x {_torch_count(reference.distilbert.transformer.layer[0]):,}"
    assert "segment_embedding" not in rows
    total = _torch_count(reference)
    assert head * 4 >= 1024 and 1024 <= (total - head) * 4 < 2**20
    assert f"Trainable params: {head:,} ({head * 4 / 1024:,.2f} KB)" in lines  # was "(0.00 MB)"
    assert f"Non-trainable params: {total - head:,} ({(total - head) * 4 / 1024:,.2f} KB)" in lines
    assert lines[0] == ('Model: "DistilBertTextClassifier" (3 classes, label_names [\'neg\', \'neu\', \'pos\']; '
                        "outputs probabilities)")  # fmt: skip
    assert any(line.startswith("backbone (DistilBertBackbone, bfloat16 compute, frozen)") for line in lines)


@pytest.mark.parametrize("print_fn", [None, print])
def test_summary_returns_nothing_as_keras_does(print_fn, capsys):
    classifier = flaxbert.BertTextClassifier(flaxbert.BertBackbone(**DIMS), 2)
    assert classifier.summary(print_fn=print_fn) is None
    assert capsys.readouterr().out.startswith('Model: "BertTextClassifier" (2 classes; outputs logits)\n')


def test_the_reprs_name_the_backbone_the_head_and_the_preprocessor():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
    tokenizer = flaxbert.BertTokenizer(vocabulary, lowercase=True)
    preprocessor = flaxbert.BertTextClassifierPreprocessor(tokenizer, sequence_length=20, truncate="waterfall")
    assert repr(preprocessor) == (
        "BertTextClassifierPreprocessor(BertTokenizer(vocabulary_size=7, lowercase=True, strip_accents=False, "
        "special_tokens_in_strings=False), sequence_length=20, truncate='waterfall', bucket=False)"
    )
    backbone = flaxbert.BertBackbone(**{**DIMS, "vocabulary_size": 7})
    classifier = flaxbert.BertTextClassifier(backbone, 2, preprocessor=preprocessor, label_names=["neg", "pos"])
    text = repr(classifier)
    assert text.startswith("BertTextClassifier(BertBackbone(BertConfig(vocabulary_size=7, num_layers=3, num_heads=2, ")
    assert f"), params={backbone.count_params():,}), num_classes=2, activation=None, dropout=0.1, " in text
    assert text.endswith(f"label_names=('neg', 'pos'), preprocessor={preprocessor!r})")
