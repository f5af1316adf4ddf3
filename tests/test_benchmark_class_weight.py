"""benchmarks/class_weight_trec.py's reading of TREC, its scores and its table (no model is trained here)."""

import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import class_weight_trec  # noqa: E402


def test_trec_lines_give_the_question_and_its_coarse_class(tmp_path):
    path = tmp_path / "trec.label"
    path.write_bytes("ABBR:exp What does NASA stand for ?\nNUM:date When did Caf\xe9 open ?\n".encode("latin-1"))
    texts, labels = class_weight_trec.read_trec(path)
    assert texts == ["What does NASA stand for ?", "When did Café open ?"]
    assert labels.tolist() == [0, 5]


def test_the_real_test_split_has_its_published_class_counts(shared_data):
    _, labels = class_weight_trec.read_trec(shared_data / "trec" / "TREC_10.label")
    assert np.bincount(labels).tolist() == [9, 138, 94, 65, 81, 113]


def test_scores_count_recall_and_macro_f1_per_class():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 1, 2])
    got = class_weight_trec.scores(predicted, labels, 3)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["recall"] == {0: 0.5, 1: 1.0, 2: 0.5}
    f1 = [2 * 1 * 0.5 / 1.5, 2 * 0.5 * 1 / 1.5, 2 * 1 * 0.5 / 1.5]  # precision 1, 1/2, 1
    assert got["macro_f1"] == pytest.approx(np.mean(f1))
    assert class_weight_trec.scores(np.array([0, 0]), np.array([0, 0]), 2)["macro_f1"] == pytest.approx(0.5)


def test_the_table_has_a_row_per_run():
    row = {"arm": "balanced", "seed": 1, "accuracy": 0.962, "macro_f1": 0.9501,
           "recall": dict(enumerate([0.778, 0.986, 0.894, 0.985, 0.988, 0.973]))}  # fmt: skip
    out = class_weight_trec.table([row])
    assert "| arm | seed | accuracy | macro-F1 | ABBR recall |" in out
    assert "| balanced | 1 | 0.962 | 0.950 | 0.778 | 0.986 | 0.894 | 0.985 | 0.988 | 0.973 |" in out
