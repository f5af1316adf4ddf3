"""Damaged side files of a preset fail with flaxbert's own message naming the file and what is wrong with it.

Each of these raised a bare JSONDecodeError, KeyError, AttributeError or IndexError from deep inside a loader, or
called a missing file corrupt.
"""

import json
import shutil

import h5py
import numpy as np
import pytest

import flaxbert

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
HF_CONFIG = dict(model_type="bert", vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=8, max_position_embeddings=16)  # fmt: skip


def test_transformers_side_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(HF_CONFIG))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": ["model.safetensors"]}))
    with pytest.raises(ValueError, match=r"model.safetensors.index.json: 'weight_map' is a JSON list, not an object"):
        flaxbert.BertBackbone.from_preset(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": 1}}))
    with pytest.raises(ValueError, match="'weight_map' must map each weight name to a file name"):
        flaxbert.BertBackbone.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{")
    with pytest.raises(ValueError, match=r"tokenizer.json is not valid JSON \(.*\); the file is corrupt"):
        flaxbert.BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": []}))
    with pytest.raises(ValueError, match="tokenizer.json lacks 'model'"):
        flaxbert.BertTokenizer.from_preset(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (tmp_path / "tokenizer_config.json").write_text("{")
    with pytest.raises(ValueError, match="tokenizer_config.json is not valid JSON"):
        flaxbert.BertTokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[]")
    with pytest.raises(ValueError, match="tokenizer_config.json holds a JSON list, not an object"):
        flaxbert.BertTokenizer.from_preset(tmp_path)


@pytest.fixture(scope="module")
def keras_preset(keras_hub, tmp_path_factory):
    """A keras-hub BertTextClassifier preset with keras-hub's tokenizer files (written by hand: they need tf-text)."""
    path = tmp_path_factory.mktemp("keras") / "preset"
    backbone = keras_hub.models.BertBackbone(vocabulary_size=7, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=8, max_sequence_length=16)  # fmt: skip
    keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None).save_to_preset(str(path))
    (path / "assets" / "tokenizer").mkdir(parents=True)
    (path / "assets" / "tokenizer" / "vocabulary.txt").write_text("\n".join(VOCAB) + "\n")
    (path / "tokenizer.json").write_text(json.dumps({"class_name": "BertTokenizer", "config": {"lowercase": True}}))
    (path / "preprocessor.json").write_text(json.dumps({"class_name": "BertTextClassifierPreprocessor",
                                                        "config": {"sequence_length": 16}}))  # fmt: skip
    return path


def _damaged(preset, tmp_path, damage):
    copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
    shutil.copytree(preset, copy)
    damage(copy)
    return copy


def _drop_num_heads(preset):
    config = json.loads((preset / "config.json").read_text())
    del config["config"]["num_heads"]
    (preset / "config.json").write_text(json.dumps(config))


def _add_third_dense_variable(preset):
    with h5py.File(preset / "model.weights.h5", "r+") as f:
        f.create_dataset("layers/dense/vars/2", data=np.zeros(8, "f4"))


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda p: (p / "task.json").write_text("{"), ValueError, r"task.json is not valid JSON"),
        (_drop_num_heads, ValueError, r"config.json lacks 'num_heads', which a keras-hub BertBackbone config needs"),
        (
            lambda p: (p / "tokenizer.json").write_text('{"class_name": "BertTokenizer"}'),
            ValueError,
            r"tokenizer.json lacks 'config'",
        ),
        (lambda p: (p / "preprocessor.json").write_text("{"), ValueError, r"preprocessor.json is not valid JSON"),
        (
            _add_third_dense_variable,
            ValueError,
            r"unexpected variable 'layers/dense/vars/2' in the weights file: that layer has 2 variable\(s\)",
        ),
        (lambda p: (p / "task.weights.h5").unlink(), FileNotFoundError, r"task.weights.h5 is missing"),
    ],
    ids=["task_json", "config_field", "tokenizer_json", "preprocessor_json", "variable_index", "task_weights"],
)
def test_keras_side_files(keras_preset, tmp_path, damage, error, message):
    with pytest.raises(error, match=message):
        flaxbert.TextClassifier.from_preset(_damaged(keras_preset, tmp_path, damage))
