"""The functional core: frozen configs and linen modules that are pure functions of (params, inputs)."""

from flaxbert.models.bert import BertEncoder
from flaxbert.models.config import BertConfig, BertHeadConfig, DistilBertConfig, DistilBertHeadConfig, compute_dtype
from flaxbert.models.distil_bert import DistilBertEncoder
from flaxbert.models.heads import BertClassifier, DistilBertClassifier
from flaxbert.models.inputs import check_inputs

__all__ = [
    "BertClassifier",
    "BertConfig",
    "BertEncoder",
    "BertHeadConfig",
    "DistilBertClassifier",
    "DistilBertConfig",
    "DistilBertEncoder",
    "DistilBertHeadConfig",
    "check_inputs",
    "compute_dtype",
]
