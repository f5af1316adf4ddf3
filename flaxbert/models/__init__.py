"""The functional core: frozen configs and linen modules that are pure functions of (params, inputs)."""

from flaxbert.models.bert import BertEncoder
from flaxbert.models.config import BertConfig, BertHeadConfig, DistilBertConfig, DistilBertHeadConfig, compute_dtype
from flaxbert.models.distil_bert import DistilBertEncoder
from flaxbert.models.heads import BertClassifier, DistilBertClassifier

__all__ = [
    "BertClassifier",
    "BertConfig",
    "BertEncoder",
    "BertHeadConfig",
    "DistilBertClassifier",
    "DistilBertConfig",
    "DistilBertEncoder",
    "DistilBertHeadConfig",
    "compute_dtype",
]
