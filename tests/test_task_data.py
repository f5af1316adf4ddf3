"""What fit / evaluate / predict make of the user's `x` and `y` (`flaxbert.tasks.data.prepare`): raw text packed only
as wide as its length bucket, label names numbered by the classifier's `label_names`, and clear errors for inputs that
are not a batch."""

import jax
import numpy as np
import pytest

import flaxbert
from flaxbert.models import BertConfig
from flaxbert.models.inputs import check_inputs
from flaxbert.tasks.data import prepare, split_validation
from flaxbert.text.bucketing import bucket_length, bucket_lengths
from flaxbert.training.batches import ArrayData, longest_first, make_batch

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jumped", "."]
CONFIG = BertConfig(vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=8)


def _preprocessor(sequence_length=512):
    return flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=sequence_length)


def _prepare(x, y=None, *, preprocessor=None, label_names=None, bucket=False):
    data, _ = prepare(x, y, None, preprocessor=preprocessor or _preprocessor(), backbone_config=CONFIG,
                      num_classes=3, need_labels=False, label_names=label_names, bucket=bucket)  # fmt: skip
    return data


@pytest.mark.parametrize("sequence_length", [2, 15, 16, 17, 100, 128, 129, 512, 513, 1000])
def test_every_bucket_below_a_bucket_width_is_a_bucket_of_the_sequence_length(sequence_length):
    """What packing to a bucket rests on: a batch cut from arrays `width` wide gets the bucket it gets from arrays
    `sequence_length` wide."""
    for width in bucket_lengths(sequence_length):
        for longest in range(1, width + 1):
            assert bucket_length(longest, width) == bucket_length(longest, sequence_length)


@pytest.mark.parametrize("pairs", [False, True])
def test_text_packed_to_its_bucket_gives_the_same_batches_as_packed_to_sequence_length(pairs):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(VOCAB[5:], n)) for n in rng.integers(1, 40, 50)]
    x = (texts, texts[::-1]) if pairs else texts
    preprocessor = _preprocessor()
    full, narrow = _prepare(x, preprocessor=preprocessor), _prepare(x, preprocessor=preprocessor, bucket=True)
    longest = int(full.inputs["padding_mask"].sum(axis=1).max())
    assert full.inputs["token_ids"].shape == (50, 512)
    assert narrow.inputs["token_ids"].shape == (50, 96 if pairs else 48) == (50, bucket_length(longest, 512))
    assert not preprocessor.bucket  # the user's preprocessor is left as it was
    order = longest_first(full)
    np.testing.assert_array_equal(longest_first(narrow), order)
    for batch_size in (1, 4, 16):
        for start in range(0, 50, batch_size):
            indices = order[start : start + batch_size]
            expected = make_batch(full, indices, batch_size, bucket=True)
            got = make_batch(narrow, indices, batch_size, bucket=True)
            assert jax.tree.map(np.shape, got) == jax.tree.map(np.shape, expected)  # one program per shape
            jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_int32_inputs_are_checked_without_a_copy():
    inputs = {"token_ids": np.ones((2, 4), np.int32), "segment_ids": np.zeros((2, 4), np.int32),
              "padding_mask": np.ones((2, 4), np.int32)}  # fmt: skip
    checked = check_inputs(inputs, CONFIG)
    assert all(checked[k] is inputs[k] for k in inputs)
    as_int64 = check_inputs({k: v.astype(np.int64) for k, v in inputs.items()}, CONFIG)
    assert all(v.dtype == np.int32 for v in as_int64.values())


NAMES = ["fox", "dog", "fox", "cat"]


@pytest.mark.parametrize("y", [NAMES, np.array(NAMES), [n.encode() for n in NAMES], np.array(NAMES, object)])
def test_label_names_are_numbered_as_the_classifier_names_its_classes(y):
    data = _prepare(["the fox"] * 4, y, label_names=("fox", "dog", "cat"))
    np.testing.assert_array_equal(data.labels, [0, 1, 0, 2])  # not sorted([...]): cat 0, dog 1, fox 2
    assert data.labels.dtype == np.int32


def test_unknown_label_names_are_refused_naming_them_and_the_known_ones():
    with pytest.raises(ValueError, match=r"not among this classifier's label_names \['fox', 'dog', 'cat'\]: \['cow'"):
        _prepare(["the fox"] * 3, ["fox", "cow", "owl"], label_names=("fox", "dog", "cat"))


def test_a_model_of_one_segment_type_says_it_takes_no_pairs():
    """It said to pass "a pair (first_texts, second_texts)": the input it had just refused."""
    import dataclasses

    one_type = dataclasses.replace(CONFIG, num_segments=1)
    refused = r"has 1 segment type \(its token_type embeddings\): pass one batch of strings: it takes no sentence pairs"
    with pytest.raises(ValueError, match=refused + r"\.$"):
        prepare((["the fox"], ["the dog"]), None, None, preprocessor=_preprocessor(), backbone_config=one_type,
                num_classes=3, need_labels=False, label_names=None, bucket=False)  # fmt: skip


def test_label_names_without_the_classifiers_names_say_how_to_number_them():
    with pytest.raises(ValueError, match=r"y holds label names \(\['cat', 'fox'\]\), not class ids") as error:
        _prepare(["the fox"] * 2, ["fox", "cat"])
    message = str(error.value)
    assert "sorted(" not in message and "as the model was trained" in message and "label_names=" in message


@pytest.mark.parametrize(
    "x,message",
    [
        (np.array("the fox"), r"not one string: wrap it in a list"),
        (np.array("the fox", object), r"not one string: wrap it in a list"),
        (("the", "quick", "brown", "fox"), r"x is a tuple of 4 string\(s\), not a batch of examples: pass a list of s"),
        (("the fox",), r"x is a tuple of 1 string\(s\), not a batch of examples: pass a list of strings"),
        (("the", "fox"), r"for two texts pass a list \[first, second\]; for one sentence pair pass a tuple of lists"),
        # a (features, labels) pair as x was told it held raw strings
        (({"token_ids": np.ones((2, 4), np.int32)}, np.zeros(2)), r"x is a tuple of 2 holding a dict, like a \(fea"),
    ],
)
def test_text_that_is_not_a_batch_is_refused_saying_what_to_pass(x, message):
    with pytest.raises(ValueError, match=message):
        _prepare(x)


class _Column:
    """A dataframe column as pandas and polars have them: not a list nor an array, but `to_numpy()` gives one."""

    def __init__(self, values, convertible=True):
        self.values, self.convertible = values, convertible

    def to_numpy(self):
        if not self.convertible:  # as a pyarrow string array without zero_copy_only=False
            raise TypeError("needs a copy")
        return np.array(self.values, dtype=object)


def test_a_dataframe_column_is_taken_as_its_array_for_x_and_for_pairs():
    """Keras takes a pandas Series as x (tf.data converts it); flaxbert refused it as not a list of strings."""
    texts, seconds = ["the quick fox", "jumped ."], ["the fox", "."]
    np.testing.assert_array_equal(_prepare(_Column(texts)).inputs["token_ids"], _prepare(texts).inputs["token_ids"])
    paired = _prepare((_Column(texts), _Column(seconds))).inputs["token_ids"]
    np.testing.assert_array_equal(paired, _prepare((texts, seconds)).inputs["token_ids"])
    with pytest.raises(ValueError, match="x must be a list of strings, .* got _Column"):
        _prepare(_Column(texts, convertible=False))


def test_a_texts_and_labels_pair_given_as_x_is_named():
    """Keras' fit((x, y)) spelling: the labels were read as a second text segment, refused item by item."""
    with pytest.raises(ValueError, match=r"x is a tuple of 2 whose part 1 holds numbers, like a \(texts, labels\)"):
        _prepare((["the fox", "the"], np.array([0, 1])))


def test_a_huge_float_label_is_named_as_given():
    """It was cast to int64 first (numpy warned of an invalid cast) and named as -9223372036854775808."""
    outside = r"y has labels outside \[0, 3\) \(num_classes=3\): e.g. \[1e\+20\]"
    with np.errstate(invalid="raise"), pytest.raises(ValueError, match=outside):
        _prepare(["the", "fox"], [0.0, 1e20])


def test_one_weight_per_row_in_a_column_is_taken_as_keras_takes_it():
    x = {"token_ids": np.full((3, 4), 5), "padding_mask": np.ones((3, 4), int), "segment_ids": np.zeros((3, 4), int)}
    kwargs = dict(preprocessor=None, backbone_config=CONFIG, num_classes=3, need_labels=True, label_names=None)
    column, _ = prepare(x, [0, 1, 2], np.array([[1.0], [0.5], [2.0]]), **kwargs)
    flat, _ = prepare(x, [0, 1, 2], np.array([1.0, 0.5, 2.0]), **kwargs)
    np.testing.assert_array_equal(column.sample_weight, [1.0, 0.5, 2.0])
    np.testing.assert_array_equal(flat.sample_weight, column.sample_weight)
    with pytest.raises(ValueError, match=r"sample_weight must have one weight per example \(3\), got shape \(3, 2\)"):
        prepare(x, [0, 1, 2], np.ones((3, 2)), **kwargs)


def test_one_example_of_ids_not_in_a_batch_is_told_to_add_the_batch_axis():
    x = {"token_ids": np.full(4, 5), "padding_mask": np.ones(4, int), "segment_ids": np.zeros(4, int)}
    with pytest.raises(ValueError, match=r"has shape \(4,\); every input must be 2-D, \[batch, length\] \(one example"):
        check_inputs(x, CONFIG)


def test_ids_with_an_axis_too_many_are_told_to_drop_it_and_a_float_mask_to_be_cast():
    """The 2-D message told a [1, B, L] input to add a leading axis; a 0./1. float mask was only said to be float."""
    ids = np.full((1, 2, 4), 5)
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids)}
    with pytest.raises(ValueError, match=r"has shape \(1, 2, 4\); every input must be 2-D, .*\(drop the extra axes"):
        check_inputs(x, CONFIG)
    x = {"token_ids": np.full((2, 4), 5), "padding_mask": np.ones((2, 4)), "segment_ids": np.zeros((2, 4), int)}
    with pytest.raises(ValueError, match=r"must hold integers \(1 for tokens, .*mask.astype\(int\), got dtype float"):
        check_inputs(x, CONFIG)


class _Sequence:
    """A column as a Hugging Face `datasets` column is: sized and indexable, but neither a list nor convertible."""

    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, index):
        return self.values[index]

    def __iter__(self):
        return iter(self.values)


def test_pyarrow_string_arrays_and_other_libraries_sequences_are_taken_as_lists():
    """A pyarrow StringArray converts only with zero_copy_only=False, and a `datasets` column (`dataset["text"]`)
    has no to_numpy: both were refused as not a list of strings, though a ChunkedArray of the same strings was taken."""
    pa = pytest.importorskip("pyarrow")  # a test dependency
    texts, seconds = ["the quick fox", "jumped ."], ["the fox", "."]
    want = _prepare(texts).inputs["token_ids"]
    for column in (pa.array(texts), pa.array(texts, pa.large_string()), pa.chunked_array([texts]), _Sequence(texts)):
        np.testing.assert_array_equal(_prepare(column).inputs["token_ids"], want, err_msg=type(column).__name__)
    paired = _prepare((pa.array(texts), _Sequence(seconds))).inputs["token_ids"]
    np.testing.assert_array_equal(paired, _prepare((texts, seconds)).inputs["token_ids"])
    labels = _prepare(texts, _Sequence([2, 0])).labels
    np.testing.assert_array_equal(labels, [2, 0])


class _Frame(_Column):
    """A dataframe as pandas and polars have one: `to_numpy()` gives its [rows, columns] array."""

    columns = ["sentence", "label"]


def test_a_whole_table_as_x_is_told_to_pass_its_column_of_texts():
    """A one-column DataFrame was said to be a numpy array of shape (n, 1), as if the user had passed one."""
    pa = pytest.importorskip("pyarrow")
    frame = _Frame([["the fox", 0], ["the", 1]])
    with pytest.raises(ValueError, match=r"x is a whole _Frame with columns 'sentence', 'label': pass the column th"):
        _prepare(frame)
    # a pyarrow table, as a Hugging Face Dataset, names its columns as `column_names`
    with pytest.raises(ValueError, match=r"x is a whole Table with columns 'text': .* e.g. x\['text'\]"):
        _prepare(pa.table({"text": ["the fox", "the"]}))


def test_maps_and_arrays_are_not_read_as_batches_of_texts():
    """What is sized and indexable is taken as a sequence of texts, but not a mapping (a transformers BatchEncoding
    would give its keys as texts) nor an array of another library (ids are passed as a dict)."""
    from collections import UserDict

    with pytest.raises(ValueError, match="x must be a list of strings, .* got UserDict"):
        _prepare(UserDict({"input_ids": [[2, 5, 3]]}))
    with pytest.raises(ValueError, match="x must be a list of strings, .* got ArrayImpl"):
        _prepare(jax.numpy.zeros((2, 4), int))


def test_boolean_labels_are_class_ids_as_keras_casts_them_and_a_dict_of_labels_is_named():
    """Keras' sparse cross-entropy takes True / False as classes 1 / 0; flaxbert refused them as not integers. A dict
    of labels (a dataset's columns) was said to be "shape ()"."""
    np.testing.assert_array_equal(_prepare(["the", "fox"], np.array([True, False])).labels, [1, 0])
    with pytest.raises(ValueError, match=r"y is a dict \(keys 'label'\): pass the labels themselves, .* y\['label'\]"):
        _prepare(["the", "fox"], {"label": [0, 1]})


def _weighted(y, class_weight, *, label_names=None, sample_weight=None):
    data, _ = prepare(["the fox"] * len(y), y, sample_weight, preprocessor=_preprocessor(), backbone_config=CONFIG,
                      num_classes=3, need_labels=True, label_names=label_names, class_weight=class_weight)  # fmt: skip
    return data.sample_weight


def test_class_weight_weighs_each_example_by_its_class_as_keras_does(keras):
    """Keras' `class_weight_to_sample_weights` is the reference: a class left out of the dict weighs 1."""
    from keras.src.trainers.data_adapters.data_adapter_utils import class_weight_to_sample_weights

    y = np.array([0, 2, 1, 1, 0, 2, 2])
    for class_weight in ({0: 0.5, 2: 3.0}, {1: 0.0}, {}, {np.int64(2): np.float32(1.5), 0: 2}):
        got = _weighted(y, class_weight)
        np.testing.assert_array_equal(got, class_weight_to_sample_weights(y, class_weight))
        assert got.dtype == np.float32
    names = ("negative", "neutral", "positive")  # flaxbert's own: names of label_names, as y may hold them
    np.testing.assert_array_equal(_weighted(np.array(names)[y], {"negative": 0.5, 2: 3.0}, label_names=names),
                                  _weighted(y, {0: 0.5, 2: 3.0}))  # fmt: skip


@pytest.mark.parametrize(
    ("class_weight", "label_names", "message"),
    [
        ([1.0, 2.0, 1.0], None, r"must be a dict \{class: weight\}.* is dict\(enumerate\(weights\)\)"),
        ({3: 2.0}, None, r"class id 3, outside \[0, 3\) \(num_classes=3\): class ids count from 0"),
        ({-1: 2.0}, None, r"class id -1, outside \[0, 3\)"),
        ({1.0: 2.0}, None, r"keys must be class ids \(integers\) or names of label_names, got 1.0 \(float\)"),
        ({True: 2.0}, None, r"keys must be class ids .* got True \(bool\)"),
        ({"pos": 2.0}, None, r"names the class 'pos', and this classifier has no label_names"),
        ({"postive": 2.0}, ("negative", "neutral", "positive"), r"not among .* \(did you mean 'positive'\?\)"),
        ({2: 2.0, "positive": 1.0}, ("negative", "neutral", "positive"), r"weighs class 2 twice, as 2 and 'positive'"),
        ({0: -1.0}, None, r"class_weight\[0\] must be a finite, non-negative number .* got -1.0"),
        ({0: float("nan")}, None, r"class_weight\[0\] must be a finite, non-negative number .* got nan"),
        ({0: 1e39}, None, r"at most float32's largest"),
        ({0: "2"}, None, r"class_weight\[0\] must be a finite, non-negative number .* got '2'"),
    ],
)
def test_bad_class_weights_are_refused_naming_what_is_wrong(class_weight, label_names, message):
    with pytest.raises(ValueError, match=message):
        _weighted(np.array([0, 1, 2]), class_weight, label_names=label_names)


def test_class_weight_with_sample_weight_is_refused_as_keras_refuses_it():
    with pytest.raises(ValueError, match=r"both class_weight and sample_weight .* pass their product"):
        _weighted(np.array([0, 1, 2]), {0: 2.0}, sample_weight=[1.0, 1.0, 1.0])


def test_validation_split_cuts_the_rows_where_keras_cuts_them(keras):
    """Keras' own split of arrays (its fit's `validation_split`) is the reference, at sizes that do not divide."""
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    for size in range(2, 25):
        rows = np.arange(size)
        data = ArrayData({"token_ids": rows[:, None]}, rows, None)
        for fraction in (0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.9):
            try:
                (train,), (validation,) = train_validation_split((rows,), validation_split=fraction)
            except ValueError:  # Keras leaves no row on one side: refused here too
                with pytest.raises(ValueError, match=f"validation_split={fraction} of {size} examples leaves no"):
                    split_validation(data, fraction, class_weighted=False)
                continue
            ours = split_validation(data, fraction, class_weighted=False)
            assert [part.labels.tolist() for part in ours] == [list(train), list(validation)], (size, fraction)
            assert [part.inputs["token_ids"][:, 0].tolist() for part in ours] == [list(train), list(validation)]
