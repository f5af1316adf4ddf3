"""The conversion cache: where it lives."""

from flaxbert.presets import conversion_cache


def test_flaxbert_cache_expands_a_tilde(monkeypatch, tmp_path):
    # as a Dockerfile ENV or a .env file sets it: no shell expands the "~"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLAXBERT_CACHE", "~/flaxbert-cache")
    assert conversion_cache.cache_root() == tmp_path / "flaxbert-cache"
    monkeypatch.delenv("FLAXBERT_CACHE")
    assert conversion_cache.cache_root() == tmp_path / ".cache" / "flaxbert"
