"""The conversion cache: where it lives, two processes converting one revision at once, and a cache that cannot be
written."""

import json
import shutil

import jax
import numpy as np
import pytest
from conftest import HUB_REVISION as REVISION
from hf_factory import BERT_SHAPES, random_model, save

import flaxbert
from flaxbert import checkpoint
from flaxbert.presets import conversion_cache, native, output_directory
from flaxbert.presets.resolve import resolve


@pytest.fixture
def tiny_hub(tmp_path, hub_cache):
    """`hf://org/tiny`, a one-layer BERT encoder in the Hub cache: its snapshot and its converted copy's path."""
    snapshot = hub_cache("org/tiny", save(random_model("bert", BERT_SHAPES["h48_heads3_l1_seg3"]), tmp_path / "src"))
    return snapshot, tmp_path / "converted" / "org--tiny" / f"{REVISION}-c{conversion_cache.CONVERSION}"


def test_flaxbert_cache_expands_a_tilde(monkeypatch, tmp_path):
    # as a Dockerfile ENV or a .env file sets it: no shell expands the "~"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLAXBERT_CACHE", "~/flaxbert-cache")
    assert conversion_cache.cache_root() == tmp_path / "flaxbert-cache"
    monkeypatch.delenv("FLAXBERT_CACHE")
    assert conversion_cache.cache_root() == tmp_path / ".cache" / "flaxbert"


@pytest.mark.parametrize("when", ["before this save starts", "while this save runs"])
def test_losing_the_race_to_convert_returns_the_winners_copy(tiny_hub, tmp_path, monkeypatch, when):
    """Another process puts its complete copy in place while this one converts (made deterministic here)."""
    _, target = tiny_hub
    winner = tmp_path / "winner"
    winner.mkdir()
    (winner / "config.json").write_text("{}")  # the winner's whole copy, as its rename put it in place
    (winner / "written-by-the-winner").write_text("")
    before = when.startswith("before")
    patched, function = (native, "save") if before else (checkpoint, "write_tree")
    original = getattr(patched, function)

    def race(*args, **kwargs):
        if before:  # the winner finished before this process's save began
            shutil.copytree(winner, target)
        result = original(*args, **kwargs)
        if not before:  # the winner's rename lands while this save writes its params
            shutil.copytree(winner, target)
        return result

    monkeypatch.setattr(patched, function, race)
    assert resolve("hf://org/tiny") == target
    assert (target / "written-by-the-winner").is_file()
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # this process's staging directory is gone


def test_an_unwritable_cache_warns_and_loads_the_download(tiny_hub, tmp_path, monkeypatch):
    snapshot, target = tiny_hub
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FLAXBERT_CACHE", str(tmp_path / "a-file" / "cache"))  # root may write anywhere: not chmod
    with pytest.warns(UserWarning, match=r"cannot write its conversion cache at .*a-file/cache/org--tiny.*Fix: set "
                                         r"FLAXBERT_CACHE \(now '.*a-file/cache'\) to a writable"):  # fmt: skip
        assert resolve("hf://org/tiny") == snapshot  # before converting anything
    monkeypatch.setenv("FLAXBERT_CACHE", str(tmp_path / "converted"))
    target.parent.mkdir(parents=True)
    target.write_text("")  # the cache's folder for this revision is a file: the write itself fails
    with pytest.warns(UserWarning, match=r"cannot write its conversion cache at .*\(PresetWriteError: .* is a file"):
        backbone = flaxbert.BertBackbone.from_preset("hf://org/tiny")
    assert backbone.config.hidden_dim == 48 and [p.name for p in target.parent.iterdir()] == [target.name]
    # In a multi-process job the save is collective (the other processes wait at process 0's barriers): a fallback
    # on process 0 alone would hang them, so the error stops the job.
    monkeypatch.setattr(conversion_cache.jax, "process_count", lambda: 2)
    with pytest.raises(output_directory.PresetWriteError, match="is a file"):
        conversion_cache.converted(snapshot, "org/tiny")


def test_a_bert_checkpoint_without_a_pooler_is_loaded_directly_each_time(tmp_path, hub_cache):
    """Its pooler is made from the caller's seed, with a warning: a cached copy held seed 0's pooler and warned no
    more."""
    import transformers

    config = transformers.BertConfig(**BERT_SHAPES["h48_heads3_l1_seg3"])
    snapshot = hub_cache("org/mlm", save(transformers.BertModel(config, add_pooling_layer=False), tmp_path / "src"))
    assert resolve("hf://org/mlm") == snapshot
    assert not (tmp_path / "converted").exists() or not any((tmp_path / "converted").rglob("config.json"))
    poolers = []
    for seed in (0, 1):
        with pytest.warns(UserWarning, match="has no pooler"):
            backbone = flaxbert.BertBackbone.from_preset("hf://org/mlm", seed=seed)
        poolers.append(backbone.params["pooled_dense"]["kernel"])
    assert not (poolers[0] == poolers[1]).all()


def test_a_converted_copy_keeps_the_default_execution_not_a_choice_of_its_own(tiny_hub):
    """A conversion writes the config's execution settings: the defaults, in the current native format (a copy in
    format 1 names "xla", its default, which `native.read` takes as "auto": tests/test_native_preset.py)."""
    _, target = tiny_hub
    assert resolve("hf://org/tiny") == target
    config = json.loads((target / "config.json").read_text())
    assert config["format_version"] == native.VERSION == 3
    assert (config["backbone"]["attention_kernel"], config["backbone"]["scan_layers"]) == ("auto", False)
    assert flaxbert.BertBackbone.from_preset("hf://org/tiny").config.attention_kernel == "auto"


def test_a_damaged_converted_copy_says_to_delete_it(tiny_hub):
    """A byte changed in the cache's copy is refused by its checksums, and the fix named is the cache's own: delete
    the copy, and the next load converts the download again (not "save it again from its model")."""
    _, target = tiny_hub
    first = flaxbert.BertBackbone.from_preset("hf://org/tiny")
    arrays = [p for p in (target / "params").rglob("*") if p.is_file() and p.parent.name == "d"]
    largest = max(arrays, key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0x01
    largest.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"is corrupt. It is flaxbert's converted copy of a download: delete {target}, "
                                         "and the next load converts again"):  # fmt: skip
        flaxbert.BertBackbone.from_preset("hf://org/tiny")
    shutil.rmtree(target)
    again = flaxbert.BertBackbone.from_preset("hf://org/tiny")
    assert (target / "checksums.json").is_file()
    flat = zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params), strict=True)
    assert all(np.array_equal(a, b) for a, b in flat)
