"""The `>>>` examples in the public modules' docstrings run and print what they show (with the imports a user's own
code has: flaxbert and numpy as np)."""

import doctest
import importlib

import numpy as np
import pytest

import flaxbert

MODULES = [
    "flaxbert.backbones",
    "flaxbert.tasks.text_classifier",
    "flaxbert.text.tokenizer",
    "flaxbert.text.preprocessor",
    "flaxbert.text.bucketing",
    "flaxbert.training.keras_adam",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_written(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"flaxbert": flaxbert, "np": np}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {name}'s examples fail (printed above)"
