"""Preset resolution: built-in names, hf:// through the real huggingface_hub cache code, kaggle://, local paths."""

import sys

import numpy as np
import pytest
from conftest import HUB_REVISION as REVISION
from hf_factory import BERT_SHAPES, padded_batch, random_model, save

import flaxbert
from flaxbert.presets import conversion_cache
from flaxbert.presets.resolve import resolve


def test_hf_handle_loads_from_the_cache_offline_and_is_converted_once(tmp_path, hub_cache):
    model = random_model("bert", BERT_SHAPES["h48_heads3_l1_seg3"])
    snapshot = hub_cache("someone/tiny-bert", save(model, tmp_path / "src"))
    backbone = flaxbert.BertBackbone.from_preset("hf://someone/tiny-bert")
    batch = padded_batch(99, 3)
    want = flaxbert.BertBackbone.from_preset(tmp_path / "src")(batch)["pooled_output"]
    np.testing.assert_allclose(backbone(batch)["pooled_output"], want)
    converted = tmp_path / "converted" / "someone--tiny-bert" / f"{REVISION}-c{conversion_cache.CONVERSION}"
    assert (converted / "params").is_dir() and '"format": "flaxbert"' in (converted / "config.json").read_text()
    (snapshot / "model.safetensors").unlink()  # later loads read only the converted native copy
    again = flaxbert.BertBackbone.from_preset("hf://someone/tiny-bert")
    np.testing.assert_array_equal(again(batch)["pooled_output"], backbone(batch)["pooled_output"])


def test_built_in_name_offline_with_nothing_cached_says_how_to_fix(hub_cache):
    message = r"'bert_tiny_en_uncased' \(hf://keras/bert_tiny_en_uncased\) is not in the Hugging Face cache .* Fix: run"
    with pytest.raises(FileNotFoundError, match=message):
        flaxbert.BertBackbone.from_preset("bert_tiny_en_uncased")


def test_unknown_name_lists_the_closest_presets():
    with pytest.raises(ValueError, match=r"Unknown preset 'bert_tiny_en_uncase'\. Did you mean 'bert_tiny_en_uncased'"):
        resolve("bert_tiny_en_uncase")


def test_kaggle_without_kagglehub_names_the_hf_mirror(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # kagglehub is an optional extra: as if not installed
    with pytest.raises(ValueError, match="needs kagglehub.* use its Hugging Face mirror 'hf://keras/bert_base_en'"):
        resolve("kaggle://keras/bert/keras/bert_base_en/3")
    with pytest.raises(ValueError, match="mirror 'hf://keras/bert_base_en_uncased'"):
        resolve("kaggle://keras/bert/keras/bert_base_en_uncased/2")


def test_missing_local_directory():
    with pytest.raises(FileNotFoundError, match="preset directory .*nowhere does not exist"):
        resolve("./nowhere")


def test_presets_are_listed_per_class():
    assert len(flaxbert.TextClassifier.presets) == 13
    assert set(flaxbert.DistilBertTextClassifier.presets) == {
        "distil_bert_base_en_uncased", "distil_bert_base_en", "distil_bert_base_multi"}  # fmt: skip
    assert set(flaxbert.BertTextClassifier.presets) == set(flaxbert.BertBackbone.presets)
    assert "bert_tiny_en_uncased_sst2" in flaxbert.BertTextClassifier.presets
    preset = flaxbert.BertBackbone.presets["bert_tiny_en_uncased_sst2"]
    assert (preset.num_classes, preset.hf_handle) == (2, "hf://keras/bert_tiny_en_uncased_sst2")
    assert preset.kaggle_handle == "kaggle://keras/bert/keras/bert_tiny_en_uncased_sst2/5"


def test_only_the_needed_files_are_requested(tmp_path, monkeypatch, hub_cache):
    """The download call alone is replaced: it records what flaxbert asks for and serves a local snapshot."""
    import fnmatch

    import huggingface_hub

    snapshot = hub_cache("keras/bert_tiny_en_uncased", save(random_model("bert", BERT_SHAPES["h48_heads3_l1_seg3"]),
                                                            tmp_path / "src"))  # fmt: skip
    asked = []

    def snapshot_download(repo_id, allow_patterns):
        asked.append((repo_id, allow_patterns))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    flaxbert.BertBackbone.from_preset("bert_tiny_en_uncased", load_weights=False)
    flaxbert.BertBackbone.from_preset("bert_tiny_en_uncased")
    (repo, without), (_, with_weights) = asked
    assert repo == "keras/bert_tiny_en_uncased"

    def wanted(name, patterns):
        return any(fnmatch.fnmatch(name, p) for p in patterns)

    assert wanted("config.json", without) and wanted("assets/tokenizer/vocabulary.txt", without)
    assert not any(wanted(f, without) for f in ("model.weights.h5", "model.safetensors", "pytorch_model.bin"))
    assert all(wanted(f, with_weights) for f in ("model.weights.h5", "task.weights.h5", "model.safetensors"))
    assert not any(wanted(f, with_weights) for f in ("tf_model.h5", "flax_model.msgpack", "training_args.bin"))
    assert flaxbert.BertTokenizer.presets["bert_tiny_en_uncased"].hf_handle == "hf://keras/bert_tiny_en_uncased"
