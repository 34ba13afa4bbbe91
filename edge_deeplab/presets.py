"""Model presets by name (the registry is models/presets.json). No TensorFlow here."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

from edge_deeplab.config import DeepLabConfig
from edge_deeplab.errors import UserError

# Where the official TFLite files are looked for before any download: $EDGE_DEEPLAB_OFFICIAL_DIR,
# then the user cache.
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
    raise UserError("models/presets.json not found (set EDGE_DEEPLAB_PRESETS to its path)")


@lru_cache(maxsize=None)
def _registry() -> dict:
    path = _registry_path()
    try:
        return json.loads(path.read_text())["presets"]
    except (ValueError, KeyError) as e:
        raise UserError(f"{path}: not a preset registry ({e})") from None


def list_presets() -> dict:
    """Preset name -> description."""
    return {name: p.get("description", "") for name, p in _registry().items()}


def get_preset(name: str) -> dict:
    """The preset's entry: ``config`` (a DeepLabConfig), ``weights`` (dict or None), ``description``."""
    reg = _registry()
    if name not in reg:
        raise UserError(f"unknown preset {name!r}; known presets: {', '.join(sorted(reg))}")
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
    w = get_preset(name)["weights"]
    if not w:
        raise UserError(f"preset {name!r} has no official weights (build it and train or import instead)")
    dirs = [os.environ.get("EDGE_DEEPLAB_OFFICIAL_DIR"), CACHE_DIR / "official"]
    for d in dirs:
        if d and (Path(d) / w["file"]).is_file():
            path = Path(d) / w["file"]
            break
    else:
        if not download:
            raise UserError(f"{w['file']} not found in {', '.join(str(d) for d in dirs if d)}")
        path = CACHE_DIR / "official" / w["file"]
        _download(w["url"], path)
    digest = sha256_of(path)
    if digest != w["sha256"]:
        raise UserError(f"{path}: checksum {digest[:12]}... does not match the preset's {w['sha256'][:12]}...")
    return path


def _download(url: str, path: Path):
    import urllib.request

    from edge_deeplab.io_utils import atomic_path

    print(f"downloading {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=30) as r, atomic_path(path) as tmp:
            tmp.write_bytes(r.read())
    except OSError as e:
        raise UserError(
            f"cannot download {url} ({getattr(e, 'reason', e)}); put {path.name} in "
            f"$EDGE_DEEPLAB_OFFICIAL_DIR or {path.parent} by hand"
        ) from None
