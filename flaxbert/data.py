"""Dataset readers: local TSV / CSV / JSONL / parquet / label-first text files, and dataset files on the Hugging Face
Hub (GLUE SST-2 as parquet) -> texts and integer labels, checked at the boundary.

A text column is one string per example; two text columns make sentence pairs. Labels are integers, or names mapped
to integers through `label_names` (given, or the sorted names of the training file).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}


class DataError(ValueError):
    """A dataset file that cannot be used as asked; the message names the file and the fix."""


@dataclasses.dataclass
class Split:
    """One split: `texts` (a list of strings, or a pair of lists for sentence pairs), `labels` (int32, or None) and
    the `label_names` the labels were mapped through (() when the file holds integers)."""

    path: str
    texts: list[str] | tuple[list[str], list[str]]
    labels: np.ndarray | None
    label_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.texts[0] if isinstance(self.texts, tuple) else self.texts)


def read_rows(path, labelled: bool = True) -> tuple[list[str], list[dict]]:
    """The column names and rows of a TSV, CSV, JSONL or parquet file (or `label text` lines in .txt).

    A .txt file read for its texts alone (`labelled=False`: prediction input) is one whole text a line, column `text`:
    row N is line N, a blank line an empty text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist (paths are relative to {os.getcwd()}).")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"cannot read {str(path)!r}: the file name must end in one of {', '.join(FORMATS)}.")
    try:
        if kind in ("tsv", "csv"):
            return _read_delimited(path, kind)
        if kind == "jsonl":
            return _read_jsonl(path)
        if kind == "parquet":
            return _read_parquet(path)
        return _read_label_first(path) if labelled else _read_text_lines(path)
    except UnicodeDecodeError as error:
        raise DataError(
            f"cannot read {str(path)!r}: it is not UTF-8 ({error}); save it as UTF-8 (for a Latin-1 file: "
            f"iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name})."
        ) from None
    except (csv.Error, json.JSONDecodeError) as error:
        raise DataError(f"cannot parse {str(path)!r} as {kind}: {error}") from None


# utf-8-sig: a byte-order mark (which spreadsheet programs write) is not part of the first column's name or label.
_ENCODING = "utf-8-sig"


def _read_delimited(path: Path, kind: str):
    with open(path, newline="", encoding=_ENCODING) as f:
        # Sentences in GLUE TSVs carry bare quote characters (`` and ''): no quoting in TSV.
        tsv = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
        reader = csv.DictReader(f, **(tsv if kind == "tsv" else {}))
        columns = list(reader.fieldnames or [])  # a name given twice stays twice: `read_split` refuses it if read
        rows = list(reader)
    for number, row in enumerate(rows, 1):
        if None in row:  # DictReader keeps the fields past the header's under the key None
            separator = "tab" if kind == "tsv" else "comma"
            quote = "" if kind == "tsv" else " (or quote fields that contain commas)"
            raise DataError(
                f"{str(path)!r} row {number} has {len(columns) + len(row[None])} fields but the header names "
                f"{len(columns)}: a {separator} inside a text splits it; remove it{quote}."
            )
    return columns, rows


def _check_distinct(columns: list[str], wanted: list[str], where: str) -> None:
    """Refuses a `wanted` column that `columns` name more than once: which one is meant cannot be guessed (others,
    such as a spreadsheet's several unnamed columns, are not read)."""
    repeated = sorted({name for name in wanted if columns.count(name) > 1})
    if repeated:
        raise DataError(f"{where} names the columns {repeated} more than once; give each column its own name.")


class _Pairs(list):
    """A JSON object as json.loads read it: its (key, value) pairs in order, repeated keys included."""


def _read_jsonl(path: Path):
    rows, columns, repeated = [], {}, {}
    with open(path, encoding=_ENCODING) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line, object_pairs_hook=_Pairs)  # an object as its pairs: a repeated key stays seen
            if not isinstance(row, _Pairs):
                raise DataError(f"{str(path)!r} line {number} is not a JSON object; write one object per line.")
            keys = [key for key, _ in row]
            repeated.update(dict.fromkeys(key for key in keys if keys.count(key) > 1))
            row = dict(row)
            rows.append(row)
            columns.update(dict.fromkeys(row))
    return list(columns) + list(repeated), rows  # a key repeated in an object is listed twice, as a CSV header would


def _read_parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"reading {str(path)!r} needs pyarrow: pip install 'flaxbert[train]' (or pip install pyarrow)."
        ) from None
    try:
        names = list(pq.read_schema(path).names)
        _check_distinct(names, names, repr(str(path)))  # pyarrow reads no table with a repeated name, obscurely
        table = pq.read_table(path)
    except DataError:
        raise
    except Exception as error:  # pyarrow raises its own error types for corrupt files
        raise DataError(f"cannot read {str(path)!r} as parquet: {error}") from None
    return list(table.column_names), table.to_pylist()


def _lines(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of a text file, with their line numbers."""
    with open(path, encoding=_ENCODING) as f:
        numbered = [(number, line.rstrip("\r\n")) for number, line in enumerate(f, 1)]
    return [(number, line) for number, line in numbered if line.strip()]


def _read_label_first(path: Path):
    """SST-5's layout: one example a line, the label, one space, then the text."""
    rows = []
    for number, line in _lines(path):
        label, _, text = line.partition(" ")
        if not text:
            raise DataError(f"{str(path)!r} line {number} has no text after its label; expected 'LABEL text'.")
        rows.append({"label": label, "text": text})
    return ["label", "text"], rows


def _read_text_lines(path: Path):
    """Texts to classify, every line whole: prediction N is line N. A line's first word is never a label (lines that
    all started with a number lost it), and a blank line is an empty text, not dropped (that shifted the rows)."""
    with open(path, encoding=_ENCODING) as f:
        return ["text"], [{"text": line.rstrip("\r\n")} for line in f]


def read_split(
    path,
    text_columns: tuple[str, ...],
    label_column: str | None,
    label_names: tuple[str, ...] = (),
    limit: int = 0,
    infer_label_names: bool = False,
) -> Split:
    """Reads one split; `label_column=None` reads texts only (prediction input). `limit` > 0 keeps the first rows.

    Labels given as names need `label_names`; with `infer_label_names` (for a training file) they default to the
    sorted distinct names of all the file's rows. Names never keep surrounding whitespace ("pos " is "pos").
    A .txt file read for prediction is one text a line, whatever `text_columns` names.
    """
    columns, all_rows = read_rows(path, labelled=label_column is not None)
    if not all_rows:
        raise DataError(f"{str(path)!r} has no rows.")
    rows = all_rows[:limit] if limit else all_rows
    if not 1 <= len(text_columns) <= 2:
        raise DataError(f"text_columns must name one column, or two for sentence pairs; got {list(text_columns)}.")
    if label_column is None and FORMATS.get(Path(path).suffix.lower()) == "txt":
        text_columns = _txt_text_column(path, text_columns)
    wanted = [*text_columns, *([label_column] if label_column else [])]
    _check_distinct(columns, wanted, repr(str(path)))
    for name in wanted:
        if name not in columns:
            raise DataError(
                f"column {name!r} not found in {str(path)!r}; its columns are {columns}. "
                "Choose with --text-column / --label-column."
            )
    texts = [[_text(_cell(row, name, path, i), path, name, i) for i, row in enumerate(rows)] for name in text_columns]
    if label_column and infer_label_names and not label_names:
        values = [_cell(row, label_column, path, i, label=True) for i, row in enumerate(all_rows)]
        label_names = _names_of(values, path, label_column)
    labels = None
    if label_column:
        values = [_cell(row, label_column, path, i, label=True) for i, row in enumerate(rows)]
        labels = to_label_ids(values, label_names, path, label_column)
    names = tuple(_label_name(name) for name in label_names)
    return Split(str(path), texts[0] if len(texts) == 1 else (texts[0], texts[1]), labels, names)


def _txt_text_column(path, text_columns: tuple[str, ...]) -> tuple[str, ...]:
    """A .txt predict file's one column is its text, whatever --text-column names (`sentence`, SST-2's, is for the
    labelled files)."""
    if len(text_columns) == 2:
        raise DataError(
            f"{str(path)!r} is one text a line, but text_columns {list(text_columns)} ask for sentence pairs; give "
            "the pairs in a TSV, CSV, JSONL or parquet file with those columns."
        )
    return ("text",)


def _cell(row: dict, column: str, path, index: int, label: bool = False):
    """`row[column]`. A row without it (a short TSV / CSV line, a JSON object without the key, a parquet null, and for
    labels an empty field) is a one-line error, never a label or a text of its own."""
    value = row.get(column)
    if value is None or (label and isinstance(value, str) and not value.strip()):
        raise DataError(
            f"{str(path)!r} row {index + 1} has no value in column {column!r}; fill it in or remove the row."
        )
    return value


def _text(value, path, column: str, index: int) -> str:
    if not isinstance(value, str):
        raise DataError(f"{str(path)!r} row {index + 1}: column {column!r} holds {value!r}, not text.")
    return value


def _number(value) -> int | float | None:
    """A label's number: an int for a whole one (`3`, `"3"`, and `3.0` or `"3.0"`, as pandas writes an integer column
    that had a gap), a float for any other number (`0.5`: a score, not a class), None for a name."""
    if isinstance(value, bool):  # JSON's true / false: names
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else float(value)
    return None


def _label_name(value) -> str:
    """A label as a name: surrounding whitespace is not part of it ("pos " is "pos", as " 1" is 1)."""
    return str(value).strip()


def whole_number(value) -> int | None:
    """A label's value as a class id where it is a whole number (`3`, `"3"`, `"3.0"`), else None. fit and evaluate
    use it too, to tell whether label names are numbers."""
    number = _number(value)
    return number if isinstance(number, int) else None


def _refuse_fractions(values: list, path, column: str) -> None:
    """A label that is a number but not a whole one is neither a class id nor (unless named) a class name."""
    for i, value in enumerate(values):
        if isinstance(_number(value), float):
            raise DataError(
                f"{str(path)!r} row {i + 1}: column {column!r} holds {value!r}, which is not a class id (an integer "
                "from 0): a text classifier takes class ids or class names; if these numbers name classes, list them "
                "with --label-names."
            )


_INT32 = np.iinfo(np.int32)


def to_label_ids(values: list, label_names: tuple[str, ...], path, column: str) -> np.ndarray:
    """Class ids: whole numbers as they are (`2.0` as 2), names through `label_names` (without surrounding whitespace).

    With `label_names`, a label is the index of the name it spells, and a whole number (`2`, `2.0`, `"2.0"`) that of
    the name spelling the same number (`2.0` is the class named "2"). A number no name spells is a class id only when
    no name is a number; otherwise which class it means cannot be told, and it is refused.
    """
    if label_names:
        ids = _ids_by_name(values, label_names, path, column)
    else:
        _refuse_fractions(values, path, column)
        ids = [whole_number(v) for v in values]
        if any(i is None for i in ids):
            names = sorted({str(v) for v, i in zip(values, ids, strict=True) if i is None})
            raise DataError(
                f"{str(path)!r}: column {column!r} holds label names such as {names[:5]}; say which integer each "
                f"name means with --label-names (e.g. --label-names {','.join(names[:5])})."
            )
    for i, label in enumerate(ids):
        if not _INT32.min <= label <= _INT32.max:
            raise DataError(
                f"{str(path)!r} row {i + 1}: label {label} in column {column!r} is not a class id: class ids run "
                "from 0 to the number of classes - 1."
            )
    return np.asarray(ids, np.int32)


def _ids_by_name(values: list, label_names: tuple[str, ...], path, column: str) -> list[int]:
    names = [_label_name(name) for name in label_names]
    numbers = [whole_number(name) for name in names]
    keys = [name if number is None else number for name, number in zip(names, numbers, strict=True)]  # 2 is "2.0"
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise DataError(
                f"label_names {list(label_names)} name one class twice ({label_names[keys.index(key)]!r} and "
                f"{label_names[i]!r}): surrounding whitespace is not part of a name, and numbers are compared by "
                "value (2 is 2.0); give each class one name in --label-names."
            )
    index = {key: i for i, key in enumerate(keys)}
    numeric = any(number is not None for number in numbers)
    ids, unknown = [], set()
    for value in values:
        name, number = _label_name(value), whole_number(value)
        if name in index or number in index:
            ids.append(index[name] if name in index else index[number])
        elif number is not None and not numeric:  # names that are words: a number is a class id
            ids.append(number)
        else:
            unknown.add(name)
    if unknown:
        why = "; as some names are numbers, a number is not read as a class id" if numeric else ""
        raise DataError(
            f"{str(path)!r}: labels {sorted(unknown)[:5]} in column {column!r} are not among label_names {names}{why}."
        )
    return ids


def _names_of(values: list, path, column: str) -> tuple[str, ...]:
    """The sorted distinct label names, or () when every label is an integer; labels that mix the two are refused
    (a stray name among integers would otherwise make every integer a name of its own), and so are numbers that
    are not whole (a score column: sorted as names, 0.5 and 1.5 would silently become classes)."""
    _refuse_fractions(values, path, column)
    named = [whole_number(v) is None for v in values]
    if not any(named):
        return ()
    if not all(named):
        first = named.index(True)
        names = sorted({_label_name(v) for v, is_name in zip(values, named, strict=True) if is_name})
        raise DataError(
            f"{str(path)!r}: column {column!r} mixes integer labels with names {names[:5]} (the first in row "
            f"{first + 1}); use class ids throughout, or names throughout (ordered by --label-names)."
        )
    return tuple(sorted({_label_name(v) for v in values}))


def check_labels(split: Split, num_classes: int, column: str) -> None:
    """Every label in [0, num_classes); a one-line error names the file, the values and the fix."""
    if split.labels is None:
        return
    low, high = int(split.labels.min()), int(split.labels.max())
    if low < 0 or high >= num_classes:
        hint = "" if low < 0 else f"; set --num-classes {high + 1} if the data really has {high + 1} classes"
        held = (
            f"hold label names whose class ids run {low}..{high}" if split.label_names else f"range over {low}..{high}"
        )
        raise DataError(
            f"{split.path!r}: labels in column {column!r} {held}, but the model has num_classes={num_classes} "
            f"(labels must be 0..{num_classes - 1}){hint}."
        )


def hub_file(repo: str, filename: str, revision: str | None, offline: bool) -> str:
    """A dataset file from the Hugging Face Hub, through huggingface_hub's cache (HF_HOME / HF_HUB_CACHE)."""
    import huggingface_hub
    from huggingface_hub import constants  # a submodule: `import huggingface_hub` alone does not load it
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = offline or constants.HF_HUB_OFFLINE
    try:
        return huggingface_hub.hf_hub_download(
            repo, filename, repo_type="dataset", revision=revision, local_files_only=offline
        )
    except LocalEntryNotFoundError as error:
        raise HubUnavailable(repo, filename, offline) from error
    except huggingface_hub.errors.EntryNotFoundError:
        raise DataError(f"the Hub dataset {repo!r} has no file {filename!r}; check data.train / validation.") from None
    except (huggingface_hub.errors.HfHubHTTPError, OSError) as error:
        raise HubUnavailable(repo, filename, offline, str(error)) from error


class HubUnavailable(DataError):
    """A Hub dataset file that is neither cached nor downloadable (offline, or no network)."""

    def __init__(self, repo: str, filename: str, offline: bool, detail: str = ""):
        why = "offline mode is on" if offline else "the Hub could not be reached"
        self.repo, self.filename = repo, filename
        super().__init__(
            f"{repo}/{filename} is not in the Hugging Face cache and {why}"
            + (f" ({detail.splitlines()[0]})" if detail else "")
        )
