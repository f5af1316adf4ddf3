"""Turns what a user passes to fit / evaluate / predict into checked, preprocessed arrays (`ArrayData`).

Accepted `x`: raw strings (a list, a 1-D array, or a column of pandas, polars, pyarrow or `datasets`), sentence pairs
as a tuple of two such batches (both need a preprocessor), or a dict of [N, L] int arrays matching the backbone's
inputs. Accepted `y`: class ids (booleans as 0 and 1, as Keras casts them), or class names when the classifier has
`label_names`. Every check here runs before any device work, so a rejected call leaves the model untouched.
"""

from __future__ import annotations

import copy
import difflib
import warnings
from collections.abc import Iterable, Mapping, Set, Sized

import numpy as np

from flaxbert.data import whole_number
from flaxbert.models.inputs import as_array, check_inputs
from flaxbert.parallel.mesh import warning_stacklevel
from flaxbert.presets.text_assets import check_vocabulary
from flaxbert.training.batches import ArrayData


def _is_text(x) -> bool:
    return isinstance(x, (str, bytes, list, tuple)) or (isinstance(x, np.ndarray) and x.dtype.kind in "USO")


def prepare(x, y, sample_weight, *, preprocessor, backbone_config, num_classes: int, need_labels: bool,
            label_names: tuple[str, ...] | None = None, bucket: bool = False, class_weight=None):  # fmt: skip
    """Returns `(ArrayData, is_text)`.

    Args:
        label_names: the classifier's class names: `y` may then hold names, mapped to their index in it.
        class_weight: Keras' `fit(class_weight=...)`, `{class: weight}` (class ids, or names of `label_names`):
            each example is weighted by its class's weight, 1 for a class left out. Not with `sample_weight`.
        bucket: pack raw text only as wide as the length bucket of its longest row (`preprocessor.bucket`), not to
            `sequence_length`, so memory follows the texts' lengths. For callers that cut every batch to its bucket
            (`make_batch(..., bucket=True)`): those batches come out the same from either width, as every bucket
            below the packed width is a bucket of `sequence_length` too.

    Raises:
        ValueError: empty input, strings without a preprocessor, wrong dict keys, labels that are missing, not
            integers (nor names of `label_names`), out of range or of another length than `x`, bad sample weights
            or class weights.
    """
    per_class = _class_weights(class_weight, sample_weight, num_classes, label_names)  # before any tokenizing
    x = _from_column(x)
    if isinstance(x, tuple):
        x = tuple(_from_column(part) for part in x)
        if any(isinstance(part, dict) for part in x):  # read as text segments, it was refused as strings
            raise ValueError(
                f"x is a tuple of {len(x)} holding a dict, like a (features, labels) pair: pass the dict of "
                "token_ids / padding_mask arrays as x and the labels as y (a tuple as x holds the segments of "
                "sentence pairs)."
            )
        numbers = [i for i, part in enumerate(x) if _starts_with_a_number(part)]
        if numbers:  # read as text segments, it would be refused item by item
            raise ValueError(
                f"x is a tuple of {len(x)} whose part {numbers[0]} holds numbers, like a (texts, labels) pair: pass "
                "the texts as x and the labels as y (a tuple as x holds the segments of sentence pairs)."
            )
    if isinstance(x, dict):
        inputs = check_inputs(x, backbone_config, warn_level=5)  # the caller of fit / evaluate / predict
        is_text = False
    elif _is_text(x):
        _check_text(x, preprocessor, backbone_config)
        if bucket and not preprocessor.bucket:
            preprocessor = copy.copy(preprocessor)  # the user's own keeps its setting
            preprocessor.bucket = True
        inputs = check_inputs(preprocessor(x), backbone_config, warn_level=5)
        is_text = True
    else:
        raise ValueError(
            f"x must be a list of strings, a tuple of two lists (sentence pairs) or a dict of int arrays; "
            f"got {type(x).__name__}."
        )
    size = len(inputs["token_ids"])
    labels = _labels(y, size, num_classes, label_names) if y is not None else None
    if need_labels and labels is None:
        names = " or names of label_names" if label_names else ""
        raise ValueError(f"y is missing: pass class labels, one per example (integer class ids{names}).")
    weights = _weights(sample_weight, size) if per_class is None else per_class[labels]
    return ArrayData(inputs, labels, weights), is_text


def _from_column(x):
    """A column of a table as a numpy array or a list, as Keras takes one: a pandas or polars Series (what has
    `to_numpy` without being a numpy array), a pyarrow array, or any other ordered, sized batch that is not a list,
    such as a Hugging Face `datasets` column (`dataset["text"]`). A whole dataframe is refused, naming its columns;
    anything else, or a column that will not convert, is returned as it is (and refused as such)."""
    if isinstance(x, (np.ndarray, dict, list, tuple, str, bytes)):
        return x
    columns = getattr(x, "column_names", None)  # a Hugging Face dataset
    if columns is None and callable(getattr(x, "to_numpy", None)):
        columns = getattr(x, "columns", None)  # a pandas or polars dataframe
    if columns is not None:
        names = [str(name) for name in list(columns)]
        shown = ", ".join(repr(name) for name in names[:5]) + (", ..." if len(names) > 5 else "")
        example = repr(names[0]) if names else "'text'"
        raise ValueError(
            f"x is a whole {type(x).__name__} with columns {shown}: pass the column that holds the texts, e.g. "
            f"x[{example}], or a tuple of two such columns for sentence pairs."
        )
    if callable(getattr(x, "to_numpy", None)):
        try:
            return np.asarray(x.to_numpy())
        except Exception:  # a pyarrow string array converts only with zero_copy_only=False
            pass
        try:
            return np.asarray(x.to_numpy(zero_copy_only=False))
        except Exception:
            return x
    array_like = hasattr(x, "__array__") or hasattr(x, "dtype")  # jax, torch: said to be no batch of strings
    if (isinstance(x, Sized) and isinstance(x, Iterable) and hasattr(x, "__getitem__") and not array_like
            and not isinstance(x, (Set, Mapping))):  # fmt: skip
        return list(x)  # a sequence of another library (a `datasets` column): its items, checked as a list's
    return x


def check_preprocessor(preprocessor, backbone_config) -> None:
    """Refuses a preprocessor whose rows the backbone cannot take: longer than its position embeddings, or with token
    ids past its embedding table. At construction, and at each call, as `sequence_length` and `tokenizer` may be set
    since: otherwise only the texts long enough, or holding a rare token, would fail."""
    longest = backbone_config.max_sequence_length
    if preprocessor.sequence_length > longest:
        raise ValueError(
            f"preprocessor.sequence_length={preprocessor.sequence_length} is longer than the backbone's "
            f"max_sequence_length={longest} (its position embeddings): use a sequence_length of at most {longest}."
        )
    check_vocabulary(preprocessor.tokenizer, backbone_config.vocabulary_size, "preprocessor: ",
                     "Use the tokenizer the backbone was trained with.")  # fmt: skip


def _check_text(x, preprocessor, backbone_config) -> None:
    """Refuses raw-text `x` that is not a batch (or a tuple of batches) this classifier can preprocess."""
    if preprocessor is None:
        raise ValueError(
            "x holds raw strings but this classifier has preprocessor=None: pass a preprocessor (e.g. "
            "BertTextClassifierPreprocessor) or preprocessed inputs as a dict of token_ids / padding_mask arrays."
        )
    check_preprocessor(preprocessor, backbone_config)
    if isinstance(x, (str, bytes)) or (isinstance(x, np.ndarray) and x.ndim == 0):
        raise ValueError("x must be a batch of strings (a list), not one string: wrap it in a list.")
    if isinstance(x, tuple) and x and all(isinstance(part, (str, bytes)) for part in x):
        if len(x) == 2:
            raise ValueError(
                "x is a tuple of two strings, which is not a batch: for two texts pass a list [first, second]; for "
                "one sentence pair pass a tuple of lists, one per segment: ([first_text], [second_text])."
            )
        raise ValueError(
            f"x is a tuple of {len(x)} string(s), not a batch of examples: pass a list of strings, e.g. list(x) "
            "(a tuple holds segments: a sentence pair is a tuple of two lists, ([first_text], [second_text]))."
        )
    if len(x) == 0 or (isinstance(x, tuple) and any(hasattr(part, "__len__") and not len(part) for part in x)):
        raise ValueError("x is empty: pass at least one example.")
    segments = getattr(backbone_config, "num_segments", None)  # DistilBERT has no segment embeddings
    if isinstance(x, tuple) and segments is not None and len(x) > segments:
        takes = "one batch of strings: it takes no sentence pairs" if segments == 1 else (
            "one batch of strings, or a pair (first_texts, second_texts)")  # fmt: skip
        raise ValueError(
            f"x is a tuple of {len(x)} text segments, but this BERT has {segments} segment type"
            f"{'s' if segments > 1 else ''} (its token_type embeddings): pass {takes}."
        )


def _starts_with_a_number(part) -> bool:
    try:
        return len(part) > 0 and isinstance(part[0], int | float | np.number | np.bool_)
    except TypeError:  # not a sized, indexable batch: refused as text later, as it was
        return False


def _labels(y, size: int, num_classes: int, label_names: tuple[str, ...] | None) -> np.ndarray:
    if isinstance(y, Mapping):
        keys = ", ".join(repr(key) for key in list(y)[:5])
        raise ValueError(f"y is a {type(y).__name__} (keys {keys}): pass the labels themselves, one per example, "
                         "e.g. y['label'].")  # fmt: skip
    labels = as_array(y, "y", "pass one integer class id per example.")
    if labels.dtype == bool:  # Keras' sparse cross-entropy casts them: False is class 0, True class 1
        labels = labels.astype(np.int64)
    if labels.ndim == 2 and labels.shape[1] == 1:  # a column of ids, which Keras' sparse cross-entropy takes too
        labels = labels[:, 0]
    if labels.ndim != 1:
        rows = " (one-hot or probability rows? pass their class ids, y.argmax(axis=-1))" if labels.ndim == 2 else ""
        raise ValueError(f"y must hold one class id per example, shape (n,) or (n, 1); got shape {labels.shape}{rows}.")
    if len(labels) != size:
        raise ValueError(f"len(x) != len(y): {size} examples but {len(labels)} labels.")
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        _check_range(labels, num_classes, label_names)  # before the cast: 1e20 is said as given, not as int64's wrap
        labels = labels.astype(np.int64)
    if labels.dtype.kind in "US" or (labels.dtype.kind == "O" and all(isinstance(n, str) for n in labels.tolist())):
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in labels.tolist()]
        return _ids_of_names(names, num_classes, label_names)
    if labels.dtype.kind not in "iu":
        missing = _missing_labels(labels)
        if missing.size:
            more = f" (and {missing.size - 1} more)" if missing.size > 1 else ""
            raise ValueError(
                f"y has no label at position {missing[0]}{more} (NaN or None): drop the unlabelled examples or fill "
                "in their labels."
            )
        raise ValueError(f"y must hold integer class ids in [0, {num_classes}), got dtype {labels.dtype}.")
    _check_range(labels, num_classes, label_names)
    if _numbers_not_their_ids(label_names):
        warnings.warn(_numbers_note(label_names), stacklevel=warning_stacklevel(5))  # the caller of fit / evaluate
    return labels.astype(np.int32)


def _numbers_not_their_ids(label_names: tuple[str, ...] | None) -> bool:
    """Whether some class name is an integer other than its class id ("1".."5" for star ratings, "-1" and "1"): an
    integer label could then mean the id or the name, and train.py reads numbers in a data file as names (numbers by
    its rule, `whole_number`)."""
    numbers = [whole_number(name) for name in label_names or ()]
    return any(number is not None and number != i for i, number in enumerate(numbers))


def _numbers_note(label_names: tuple[str, ...]) -> str:
    return (
        f"the label_names {list(label_names)} hold numbers other than their positions, and integer labels are read "
        f"as class ids (positions in label_names), as Keras reads them: the label 1 means the class named "
        f"{label_names[1]!r}. To mean classes by their names, pass the labels as strings (y.astype(str)), as train.py "
        "reads a data file's labels."
    )


def _check_range(labels: np.ndarray, num_classes: int, label_names: tuple[str, ...] | None) -> None:
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        names = f" ({_numbers_note(label_names)})" if _numbers_not_their_ids(label_names) else ""
        raise ValueError(
            f"y has labels outside [0, {num_classes}) (num_classes={num_classes}): e.g. {bad[:5].tolist()}; "
            f"fix the labels or build the classifier with more classes{names}."
        )


def _missing_labels(labels: np.ndarray) -> np.ndarray:
    """The positions of NaN (float) and None / NaN / pandas NA (object) labels."""
    if labels.dtype.kind == "f":
        return np.flatnonzero(np.isnan(labels))
    if labels.dtype.kind == "O":
        return np.flatnonzero([v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NAType"
                               for v in labels.tolist()])  # fmt: skip
    return np.array([], int)


def _ids_of_names(names: list[str], num_classes: int, label_names: tuple[str, ...] | None) -> np.ndarray:
    """Class names as the class ids of `label_names` (the model's own numbering), or a ValueError saying how to
    pass them."""
    if label_names is None:
        shown = sorted(set(names))
        raise ValueError(
            f"y holds label names ({shown[:5]}{' ...' if len(shown) > 5 else ''}), not class ids, and this classifier "
            f"has no label_names to map them through: pass integer ids in [0, {num_classes}), numbering the classes "
            "as the model was trained (the order of its outputs; sorting the names may number them differently), "
            "or build the classifier with label_names=[name of class 0, name of class 1, ...]."
        )
    ids = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(names) - set(ids))
    if unknown:
        ids_among_names = [name for name in unknown if whole_number(name) is not None]
        mixed = (
            f" ({ids_among_names[0]!r} looks like a class id: numpy reads a list of names and integers as strings, "
            "so pass all ids or all names)"
            if ids_among_names and len(ids_among_names) < len(set(names))
            else ""
        )
        raise ValueError(
            f"y holds label names that are not among this classifier's label_names {list(label_names)}: "
            f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}{mixed}; fix the labels, or pass integer class ids."
        )
    return np.array([ids[name] for name in names], np.int32)


_LARGEST_WEIGHT = float(np.finfo(np.float32).max)  # the steps weigh in float32: a larger weight would become inf


def _bad_weights(weights: np.ndarray) -> np.ndarray:
    """Where sample or class weights (float64) are not finite, negative or beyond `_LARGEST_WEIGHT`."""
    return ~(np.isfinite(weights) & (weights >= 0) & (weights <= _LARGEST_WEIGHT))


def split_validation(data: ArrayData, validation_split: float, class_weighted: bool) -> tuple[ArrayData, ArrayData]:
    """Keras' `validation_split`: `(train, validation)`, the validation part the last `validation_split` of the rows,
    as they were given (before any shuffling). The validation rows keep their `sample_weight`, not class weights
    (`class_weighted`: `data`'s weights are those), which Keras applies to training data only."""
    size = len(data)
    split_at = int(np.floor(size * (1.0 - validation_split)))  # Keras' rounding
    if split_at in (0, size):
        raise ValueError(
            f"validation_split={validation_split} of {size} examples leaves "
            f"{'no training' if split_at == 0 else 'no validation'} example: pass more examples or another "
            "validation_split."
        )

    def part(rows: slice, weighted: bool) -> ArrayData:
        weights = data.sample_weight[rows] if weighted and data.sample_weight is not None else None
        return ArrayData({k: v[rows] for k, v in data.inputs.items()}, data.labels[rows], weights)

    return part(slice(0, split_at), True), part(slice(split_at, size), not class_weighted)


def _class_weights(class_weight, sample_weight, num_classes: int, label_names) -> np.ndarray | None:
    """Keras' `class_weight` as one float32 weight per class id (1 for a class it leaves out), checked: keys are class
    ids in range or names of `label_names`, each class given once; weights as `sample_weight`'s."""
    if class_weight is None:
        return None
    if sample_weight is not None:
        raise ValueError(
            "fit got both class_weight and sample_weight (Keras refuses the pair too): pass one. To weigh by both, "
            "pass their product, sample_weight=sample_weight * np.take(weight_of_each_class_id, y)."
        )
    if not isinstance(class_weight, Mapping):
        listed = " (a list of one weight per class id is dict(enumerate(weights)))" if isinstance(
            class_weight, (list, tuple, np.ndarray)) else ""  # fmt: skip
        raise ValueError(
            f"class_weight must be a dict {{class: weight}} keyed by class ids or names of label_names, got "
            f"{type(class_weight).__name__}{listed}."
        )
    table, given = np.ones(num_classes, np.float64), {}
    for key, value in class_weight.items():
        class_id = _class_id(key, num_classes, label_names)
        if class_id in given:
            raise ValueError(
                f"class_weight weighs class {class_id} twice, as {given[class_id]!r} and {key!r}: keep one."
            )
        given[class_id] = key
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        if not number or _bad_weights(np.float64(value)):
            raise ValueError(
                f"class_weight[{key!r}] must be a finite, non-negative number (at most float32's largest, "
                f"{_LARGEST_WEIGHT:.4g}), got {value!r}."
            )
        table[class_id] = float(value)
    return table.astype(np.float32)


def _class_id(key, num_classes: int, label_names) -> int:
    """A key of `class_weight` as its class id."""
    if isinstance(key, str):
        if label_names is None:
            raise ValueError(
                f"class_weight names the class {key!r}, and this classifier has no label_names to map names through: "
                f"key it by class ids in [0, {num_classes}), or build the classifier with label_names."
            )
        if key not in label_names:
            close = difflib.get_close_matches(key, label_names, n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise ValueError(
                f"class_weight names the class {key!r}, which is not among this classifier's label_names "
                f"{list(label_names)}{hint}."
            )
        return label_names.index(key)
    if not isinstance(key, (int, np.integer)) or isinstance(key, (bool, np.bool_)):
        raise ValueError(
            f"class_weight's keys must be class ids (integers) or names of label_names, got {key!r} "
            f"({type(key).__name__})."
        )
    if not 0 <= key < num_classes:
        raise ValueError(
            f"class_weight has the class id {key}, outside [0, {num_classes}) (num_classes={num_classes}): class ids "
            "count from 0."
        )
    return int(key)


def _weights(sample_weight, size: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    weights = as_array(sample_weight, "sample_weight", "pass one number per example.", dtype=np.float64)
    if weights.shape == (size, 1):  # a column of weights, which Keras takes too
        weights = weights[:, 0]
    if weights.shape != (size,):
        raise ValueError(f"sample_weight must have one weight per example ({size}), got shape {weights.shape}.")
    bad = _bad_weights(weights)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"sample_weight must be finite, non-negative and at most {_LARGEST_WEIGHT:.4g} (float32's largest); "
            f"sample_weight[{first}] is {float(weights[first])!r}."
        )
    return weights.astype(np.float32)
