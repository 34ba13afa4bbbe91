"""Masks made visible: the PASCAL VOC palette, palette PNGs, blended overlays and a legend.

Needs only numpy and OpenCV. Masks are HxW uint8 class ids; class 0 is background and stays
unpainted in overlays.
"""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from edge_deeplab.datasets import VOC_CLASSES, voc_palette
from edge_deeplab.io_utils import write_bytes_atomic

PALETTE_RGB = voc_palette()
PALETTE_BGR = np.ascontiguousarray(PALETTE_RGB[:, ::-1])


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


def write_palette_png(path, mask: np.ndarray, palette=PALETTE_RGB):
    write_bytes_atomic(path, palette_png(mask, palette))


def colorize(mask: np.ndarray, palette_bgr=PALETTE_BGR) -> np.ndarray:
    """The mask as a BGR colour image."""
    # a 3-channel look-up table: several times faster than numpy fancy indexing on video frames
    return cv2.LUT(cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR), palette_bgr.reshape(1, 256, 3))


def overlay(image_bgr: np.ndarray, mask: np.ndarray, alpha=0.5, palette_bgr=PALETTE_BGR) -> np.ndarray:
    """``image_bgr`` with non-background pixels blended towards their class colour."""
    blended = cv2.addWeighted(image_bgr, 1.0 - alpha, colorize(mask, palette_bgr), alpha, 0.0)
    cv2.copyTo(image_bgr, cv2.compare(mask, 0, cv2.CMP_EQ), blended)  # background stays as it was
    return blended


def draw_legend(image_bgr: np.ndarray, entries, origin=(8, 8), palette_bgr=PALETTE_BGR):
    """Draw colour swatches with names, e.g. ``[(15, 'person 32%')]``, in place at the top-left."""
    if not entries:
        return image_bgr
    scale = max(0.4, min(image_bgr.shape[:2]) / 900)
    line = int(22 * scale / 0.5)
    x, y = origin
    width = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for _, text in entries)
    box = image_bgr[y:y + line * len(entries) + 6, x:x + width + line + 12]
    box //= 3  # darken behind the text so it reads on any image
    for i, (class_id, text) in enumerate(entries):
        top = y + 4 + i * line
        color = tuple(int(v) for v in palette_bgr[class_id])
        cv2.rectangle(image_bgr, (x + 4, top), (x + 4 + line - 6, top + line - 6), color, -1)
        cv2.putText(image_bgr, text, (x + line + 4, top + line - 8), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def legend_entries(mask: np.ndarray, names, min_share=0.005, skip_background=True):
    """Legend lines for the classes that cover at least ``min_share`` of the mask."""
    return [(c, f"{names[c] if c < len(names) else c} {share:.0%}")
            for c, share in class_shares(mask).items()
            if share >= min_share and not (skip_background and c == 0)]
