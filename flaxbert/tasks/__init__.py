"""keras-hub-style task objects: thin holders of config, params, preprocessor and compile settings."""

from flaxbert.tasks.text_classifier import BertTextClassifier, DistilBertTextClassifier, History, TextClassifier

__all__ = ["BertTextClassifier", "DistilBertTextClassifier", "History", "TextClassifier"]
