"""Presets as data, and where their official weights come from: the cache, the preset's URL (here a
file:// URL: nothing is downloaded at test time), or $EDGE_DEEPLAB_OFFICIAL_DIR, always SHA-256 checked."""
import hashlib
import json

import pytest

import tiny_tflite
from edge_deeplab import presets
from edge_deeplab.errors import ModelFileError, OptionError


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry with one preset whose official file is a tiny model served from a file:// URL."""
    served = tmp_path / "served"
    served.mkdir()
    content = tiny_tflite.tanh_logits()
    (served / "tiny.tflite").write_bytes(content)
    entry = {"config": {"backbone": "mobilenetv2", "depth_multiplier": 0.35, "input_size": [33, 33], "num_classes": 3},
             "weights": {"file": "tiny.tflite", "url": (served / "tiny.tflite").as_uri(),
                         "sha256": hashlib.sha256(content).hexdigest()}}
    path = tmp_path / "presets.json"
    path.write_text(json.dumps({"presets": {"tiny": entry, "random": {"config": entry["config"]}}}))
    monkeypatch.setenv("EDGE_DEEPLAB_PRESETS", str(path))
    monkeypatch.setattr(presets, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.delenv("EDGE_DEEPLAB_OFFICIAL_DIR", raising=False)
    presets._registry.cache_clear()
    yield path, served
    presets._registry.cache_clear()


def test_download_then_the_cache(registry, tmp_path):
    path, origin = presets.locate_official_weights("tiny")
    assert path == tmp_path / "cache" / "official" / "tiny.tflite" and origin.startswith("file://")
    assert "SHA-256 checked" in origin
    again, origin = presets.locate_official_weights("tiny")
    assert again == path and origin.startswith("the cache")


def test_a_local_folder_when_the_url_cannot_be_reached(registry, monkeypatch):
    _, served = registry
    (served / "tiny.tflite").rename(served / "moved.tflite")  # the URL now fails
    local = served / "local"
    local.mkdir()
    (served / "moved.tflite").rename(local / "tiny.tflite")
    with pytest.raises(OptionError, match="cannot download .* put tiny.tflite in"):
        presets.locate_official_weights("tiny")
    monkeypatch.setenv("EDGE_DEEPLAB_OFFICIAL_DIR", str(local))
    path, origin = presets.locate_official_weights("tiny")
    assert path == local / "tiny.tflite" and "SHA-256 checked" in origin


def test_a_file_that_is_not_the_official_one_is_refused(registry):
    _, served = registry
    (served / "tiny.tflite").write_bytes(tiny_tflite.tanh_logits(8, 8))
    for _ in range(2):  # nothing that fails the check is kept in the cache
        with pytest.raises(ModelFileError, match="checksum .* does not match"):
            presets.locate_official_weights("tiny")
    assert not (presets.CACHE_DIR / "official" / "tiny.tflite").exists()
    with pytest.raises(OptionError, match="has no official weights"):
        presets.locate_official_weights("random")
    with pytest.raises(OptionError, match="unknown preset"):
        presets.locate_official_weights("nope")
