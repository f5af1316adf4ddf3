"""What fit / evaluate / predict make of the user's `x` and `y` (`flaxbert.tasks.data.prepare`): label names
numbered by the classifier's `label_names`, and clear errors for inputs that are not a batch."""

import numpy as np
import pytest

import flaxbert
from flaxbert.models import BertConfig
from flaxbert.tasks.data import prepare

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jumped", "."]
CONFIG = BertConfig(vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=8)


def _preprocessor(sequence_length=512):
    return flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=sequence_length)


def _prepare(x, y=None, *, preprocessor=None, label_names=None):
    data, _ = prepare(x, y, None, preprocessor=preprocessor or _preprocessor(), backbone_config=CONFIG,
                      num_classes=3, need_labels=False, label_names=label_names)  # fmt: skip
    return data


NAMES = ["fox", "dog", "fox", "cat"]


@pytest.mark.parametrize("y", [NAMES, np.array(NAMES), [n.encode() for n in NAMES], np.array(NAMES, object)])
def test_label_names_are_numbered_as_the_classifier_names_its_classes(y):
    data = _prepare(["the fox"] * 4, y, label_names=("fox", "dog", "cat"))
    np.testing.assert_array_equal(data.labels, [0, 1, 0, 2])  # not sorted([...]): cat 0, dog 1, fox 2
    assert data.labels.dtype == np.int32


def test_unknown_label_names_are_refused_naming_them_and_the_known_ones():
    with pytest.raises(ValueError, match=r"not among this classifier's label_names \['fox', 'dog', 'cat'\]: \['cow'"):
        _prepare(["the fox"] * 3, ["fox", "cow", "owl"], label_names=("fox", "dog", "cat"))


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
    ],
)
def test_text_that_is_not_a_batch_is_refused_saying_what_to_pass(x, message):
    with pytest.raises(ValueError, match=message):
        _prepare(x)
