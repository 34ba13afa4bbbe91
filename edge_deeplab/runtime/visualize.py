"""Masks made visible: the PASCAL VOC palette, palette PNGs, blended overlays and a legend.

Needs only numpy and OpenCV. Masks are HxW uint8 class ids. A Palette says how a label set is drawn:
PASCAL VOC's colours with class 0 as unpainted background, or a known dataset's own colours (CamVid).
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

import cv2
import numpy as np

from edge_deeplab.data.datasets import (
    CAMVID_CLASSES,
    CAMVID_COLORS,
    VOC_CLASSES,
    voc_palette,
)

PALETTE_RGB = voc_palette()
PALETTE_BGR = np.ascontiguousarray(PALETTE_RGB[:, ::-1])


@dataclasses.dataclass(frozen=True)
class Palette:
    """How a model's classes are drawn: a colour per class id and the class left unpainted (or None)."""

    rgb: np.ndarray  # 256 x 3 uint8
    background: int | None = 0

    @property
    def bgr(self) -> np.ndarray:
        return np.ascontiguousarray(self.rgb[:, ::-1])


VOC_PALETTE = Palette(PALETTE_RGB, 0)


def palette_for(names) -> Palette:
    """The palette of a known label set (CamVid's own colours, every class painted), else PASCAL VOC's with
    class 0 as background."""
    if names and [n.lower() for n in names] == [n.lower() for n in CAMVID_CLASSES]:
        rgb = PALETTE_RGB.copy()
        rgb[:len(CAMVID_COLORS)] = CAMVID_COLORS
        return Palette(rgb, None)
    return VOC_PALETTE


def class_names(labels, num_classes) -> list[str]:
    """Names for class ids: the model's labels, else VOC names for 21-class models, else 'class N'."""
    if labels:
        return list(labels)
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [f"class {i}" for i in range(num_classes or 256)]


def class_shares(mask: np.ndarray) -> dict[int, float]:
    """Share of pixels of each class present in ``mask`` (class id -> fraction, largest first)."""
    counts = np.bincount(mask.ravel(), minlength=1)
    present = np.flatnonzero(counts)
    shares = {int(c): float(counts[c]) / mask.size for c in present}
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def palette_png(mask: np.ndarray, palette=PALETTE_RGB) -> bytes:
    """An 8-bit indexed (palette) PNG of ``mask``: pixel values stay class ids, viewers show colours."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be HxW uint8, got {mask.dtype} {mask.shape}")
    h, w = mask.shape
    rows = np.empty((h, w + 1), np.uint8)
    rows[:, 0] = 0  # PNG filter type "None" for every scanline
    rows[:, 1:] = mask

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)  # 8-bit, colour type 3 (palette)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"PLTE", np.asarray(palette, np.uint8)[:256].tobytes())
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def colorize(mask: np.ndarray, palette: Palette = VOC_PALETTE) -> np.ndarray:
    """The mask as a BGR colour image."""
    # a 3-channel look-up table: several times faster than numpy fancy indexing on video frames
    return cv2.LUT(cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR), palette.bgr.reshape(1, 256, 3))


def overlay(image_bgr: np.ndarray, mask: np.ndarray, alpha=0.5, palette: Palette = VOC_PALETTE) -> np.ndarray:
    """``image_bgr`` with its pixels blended towards their class colour (the background class left as is)."""
    blended = cv2.addWeighted(image_bgr, 1.0 - alpha, colorize(mask, palette), alpha, 0.0)
    if palette.background is not None:
        # (a numpy comparison: cv2.compare takes a 1x1 mask for a scalar)
        cv2.copyTo(image_bgr, (mask == palette.background).view(np.uint8), blended)
    return blended


def draw_legend(image_bgr: np.ndarray, entries, origin=(8, 8), palette: Palette = VOC_PALETTE):
    """Draw colour swatches with names, e.g. ``[(15, 'person 32%')]``, in place at the top-left."""
    if not entries:
        return image_bgr
    colours = palette.bgr
    scale = max(0.4, min(image_bgr.shape[:2]) / 900)
    line = int(22 * scale / 0.5)
    x, y = origin
    width = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for _, text in entries)
    box = image_bgr[y:y + line * len(entries) + 6, x:x + width + line + 12]
    box //= 3  # darken behind the text so it reads on any image
    for i, (class_id, text) in enumerate(entries):
        top = y + 4 + i * line
        color = tuple(int(v) for v in colours[class_id])
        cv2.rectangle(image_bgr, (x + 4, top), (x + 4 + line - 6, top + line - 6), color, -1)
        cv2.putText(image_bgr, text, (x + line + 4, top + line - 8), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def legend_entries(mask: np.ndarray, names, min_share=0.005, background=0):
    """Legend lines for the classes that cover at least ``min_share`` of the mask (not ``background``)."""
    return [(c, f"{names[c] if c < len(names) else c} {share:.0%}")
            for c, share in class_shares(mask).items()
            if share >= min_share and c != background]
