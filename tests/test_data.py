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
    # names are not said to be numbers (TREC's fine labels were said to "range over 0..49")
    named = data.Split("names.tsv", ["a", "b", "c"], np.array([0, 2, 1], np.int32), ("ABBR:exp", "DESC:def", "HUM:ind"))
    said = r"'label' hold label names whose class ids run 0\.\.2, but the model has num_classes=2 .*--num-classes 3"
    with pytest.raises(data.DataError, match=said):
        data.check_labels(named, 2, "label")


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl", "parquet"])
def test_a_row_without_its_label_is_an_error_not_a_class(tmp_path, kind):
    """A short TSV / CSV line, a JSON object without the key, a parquet null: the row is named, never read as a label
    (they used to become the class name 'None', or a KeyError)."""
    rows = [("a fine film .", "pos"), ("dull", None), ("good", "neg")]
    path = _write(tmp_path, kind, rows)
    if kind == "tsv":  # a line that ends before its label field
        path.write_text("sentence\tlabel\na fine film .\tpos\ndull\ngood\tneg\n")
    elif kind == "csv":
        path.write_text("sentence,label\na fine film .,pos\ndull\ngood,neg\n")
    elif kind == "jsonl":
        path.write_text('{"sentence": "a fine film .", "label": "pos"}\n{"sentence": "dull"}\n'
                        '{"sentence": "good", "label": "neg"}\n')  # fmt: skip
    for names, infer in (((), True), (("neg", "pos"), False)):
        with pytest.raises(data.DataError, match=r"row 2 has no value in column 'label'; fill it in or remove"):
            data.read_split(path, ("sentence",), "label", names, infer_label_names=infer)


def test_an_empty_label_or_a_missing_text_is_an_error(tmp_path):
    empty = tmp_path / "empty_label.tsv"
    empty.write_text("sentence\tlabel\na\t1\nb\t \n")
    with pytest.raises(data.DataError, match=r"row 2 has no value in column 'label'"):
        data.read_split(empty, ("sentence",), "label")
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"sentence": "a", "label": 1}\n{"label": 1}\n')
    with pytest.raises(data.DataError, match=r"row 2 has no value in column 'sentence'"):
        data.read_split(no_text, ("sentence",), None)


def test_the_hubs_offline_setting_is_read_in_a_fresh_process(tmp_path):
    """HF_HUB_OFFLINE=1 with nothing cached: HubUnavailable, the error train.py turns into its local-files hint. In a
    fresh interpreter, because `huggingface_hub.constants` is a submodule that `import huggingface_hub` does not load:
    reading it as an attribute crashed until something else had imported it (this test process always has)."""
    import os
    import subprocess
    import sys

    code = ("from flaxbert import data\n"
            "try:\n    data.hub_file('nyu-mll/glue', 'sst2/train.parquet', None, offline=False)\n"
            "except data.HubUnavailable as error:\n    print('unavailable:', error)\n")  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "unavailable: nyu-mll/glue/sst2/train.parquet is not in the Hugging Face cache and offline mode is on" in (
        result.stdout
    )


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl", "parquet"])
def test_a_column_named_twice_is_refused(tmp_path, kind):
    """The second of two label columns was read silently (the first ignored)."""
    path = tmp_path / f"twice.{kind}"
    if kind in ("tsv", "csv"):
        sep = "\t" if kind == "tsv" else ","
        path.write_text(f"sentence{sep}label{sep}label\na{sep}1{sep}0\n")
    elif kind == "jsonl":
        path.write_text('{"sentence": "a", "label": 1, "label": 0}\n')
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array([1]), pa.array([0])],
                                            names=["sentence", "label", "label"]), path)  # fmt: skip
    with pytest.raises(data.DataError, match=r"names the columns \['label'\] more than once"):
        data.read_split(path, ("sentence",), "label")


@pytest.mark.parametrize("header", ["sentence,label,,", ",sentence,label,"])
def test_columns_named_twice_that_are_not_read_are_no_problem(tmp_path, header):
    """A spreadsheet's trailing empty columns, pandas' unnamed index column plus a trailing comma."""
    path = tmp_path / "unnamed.csv"
    rows = ["a,1,,", "b,0,,"] if header.startswith("sentence") else ["0,a,1,", "1,b,0,"]
    path.write_text("\n".join([header, *rows]) + "\n")
    split = data.read_split(path, ("sentence",), "label")
    assert split.texts == ["a", "b"] and split.labels.tolist() == [1, 0]
    (tmp_path / "extra.jsonl").write_text('{"sentence": "a", "label": 1, "id": 1, "id": 2}\n')
    assert data.read_split(tmp_path / "extra.jsonl", ("sentence",), "label").labels.tolist() == [1]


@pytest.mark.parametrize("kind", ["tsv", "csv"])
def test_a_row_with_more_fields_than_the_header_is_refused(tmp_path, kind):
    """A comma in an unquoted CSV text (or a tab in a TSV one) cut the text at it, silently."""
    path = tmp_path / f"extra.{kind}"
    sep = "\t" if kind == "tsv" else ","
    path.write_text(f"label{sep}sentence\n1{sep}fine\n0{sep}no wit {sep} only gags\n")
    with pytest.raises(data.DataError, match=r"row 2 has 3 fields but the header names 2: a (tab|comma) inside"):
        data.read_split(path, ("sentence",), "label")


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl", "txt"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, kind):
    """Spreadsheets write one: the first column was '\\ufeffsentence', a .txt's first label the class '\\ufeff0'."""
    path = tmp_path / f"bom.{kind}"
    text = {
        "tsv": "sentence\tlabel\na\t0\nb\t1\n",
        "csv": "sentence,label\na,0\nb,1\n",
        "jsonl": '{"sentence": "a", "label": 0}\n{"sentence": "b", "label": 1}\n',
        "txt": "0 a\n1 b\n",
    }[kind]
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    split = data.read_split(path, ("text" if kind == "txt" else "sentence",), "label", infer_label_names=True)
    assert split.texts == ["a", "b"] and split.labels.tolist() == [0, 1] and split.label_names == ()


def test_labels_that_mix_ids_and_names_are_refused_naming_the_stray_one(tmp_path):
    """One "pos" among integer labels made every label a name (3 classes '0', '1', 'pos') and hinted --num-classes 3."""
    path = tmp_path / "mixed.tsv"
    path.write_text("sentence\tlabel\na\t0\nb\t1\nc\tpos\nd\t1\n")
    with pytest.raises(data.DataError, match=r"mixes integer labels with names \['pos'\] \(the first in row 3\)"):
        data.read_split(path, ("sentence",), "label", infer_label_names=True)


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl", "parquet"])
def test_whole_numbers_written_as_floats_are_class_ids(tmp_path, kind):
    """pandas writes an integer column with a gap as 0.0, 1.0, ...: those are the ids 0, 1, ..., as JSONL's 1.0 was.
    In TSV and CSV they used to become names sorted as strings ('0.0', '1.0', '10.0', '2.0'), so 10.0 got id 2 while
    an integer-labelled dev file's 10 kept 10: silently swapped classes."""
    rows = [(f"s{i}", float(y)) for i, y in enumerate([0, 1, 10, 2])]
    split = data.read_split(_write(tmp_path, kind, rows), ("sentence",), "label", infer_label_names=True)
    assert split.label_names == () and split.labels.tolist() == [0, 1, 10, 2]


@pytest.mark.parametrize("kind", ["tsv", "jsonl", "parquet"])
def test_numbers_that_are_not_whole_are_refused_unless_named(tmp_path, kind):
    """A score column (0.5, 1.5) is not classes: it used to become two classes named '0.5' and '1.5'."""
    path = _write(tmp_path, kind, [("a", 1.0), ("b", 0.5), ("c", 1.5)])
    for infer in (True, False):
        with pytest.raises(data.DataError, match=r"row 2: column 'label' holds '?0\.5'?, which is not a class id .* "
                                                 r"list them with --label-names"):  # fmt: skip
            data.read_split(path, ("sentence",), "label", infer_label_names=infer)
    if kind == "tsv":  # numbers that name classes, named
        split = data.read_split(path, ("sentence",), "label", label_names=("1.0", "0.5", "1.5"))
        assert split.labels.tolist() == [0, 1, 2]


def test_a_label_beyond_int32_is_refused_naming_its_row(tmp_path):
    """It used to end in numpy's OverflowError traceback instead of the out-of-range message."""
    path = tmp_path / "huge.tsv"
    path.write_text("sentence\tlabel\na\t0\nb\t3000000000\n")
    with pytest.raises(data.DataError, match=r"row 2: label 3000000000 in column 'label' is not a class id"):
        data.read_split(path, ("sentence",), "label", infer_label_names=True)


def test_a_txt_file_to_predict_is_one_whole_text_a_line(tmp_path):
    """Lines that all started with a number lost it, read as a label ('1 of the best films' -> 'of the best films');
    a blank line was dropped, so prediction N no longer matched line N; and `--text-column sentence` (SST-2's) was
    refused: "column 'sentence' not found ... its columns are ['text']"."""
    numbered = tmp_path / "new.txt"
    numbered.write_text("1 of the best films\n2 hours of boredom\n")
    for columns in (("text",), ("sentence",)):
        assert data.read_split(numbered, columns, None).texts == ["1 of the best films", "2 hours of boredom"]
    blank = tmp_path / "blank.txt"
    blank.write_text("a witty , seductive movie .\n\n2 stars at most\r\n")
    assert data.read_split(blank, ("sentence",), None).texts == ["a witty , seductive movie .", "", "2 stars at most"]
    with pytest.raises(data.DataError, match=r"new.txt' is one text a line, but text_columns \['q', 'a'\] ask for"):
        data.read_split(numbered, ("q", "a"), None)
    labelled = data.read_split(numbered, ("text",), "label")  # read for its labels, the same file is 'LABEL text'
    assert labelled.texts == ["of the best films", "hours of boredom"] and labelled.labels.tolist() == [1, 2]


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl", "txt"])
def test_a_file_that_is_not_utf8_is_named_with_the_fix(tmp_path, kind):
    path = tmp_path / f"latin.{kind}"
    text = {"tsv": "sentence\tlabel\ncaf\xe9\t1\n", "csv": "sentence,label\ncaf\xe9,1\n",
            "jsonl": '{"sentence": "caf\xe9", "label": 1}\n', "txt": "1 caf\xe9\n"}[kind]  # fmt: skip
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(data.DataError, match=rf"latin.{kind}': it is not UTF-8 .*; save it as UTF-8 .*iconv -f latin1"):
        data.read_split(path, ("text" if kind == "txt" else "sentence",), "label")


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl", "parquet"])
def test_numbers_are_the_label_names_that_spell_them(tmp_path, kind):
    """With --label-names 1,2,3, pandas' 1.0 and 2.0 were read as the class ids 1 and 2 (the classes named '2' and '3')
    while the integers 1 and 2 were the classes named '1' and '2'."""
    for label in (float, int, str):
        path = _write(tmp_path, kind, [("a", 1), ("b", 2), ("c", 3)], label=label)
        split = data.read_split(path, ("sentence",), "label", label_names=("1", "2", "3"))
        assert split.labels.tolist() == [0, 1, 2]


def test_numbers_among_numeric_label_names_are_not_class_ids(tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text("".join(json.dumps({"sentence": "s", "label": y}) + "\n" for y in [3, "2.0", " 1", 3.0, 0]))
    with pytest.raises(data.DataError, match=r"labels \['0'\] .* not among label_names \['1', '2', '3'\]; as some "
                                             r"names are numbers, a number is not read as a class id"):  # fmt: skip
        data.read_split(path, ("sentence",), "label", label_names=("1", "2", "3"))
    split = data.read_split(path, ("sentence",), "label", label_names=("0", "1", "2", "3"))
    assert split.labels.tolist() == [3, 2, 1, 3, 0]
    with pytest.raises(data.DataError, match=r"\['0', '1', '2', '2.0'\] name one class twice \('2' and '2.0'\)"):
        data.read_split(path, ("sentence",), "label", label_names=("0", "1", "2", "2.0"))
    words = data.read_split(path, ("sentence",), "label", label_names=("a", "b", "c", "d"))  # names: ids as they are
    assert words.labels.tolist() == [3, 2, 1, 3, 0]


def test_with_some_names_numbers_a_number_no_name_spells_is_refused(tmp_path):
    """Names that mix words and numbers ('neg', '1'): any number is a name, so a 0 names no class, not class 0."""
    path = tmp_path / "mixed.tsv"
    path.write_text("sentence\tlabel\na\tneg\nb\t1\nc\t0\n")
    with pytest.raises(data.DataError, match=r"labels \['0'\] .* not among label_names \['neg', '1'\]; as some names "
                                             r"are numbers, a number is not read as a class id"):  # fmt: skip
        data.read_split(path, ("sentence",), "label", label_names=("neg", "1"))


def test_json_true_and_false_labels_are_names(tmp_path):
    """JSON's booleans are names ("False", "True"), not the class ids 0 and 1 Python's bool would make of them."""
    path = tmp_path / "bools.jsonl"
    path.write_text("".join(json.dumps({"sentence": s, "label": y}) + "\n" for s, y in [("a", True), ("b", False)]))
    split = data.read_split(path, ("sentence",), "label", infer_label_names=True)
    assert (split.label_names, split.labels.tolist()) == (("False", "True"), [1, 0])
    with pytest.raises(data.DataError, match="label names"):
        data.read_split(path, ("sentence",), "label")


def test_a_pinned_dataset_revision_is_read_at_that_commit(tmp_path, monkeypatch):
    """`data.hub_revision` reaches huggingface_hub: a cache holding two commits of the dataset serves the pinned one,
    not the branch's newest."""
    import pathlib

    import huggingface_hub.constants

    repo = tmp_path / "hub" / "datasets--org--glue"
    pinned, newest = "a" * 40, "b" * 40
    for commit in (pinned, newest):
        (repo / "snapshots" / commit / "sst2").mkdir(parents=True)
        (repo / "snapshots" / commit / "sst2" / "train.tsv").write_text(commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(newest)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for revision, commit in ((pinned, pinned), ("main", newest)):
        path = data.hub_file("org/glue", "sst2/train.tsv", revision, offline=True)
        assert pathlib.Path(path).read_text() == commit


def test_label_names_are_compared_without_surrounding_whitespace(tmp_path):
    """'pos' and 'pos ' were two classes, and --label-names neg,pos refused the file's 'pos ' (' 1' was already 1)."""
    path = tmp_path / "spaces.tsv"
    path.write_text("sentence\tlabel\na\tpos\nb\tpos \nc\t neg\n")
    inferred = data.read_split(path, ("sentence",), "label", infer_label_names=True)
    assert inferred.label_names == ("neg", "pos") and inferred.labels.tolist() == [1, 1, 0]
    given = data.read_split(path, ("sentence",), "label", label_names=(" neg", "pos "))
    assert given.label_names == ("neg", "pos") and given.labels.tolist() == [1, 1, 0]
    with pytest.raises(data.DataError, match=r"\['pos', 'pos '\] name one class twice \('pos' and 'pos '\)"):
        data.read_split(path, ("sentence",), "label", label_names=("pos", "pos "))
