"""flaxbert: keras-hub's BERT and DistilBERT text classifiers as a JAX/Flax functional library."""

from flaxbert.backbones import Backbone, BertBackbone, DistilBertBackbone
from flaxbert.compilation import enable_compilation_cache
from flaxbert.host_memory import reuse_host_memory
from flaxbert.tasks import BertTextClassifier, DistilBertTextClassifier, History, TextClassifier
from flaxbert.text import (
    BertTextClassifierPreprocessor,
    BertTokenizer,
    DistilBertTextClassifierPreprocessor,
    DistilBertTokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "BertBackbone",
    "BertTextClassifier",
    "BertTextClassifierPreprocessor",
    "BertTokenizer",
    "DistilBertBackbone",
    "DistilBertTextClassifier",
    "DistilBertTextClassifierPreprocessor",
    "DistilBertTokenizer",
    "History",
    "enable_compilation_cache",
    "reuse_host_memory",
    "TextClassifier",
]
