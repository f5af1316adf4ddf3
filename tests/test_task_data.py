"""What fit / evaluate / predict make of the user's `x` and `y` (`flaxbert.tasks.data.prepare`): clear errors for
inputs that are not a batch."""

import numpy as np
import pytest

import flaxbert
from flaxbert.models import BertConfig
from flaxbert.tasks.data import prepare

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jumped", "."]
CONFIG = BertConfig(vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=8)


def _preprocessor(sequence_length=512):
    return flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=sequence_length)


def _prepare(x, y=None, *, preprocessor=None):
    data, _ = prepare(x, y, None, preprocessor=preprocessor or _preprocessor(), backbone_config=CONFIG,
                      num_classes=3, need_labels=False)  # fmt: skip
    return data


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
