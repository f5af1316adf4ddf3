"""flaxbert's text pipeline: WordPiece tokenizers and classifier preprocessors on HF `tokenizers` and numpy.

It runs on numpy and the Rust `tokenizers` library: no jax or TensorFlow in the text path.
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
