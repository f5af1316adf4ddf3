"""Dataset readers: every format reads the same examples; labels as ints or names; errors name the file and fix."""

import json

import numpy as np
import pytest

from flaxbert import data

ROWS = [("a fine film .", 1), ("dull , \"flat\" and `` long ''", 0), ("it\tworks", 1)]


def _write(tmp_path, kind: str, rows=ROWS, label=lambda y: y):
    path = tmp_path / f"split.{kind}"
    if kind == "tsv":
        path.write_text("sentence\tlabel\n" + "".join(f"{t.replace(chr(9), ' ')}\t{label(y)}\n" for t, y in rows))
    elif kind == "csv":
        import csv

        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows([(t, label(y)) for t, y in rows])
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"sentence": t, "label": label(y)}) + "\n" for t, y in rows))
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"sentence": [t for t, _ in rows], "label": [label(y) for _, y in rows]}), path)
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_formats_read_the_same_examples(tmp_path, kind):
    split = data.read_split(_write(tmp_path, kind), ("sentence",), "label")
    assert split.texts == [t for t, _ in ROWS]
    np.testing.assert_array_equal(split.labels, [1, 0, 1])
    assert split.labels.dtype == np.int32


def test_tsv_keeps_quote_characters(tmp_path):
    split = data.read_split(_write(tmp_path, "tsv"), ("sentence",), "label")
    assert split.texts == ["a fine film .", "dull , \"flat\" and `` long ''", "it works"]


def test_glue_sst2_dev_file(shared_data):
    split = data.read_split(shared_data / "sst2" / "dev.tsv", ("sentence",), "label")
    assert len(split) == 872 and np.bincount(split.labels).tolist() == [428, 444]


def test_label_first_text_layout(shared_data):
    split = data.read_split(shared_data / "sst5" / "dev.txt", ("text",), "label")
    assert len(split) == 1101 and sorted(set(split.labels.tolist())) == [0, 1, 2, 3, 4]


def test_sentence_pairs_and_limit(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"q": f"q{i}", "a": f"a{i}", "y": i % 2}) + "\n" for i in range(5)))
    split = data.read_split(path, ("q", "a"), "y", limit=3)
    assert split.texts == (["q0", "q1", "q2"], ["a0", "a1", "a2"]) and len(split) == 3


def test_label_names(tmp_path):
    path = _write(tmp_path, "csv", label=lambda y: ["neg", "pos"][y])
    inferred = data.read_split(path, ("sentence",), "label", limit=1, infer_label_names=True)
    assert inferred.label_names == ("neg", "pos")  # from every row, not only the first
    np.testing.assert_array_equal(inferred.labels, [1])
    split = data.read_split(path, ("sentence",), "label", label_names=("neg", "pos"))
    np.testing.assert_array_equal(split.labels, [1, 0, 1])
    with pytest.raises(data.DataError, match="--label-names"):
        data.read_split(path, ("sentence",), "label")
    with pytest.raises(data.DataError, match=r"not among label_names \['bad', 'good'\]"):
        data.read_split(path, ("sentence",), "label", label_names=("bad", "good"))


def test_errors_name_file_and_fix(tmp_path):
    path = _write(tmp_path, "csv")
    with pytest.raises(data.DataError, match=r"column 'text' not found .* columns are \['sentence', 'label'\]"):
        data.read_split(path, ("text",), "label")
    with pytest.raises(data.DataError, match="does not exist"):
        data.read_split(tmp_path / "missing.tsv", ("sentence",), "label")
    (tmp_path / "split.csv.bak").write_text("x")
    with pytest.raises(data.DataError, match="must end in one of"):
        data.read_rows(tmp_path / "split.csv.bak")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(data.DataError, match="has no rows"):
        data.read_split(tmp_path / "empty.jsonl", ("sentence",), "label")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(data.DataError, match="cannot read .* as parquet"):
        data.read_split(tmp_path / "bad.parquet", ("sentence",), "label")
    split = data.read_split(path, ("sentence",), "label")
    with pytest.raises(data.DataError, match=r"range over 0\.\.1, but the model has num_classes=1"):
        data.check_labels(split, 1, "label")
