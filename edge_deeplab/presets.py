"""Model presets by name (the registry is models/presets.json). No TensorFlow here."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

from edge_deeplab.config import DeepLabConfig
from edge_deeplab.errors import DataError, ModelFileError, OptionError

# Official TFLite files: the user cache, a download from the preset's URL into it, else
# $EDGE_DEEPLAB_OFFICIAL_DIR (see locate_official_weights).
CACHE_DIR = Path(os.environ.get("EDGE_DEEPLAB_CACHE", Path.home() / ".cache" / "edge-deeplab"))


def _registry_path() -> Path:
    candidates = [
        os.environ.get("EDGE_DEEPLAB_PRESETS"),
        Path(__file__).resolve().parent.parent / "models" / "presets.json",  # source / editable install
        Path(sys.prefix) / "share" / "edge-deeplab" / "presets.json",  # pip install (data_files)
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise DataError("models/presets.json not found (set EDGE_DEEPLAB_PRESETS to its path)")


@lru_cache(maxsize=None)
def _registry() -> dict:
    path = _registry_path()
    try:
        return json.loads(path.read_text())["presets"]
    except (ValueError, KeyError) as e:
        raise DataError(f"{path}: not a preset registry ({e})") from None


def list_presets() -> dict:
    """Preset name -> description."""
    return {name: p.get("description", "") for name, p in _registry().items()}


def get_preset(name: str) -> dict:
    """The preset's entry: ``config`` (a DeepLabConfig), ``weights`` (dict or None), ``description``."""
    reg = _registry()
    if name not in reg:
        raise OptionError(f"unknown preset {name!r}; known presets: {', '.join(sorted(reg))}")
    p = reg[name]
    return {
        "name": name,
        "description": p.get("description", ""),
        "config": DeepLabConfig.from_dict({**p["config"], "name": p["config"].get("name", name)}),
        "weights": p.get("weights"),
    }


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def official_weights_file(name: str, download: bool = True) -> Path:
    """Path of a preset's official TFLite file, checksum-verified; downloads into the cache if absent."""
    return locate_official_weights(name, download)[0]


def locate_official_weights(name: str, download: bool = True) -> tuple[Path, str]:
    """(path, where it came from) of a preset's official TFLite file, its SHA-256 checked: the user cache,
    else a download from the preset's URL into the cache, else $EDGE_DEEPLAB_OFFICIAL_DIR (a folder of
    the official files, e.g. ../shared/models/official)."""
    w = get_preset(name)["weights"]
    if not w:
        raise OptionError(f"preset {name!r} has no official weights (build it and train or import instead)")
    cached, local = CACHE_DIR / "official" / w["file"], os.environ.get("EDGE_DEEPLAB_OFFICIAL_DIR")
    if cached.is_file():
        return _checked(cached, w), f"the cache ({cached})"
    failure = None
    if download:
        try:
            _download(w["url"], cached)
        except OptionError as e:
            failure = e
        else:
            try:
                return _checked(cached, w), f"{w['url']} (SHA-256 checked, cached in {cached.parent})"
            except ModelFileError:
                cached.unlink()  # not the official file: keep no copy that the next call would trust
                raise
    if local and (Path(local) / w["file"]).is_file():
        why = "; the download failed" if failure else ""
        return _checked(Path(local) / w["file"], w), f"{Path(local) / w['file']} (SHA-256 checked{why})"
    if failure:
        raise failure
    raise ModelFileError(f"{w['file']} not found in {cached.parent}" + (f" or {local}" if local else ""))


def _checked(path: Path, w: dict) -> Path:
    digest = sha256_of(path)
    if digest != w["sha256"]:
        raise ModelFileError(f"{path}: checksum {digest[:12]}... does not match the preset's {w['sha256'][:12]}...")
    return path


def _download(url: str, path: Path):
    import urllib.request

    from edge_deeplab.io_utils import atomic_path

    print(f"downloading {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=30) as r, atomic_path(path) as tmp:
            tmp.write_bytes(r.read())
    except OSError as e:
        raise OptionError(
            f"cannot download {url} ({getattr(e, 'reason', e)}); put {path.name} in "
            f"$EDGE_DEEPLAB_OFFICIAL_DIR or {path.parent} by hand"
        ) from None
