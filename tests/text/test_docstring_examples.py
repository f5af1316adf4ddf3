"""The runnable examples in flaxbert.text's docstrings give the outputs they show."""

import doctest

import pytest

from flaxbert.text import bucketing, preprocessor, tokenizer


@pytest.mark.parametrize("module", [tokenizer, preprocessor, bucketing], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
