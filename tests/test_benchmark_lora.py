"""benchmarks/lora_sst2.py's reading of SST-2, its token batches and its tables (no model is trained here)."""

import sys

import numpy as np
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import lora_sst2  # noqa: E402


def test_the_real_dev_split_reads_whole_as_published(shared_data):
    texts, labels = lora_sst2.read_tsv(shared_data / "sst2" / "dev.tsv")  # sst2_epoch's reader
    assert len(texts) == len(labels) == 872
    assert np.bincount(labels).tolist() == [428, 444]
    assert all(isinstance(t, str) and t for t in texts)


def test_token_batches_are_minilm_shaped_and_fixed_by_the_seed():
    x, y = lora_sst2.token_batches(6, 5)
    assert {k: v.shape for k, v in x.items()} == {"token_ids": (6, 5), "segment_ids": (6, 5), "padding_mask": (6, 5)}
    assert x["token_ids"].min() >= 1000 and x["token_ids"].max() < lora_sst2.MINILM["vocabulary_size"]
    again, _ = lora_sst2.token_batches(6, 5)
    np.testing.assert_array_equal(again["token_ids"], x["token_ids"])
    assert set(y.tolist()) <= {0, 1}


def test_the_speed_table_compares_each_arm_with_keras_hubs_same_arm():
    rows = [dict(framework="flaxbert", arm="full", trainable=22_000_000, examples_per_s=30.0),
            dict(framework="keras-hub", arm="full", trainable=22_000_000, examples_per_s=12.0),
            dict(framework="flaxbert", arm="LoRA rank 8", trainable=80_000, examples_per_s=40.0)]  # fmt: skip
    lines = lora_sst2.speed_table(rows).splitlines()
    assert lines[2] == "| flaxbert | full | 22,000,000 | 30.0 | 2.50x |"
    assert lines[4] == "| flaxbert | LoRA rank 8 | 80,000 | 40.0 | - |"  # no keras-hub row for it: no ratio


def test_the_accuracy_table_has_a_row_per_arm():
    row = dict(arm="LoRA rank 8", learning_rate=5e-4, trainable=75_266, fit_s=101.26, dev_accuracy=0.8543,
               dev_loss=0.35219)  # fmt: skip
    line = lora_sst2.accuracy_table([row]).splitlines()[2]
    assert line == "| LoRA rank 8 | 0.0005 | 75,266 | 101.3 | 0.8543 | 0.3522 |"
