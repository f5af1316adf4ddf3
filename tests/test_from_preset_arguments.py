"""from_preset's keywords: unknown ones and a sequence_length with no preprocessor to set are refused, clearly."""

import pytest
from hf_factory import BERT_SHAPES, random_model, save

import flaxbert

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
TAKES = "load_weights, num_classes, preprocessor, sequence_length, dtype, seed, scan_layers, attention_kernel, "


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """A native BERT preset with a tokenizer, one without, and a transformers checkpoint without vocab.txt."""
    root = tmp_path_factory.mktemp("presets")
    backbone = flaxbert.BertBackbone(len(VOCAB), 1, 2, 16, 32, max_sequence_length=32)
    preprocessor = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=16)
    flaxbert.BertTextClassifier(backbone, 2, preprocessor=preprocessor).save_to_preset(root / "native")
    flaxbert.BertTextClassifier(backbone, 2).save_to_preset(root / "native_no_tokenizer")
    save(random_model("bert_classifier", BERT_SHAPES["h48_heads3_l1_seg3"], num_labels=2), root / "transformers")
    return root


@pytest.mark.parametrize("kind", ["native", "transformers"])
@pytest.mark.parametrize(
    ("keywords", "named"),
    [
        ({"compile": False}, "'compile'"),
        ({"name": "clf"}, "'name'"),
        ({"dropuot": 0.2}, "'dropuot' \\(did you mean 'dropout'\\?\\)"),
        ({"hidden_dim": 8}, "'hidden_dim'"),  # a DistilBERT head's
    ],
)
def test_an_unknown_keyword_is_refused_naming_those_from_preset_takes(presets, kind, keywords, named):
    """They reached the head config or the constructor: `BertHeadConfig.__init__() got an unexpected keyword argument
    'compile'` (keras-hub and transformers presets) or `BertTextClassifier.__init__() ...` (native ones)."""
    takes = f"BertTextClassifier.from_preset takes {TAKES}activation, dropout, label_names\\.$"
    with pytest.raises(TypeError, match=f"^from_preset got an unexpected keyword argument {named}; {takes}"):
        flaxbert.BertTextClassifier.from_preset(presets / kind, **keywords)
    if "hidden_dim" in keywords:  # TextClassifier takes it for DistilBERT presets: refused once the class is known
        with pytest.raises(TypeError, match=f"{named} \\(this preset makes a BertTextClassifier\\); {takes}"):
            flaxbert.TextClassifier.from_preset(presets / kind, **keywords)


def test_unknown_keywords_are_refused_before_the_preset_is_looked_for(tmp_path):
    takes = f"TextClassifier.from_preset takes {TAKES}activation, dropout, hidden_dim, label_names\\."
    with pytest.raises(TypeError, match=f"'compile', 'name'; {takes}"):
        flaxbert.TextClassifier.from_preset(tmp_path / "missing", compile=False, name="clf")


@pytest.mark.parametrize("num_classes", [3.0, 0, True, "3"])
def test_num_classes_that_is_no_positive_integer_is_refused_before_the_preset_is_looked_for(tmp_path, num_classes):
    """As the classifier constructors refuse it; 3.0 kept a 3-class head."""
    with pytest.raises(ValueError, match=rf"num_classes must be None .* or a positive integer, got {num_classes!r}"):
        flaxbert.TextClassifier.from_preset(tmp_path / "missing", num_classes=num_classes)


@pytest.mark.parametrize("kind", ["native", "transformers"])
def test_a_sequence_length_without_a_preprocessor_to_set_is_refused(presets, kind):
    """It was ignored: the classifier had no preprocessor, or the one passed, with its own length."""
    idle = "sequence_length=8 sets the length of the preprocessor that from_preset builds, but preprocessor=None was "
    with pytest.raises(ValueError, match=f"{idle}passed: it would do nothing; leave it out"):
        flaxbert.BertTextClassifier.from_preset(presets / kind, preprocessor=None, sequence_length=8)
    own = flaxbert.BertTextClassifierPreprocessor(flaxbert.BertTokenizer(VOCAB), sequence_length=16)
    with pytest.raises(ValueError, match="but a preprocessor was passed: .*set it on the preprocessor you pass"):
        flaxbert.BertTextClassifier.from_preset(presets / "native", preprocessor=own, sequence_length=8)


@pytest.mark.parametrize("kind", ["native_no_tokenizer", "transformers"])
def test_a_sequence_length_for_a_preset_without_a_tokenizer_is_refused(presets, kind):
    with pytest.raises(ValueError, match=r"has no tokenizer \(vocabulary\), so from_preset builds no preprocessor for "
                                         "sequence_length=8 to set: leave sequence_length out"):  # fmt: skip
        flaxbert.BertTextClassifier.from_preset(presets / kind, sequence_length=8)
    assert flaxbert.BertTextClassifier.from_preset(presets / kind).preprocessor is None
