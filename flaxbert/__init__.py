"""flaxbert: keras-hub's BERT and DistilBERT text classifiers as a JAX/Flax functional library."""

from flaxbert.backbones import Backbone, BertBackbone, DistilBertBackbone

__version__ = "0.1.0"

__all__ = ["Backbone", "BertBackbone", "DistilBertBackbone"]
