"""flaxbert: keras-hub's BERT and DistilBERT text classifiers as a JAX/Flax functional library."""

__version__ = "0.1.0"
