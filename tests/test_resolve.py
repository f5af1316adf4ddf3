"""Preset resolution: built-in names, hf:// through the real huggingface_hub cache code, kaggle://, local paths."""

import json
import pathlib
import re
import shutil
import sys
import types

import numpy as np
import pytest
from conftest import HUB_REVISION as REVISION
from hf_factory import BERT_SHAPES, padded_batch, random_model, save

import flaxbert
from flaxbert.presets import conversion_cache
from flaxbert.presets import resolve as resolve_module
from flaxbert.presets.resolve import resolve

BERT_CONFIG = json.dumps({"model_type": "bert", "vocab_size": 99, "hidden_size": 48, "num_hidden_layers": 1,
                          "num_attention_heads": 3, "intermediate_size": 37})  # fmt: skip
KERAS_CONFIG = json.dumps({"module": "keras_hub.src.models.bert.bert_backbone", "class_name": "BertBackbone",
                           "registered_name": "keras_hub>BertBackbone", "config": {}})  # fmt: skip


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


def test_a_url_is_refused_with_the_handle_or_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "gs://bucket/x" was taken for the local path gs:/bucket/x
    with pytest.raises(ValueError, match="preset 'gs://bucket/x': flaxbert reads no gs:// addresses; copy the preset"):
        resolve("gs://bucket/x")
    with pytest.raises(ValueError, match="a Hub repository is loaded by its handle: pass 'hf://google-bert/bert-base"):
        resolve("https://huggingface.co/google-bert/bert-base-uncased")
    with pytest.raises(ValueError, match="Did you mean 'bert_tiny_en_uncased'"):  # case is no typo
        resolve("BERT_TINY_EN_UNCASED")


def test_a_built_in_preset_of_the_other_architecture_is_refused_before_any_download(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded")

    monkeypatch.setattr(resolve_module, "_from_hub", no_download)
    with pytest.raises(ValueError, match="'bert_large_en' holds a bert checkpoint; load it with BertBackbone"):
        flaxbert.DistilBertTextClassifier.from_preset("bert_large_en")
    with pytest.raises(ValueError, match="'distil_bert_base_en' holds a distil_bert checkpoint; load it with Distil"):
        flaxbert.BertBackbone.from_preset("distil_bert_base_en")
    with pytest.raises(ValueError, match="load_weights must be True or False, got 'no'"):  # "no" loaded the weights
        flaxbert.TextClassifier.from_preset("bert_tiny_en_uncased", load_weights="no")


def test_kaggle_without_kagglehub_names_the_hf_mirror(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # kagglehub is an optional extra: as if not installed
    with pytest.raises(ValueError, match="needs kagglehub.* use its Hugging Face mirror 'hf://keras/bert_base_en'"):
        resolve("kaggle://keras/bert/keras/bert_base_en/3")
    with pytest.raises(ValueError, match="mirror 'hf://keras/bert_base_en_uncased'"):
        resolve("kaggle://keras/bert/keras/bert_base_en_uncased/2")
    with pytest.raises(ValueError, match="mirror 'hf://keras/bert_tiny_en_uncased_sst2'"):  # not bert_tiny_en_uncased's
        resolve("kaggle://keras/bert/keras/bert_tiny_en_uncased_sst2/5")


def test_a_kaggle_download_that_fails_is_one_clear_error(monkeypatch):
    def offline(handle):
        raise ConnectionError(f"HTTPSConnectionPool(host='api.kaggle.com'): Max retries exceeded ({handle})")

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(model_download=offline))
    with pytest.raises(FileNotFoundError, match=r"kaggle://keras/bert/keras/bert_base_en/3: kagglehub could not "
                       r"download it \(ConnectionError: .*api.kaggle.com.*\)\. Check the handle and the network .* or "
                       r"use its Hugging Face mirror 'hf://keras/bert_base_en'"):  # fmt: skip
        resolve("kaggle://keras/bert/keras/bert_base_en/3")


def test_missing_local_directory():
    with pytest.raises(FileNotFoundError, match="preset directory .*nowhere does not exist"):
        resolve("./nowhere")


def test_a_directory_named_like_a_built_in_preset_is_the_one_loaded(tmp_path, monkeypatch, hub_cache):
    """As in transformers, a directory that exists is what its name means: a preset saved as ./bert_tiny_en_uncased
    loads from there, offline, not from the Hub."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bert_tiny_en_uncased").mkdir()
    assert resolve("bert_tiny_en_uncased") == pathlib.Path("bert_tiny_en_uncased")
    offline = r"'bert_base_en_uncased' \(hf://keras/bert_base_en_uncased\) is not in the Hugging Face cache"
    with pytest.raises(FileNotFoundError, match=offline):  # no such directory: the built-in, from the (offline) Hub
        resolve("bert_base_en_uncased")


def test_a_file_is_refused_naming_its_directory(tmp_path, monkeypatch):
    (tmp_path / "my_preset").mkdir()
    (tmp_path / "my_preset" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"preset '.*my_preset/config.json' is a file, not a preset directory: pass "
                                         r"the directory .* e\.g\. '.*my_preset'\."):  # fmt: skip
        resolve(tmp_path / "my_preset" / "config.json")
    monkeypatch.chdir(tmp_path / "my_preset")
    with pytest.raises(ValueError, match=r"preset 'config.json' is a file, not a preset directory"):
        resolve("config.json")  # a bare name that is a file here, not an unknown built-in


def test_a_misspelt_local_directory_suggests_the_close_ones_beside_it(tmp_path, monkeypatch):
    for name in ("my_preset", "other", "my_sst2"):
        (tmp_path / name).mkdir()
    (tmp_path / "my_presets.txt").write_text("a file, not a preset")
    beside = re.escape(repr(str(tmp_path / "my_preset")))
    with pytest.raises(FileNotFoundError, match=rf"my_presett does not exist\. Did you mean {beside}\?$"):
        resolve(f"{tmp_path}/my_presett")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"directory my_presett does not exist\. Did you mean 'my_preset'\?"):
        resolve("./my_presett")
    with pytest.raises(ValueError, match=r"Unknown preset 'my_presett'\. Did you mean the local directory 'my_pres"):
        resolve("my_presett")  # a bare name: no built-in is close, a directory here is
    with pytest.raises(FileNotFoundError, match=r"nowhere/my_presett does not exist\.$"):
        resolve("nowhere/my_presett")  # no parent directory to look in


def test_presets_are_listed_per_class():
    assert len(flaxbert.TextClassifier.presets) == 13
    assert set(flaxbert.DistilBertTextClassifier.presets) == {
        "distil_bert_base_en_uncased", "distil_bert_base_en", "distil_bert_base_multi"}  # fmt: skip
    assert set(flaxbert.BertTextClassifier.presets) == set(flaxbert.BertBackbone.presets)
    assert "bert_tiny_en_uncased_sst2" in flaxbert.BertTextClassifier.presets
    preset = flaxbert.BertBackbone.presets["bert_tiny_en_uncased_sst2"]
    assert (preset.num_classes, preset.hf_handle) == (2, "hf://keras/bert_tiny_en_uncased_sst2")
    assert preset.kaggle_handle == "kaggle://keras/bert/keras/bert_tiny_en_uncased_sst2/5"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A Hub whose repositories hold the given files: HfApi.list_repo_files lists them and snapshot_download copies
    those its allow_patterns match (with huggingface_hub's own matching) into a snapshot, recording each name with its
    repository. Conversion is skipped: these tests are about what is downloaded."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    monkeypatch.setenv("FLAXBERT_CACHE", str(tmp_path / "converted"))
    monkeypatch.setattr(conversion_cache, "converted", lambda source, repo_id: source)
    fetched = {}

    def add(files: dict):
        def list_repo_files(self, repo_id, revision=None):
            return list(files)

        def snapshot_download(repo_id, revision=None, allow_patterns=None):
            snapshot = tmp_path / "snapshots" / REVISION
            for name in filter_repo_objects(list(files), allow_patterns=allow_patterns):
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                (snapshot / name).write_text(files[name])
                fetched[name] = repo_id
            return str(snapshot)

        monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
        return fetched

    return add


# What https://huggingface.co/google-bert/bert-base-uncased holds: the same weights in seven formats, 3.4 GB in all.
BERT_BASE_UNCASED = ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "model.safetensors",
                     "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.onnx", "rust_model.ot",
                     "coreml/fill-mask/float32_model.mlpackage/Data/com.apple.CoreML/weights/weight.bin",
                     "coreml/fill-mask/float32_model.mlpackage/Manifest.json", "README.md"]  # fmt: skip
# A Trainer repository pushed with hub_strategy="all_checkpoints": the model at the top, checkpoints in folders.
TRAINER_CHECKPOINTS = ["last-checkpoint/model.safetensors", "last-checkpoint/config.json", "checkpoint-500/vocab.txt",
                       "checkpoint-500/model.safetensors", "runs/events.txt"]  # fmt: skip


def test_one_weight_format_and_top_level_files_only_are_downloaded(fake_hub):
    fetched = fake_hub({name: BERT_CONFIG if name == "config.json" else "x" for name in
                        BERT_BASE_UNCASED + TRAINER_CHECKPOINTS})  # fmt: skip
    resolve("hf://org/bert", load_weights=False)
    assert set(fetched) == {"config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"}
    resolve("hf://org/bert")
    assert set(fetched) == {"config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "model.safetensors"}


@pytest.mark.parametrize("handle, revision", [("hf://org/bert", None), ("hf://org/bert@main", "main")])
def test_weights_are_downloaded_at_the_commit_the_configs_came_from(fake_hub, monkeypatch, handle, revision):
    """The configs are downloaded first, then the weights: a branch pushed to in between would pair the new commit's
    weights with the old commit's config.json, so the weights are asked for at the configs' commit."""
    import huggingface_hub

    fake_hub({"config.json": BERT_CONFIG, "model.safetensors": "x"})
    download, asked = huggingface_hub.snapshot_download, []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        asked.append(revision)
        return download(repo_id, revision=revision, allow_patterns=allow_patterns)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    resolve(handle)
    assert asked == [revision, REVISION]


def test_a_sharded_checkpoint_downloads_its_index_and_shards(fake_hub):
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = json.dumps({"weight_map": {"a": shards[0], "b": shards[1], "c": shards[1]}})
    files = {"config.json": BERT_CONFIG, "model.safetensors.index.json": index, "pytorch_model.bin.index.json": "{}",
             "pytorch_model-00001-of-00001.bin": "x", **dict.fromkeys(shards, "x")}  # fmt: skip
    fetched = fake_hub(files)
    resolve("hf://org/sharded")
    assert set(fetched) == {"config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json", *shards}


def test_a_keras_preset_downloads_its_weights_h5_files_only(fake_hub):
    files = {"config.json": KERAS_CONFIG, "task.json": "{}", "preprocessor.json": "{}", "metadata.json": "{}",
             "assets/tokenizer/vocabulary.txt": "x", "model.weights.h5": "x", "task.weights.h5": "x",
             "model.safetensors": "x", "old/model.weights.h5": "x"}  # fmt: skip
    fetched = fake_hub(files)
    resolve("bert_tiny_en_uncased", load_weights=False)  # a built-in name: keras-hub's mirror on the Hub
    assert set(fetched) == set(files) - {"model.safetensors", "old/model.weights.h5", "model.weights.h5",
                                         "task.weights.h5"}  # fmt: skip
    resolve("bert_tiny_en_uncased")
    assert set(fetched) == set(files) - {"model.safetensors", "old/model.weights.h5"}
    assert set(fetched.values()) == {"keras/bert_tiny_en_uncased"}


def test_offline_with_a_snapshot_cached_without_weights_names_the_preset_and_the_fix(tmp_path, hub_cache):
    # what an earlier load_weights=False (or tokenizer) load leaves in the cache
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.json").write_text(BERT_CONFIG)
    hub_cache("org/configs-only", tmp_path / "configs")
    assert (resolve("hf://org/configs-only", load_weights=False) / "config.json").is_file()
    message = (r"Preset 'hf://org/configs-only' \(hf://org/configs-only\) is not in the Hugging Face cache .*"
               r"its weights are not cached, only the configs in .* Fix: run once with network access")  # fmt: skip
    with pytest.raises(FileNotFoundError, match=message):
        flaxbert.BertBackbone.from_preset("hf://org/configs-only")


def test_a_revision_after_at_is_loaded_and_converted_under_its_commit(tmp_path, hub_cache):
    snapshot = hub_cache("org/tiny", save(random_model("bert", BERT_SHAPES["h48_heads3_l1_seg3"]), tmp_path / "src"))
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    shutil.copytree(snapshot, snapshot.parent / commit)
    (snapshot.parents[1] / "refs" / "v1").write_text(commit)
    assert resolve("hf://org/tiny@v1", load_weights=False) == snapshot.parent / commit
    assert resolve(f"hf://org/tiny@{REVISION}", load_weights=False) == snapshot
    assert resolve("hf://org/tiny@main", load_weights=False) == snapshot
    converted = tmp_path / "converted" / "org--tiny" / f"{commit}-c{conversion_cache.CONVERSION}"
    assert resolve("hf://org/tiny@v1") == converted


@pytest.mark.parametrize(
    ("handle", "message"),
    [
        ("hf://org/tiny/sub", "names a folder inside a repository"),
        ("hf://org/ti ny", "is no Hugging Face repository id"),
        ("hf://org/tiny@", "names no revision after '@'"),
    ],
)
def test_a_malformed_handle_says_what_a_handle_looks_like(handle, message):
    with pytest.raises(ValueError, match=f"{message}.*hf://owner/name@revision"):
        resolve(handle)


def _hub_error(name: str, status: int, text: str):
    from huggingface_hub import errors

    return getattr(errors, name)(text, response=types.SimpleNamespace(headers={}, request=None, status_code=status))


@pytest.mark.parametrize(
    ("error", "status", "raised", "message"),
    [  # GatedRepoError is a RepositoryNotFoundError: it was reported as "no Hugging Face repository"
        ("GatedRepoError", 403, PermissionError, r"'org/gated' is gated .*request access .*HF_TOKEN"),
        ("RevisionNotFoundError", 404, FileNotFoundError, r"'org/gated' has no revision 'v9'"),
        ("RepositoryNotFoundError", 404, FileNotFoundError, r"no Hugging Face repository 'org/gated' .*HF_TOKEN"),
        ("HfHubHTTPError", 500, ConnectionError, r"failed to serve 'org/gated' \(500 Server Error\)"),
    ],
    ids=["gated", "no-revision", "no-repository", "server-error"],
)
def test_hub_errors_name_the_preset_and_the_fix(monkeypatch, error, status, raised, message):
    import huggingface_hub

    def fail(*args, **kwargs):
        raise _hub_error(error, status, "500 Server Error" if status == 500 else "refused")

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", fail)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(raised, match=f"Preset 'hf://org/gated@v9': .*{message}"):
        resolve("hf://org/gated@v9")
