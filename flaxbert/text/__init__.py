"""flaxbert's text pipeline: WordPiece tokenizers and classifier preprocessors on HF `tokenizers` and numpy.

Its modules import neither jax nor flax (though importing the `flaxbert` package loads them for the models).
"""

from flaxbert.text.bucketing import bucket_lengths
from flaxbert.text.preprocessor import BertTextClassifierPreprocessor, DistilBertTextClassifierPreprocessor
from flaxbert.text.tokenizer import BertTokenizer, DistilBertTokenizer

__all__ = [
    "BertTextClassifierPreprocessor",
    "BertTokenizer",
    "DistilBertTextClassifierPreprocessor",
    "DistilBertTokenizer",
    "bucket_lengths",
]
