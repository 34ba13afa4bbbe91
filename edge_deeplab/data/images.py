"""The one image reader (numpy + OpenCV, no TensorFlow): which files are images, and reading them whole.

OpenCV decodes a truncated JPEG without an error (libjpeg only warns and fills the rest with grey), so a
JPEG is read only when its markers run to the end-of-image marker; a truncated PNG fails to decode.
Any size is valid, 1x1 included.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_deeplab.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_file(path) -> bool:
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(folder) -> list[Path]:
    """The image files of ``folder`` (one level), sorted; [] when it is not a folder."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def read_image(path, rgb=False, flags=cv2.IMREAD_COLOR, what="image") -> np.ndarray:
    """The image at ``path`` (BGR as OpenCV gives it, or RGB); one line naming the file (and ``what`` it
    is: an image, a mask) when it is missing, truncated or not an image. The one image reader."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as e:
        raise DataError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8 and not jpeg_is_complete(data.tobytes()):
        raise DataError(f"{path}: truncated JPEG (the data ends before its end-of-image marker)")
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DataError(f"{path}: cannot read {what} (missing, truncated or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if rgb and image.ndim == 3 else image


def jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG's segments run to its end-of-image marker (FFD9). Walks the marker segments; in the
    entropy-coded data after a start-of-scan, FF00 (stuffing), restart markers and fill bytes are skipped,
    and a progressive JPEG's later tables and scans are walked the same way. Bytes after FFD9 are allowed."""
    pos, n = 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return False  # not at a marker: corrupt
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if pos + 3 >= n:
            return False
        pos += 2 + (data[pos + 2] << 8 | data[pos + 3])
        if marker == 0xDA:  # start of scan: skip the entropy-coded data to the next real marker
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return False
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
    return False


def read_images(folder, limit=8, purpose="to verify the import with"):
    """Up to ``limit`` RGB images from ``folder``, evenly spread over its sorted image files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    paths = list_images(folder)
    if not paths:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) {purpose}")
    if len(paths) > limit:
        paths = [paths[i * len(paths) // limit] for i in range(limit)]
    return [read_image(p, rgb=True) for p in paths]
