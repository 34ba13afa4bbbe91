"""Segment image files: a palette mask PNG and a blended overlay per image, optionally a JSON summary.

An image that cannot be read or segmented is reported in one line and skipped; the rest are done.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from edge_deeplab.data.images import list_images, read_image
from edge_deeplab.errors import DataError, UserError
from edge_deeplab.io_utils import write_bytes_atomic, write_json_atomic
from edge_deeplab.runtime.visualize import (
    class_names,
    class_shares,
    draw_legend,
    legend_entries,
    overlay,
    palette_for,
    palette_png,
)


@dataclass
class PredictSummary:
    done: list[dict] = field(default_factory=list)  # per image segmented: what predict_image wrote
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)


def collect_images(inputs) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files named by ``inputs`` (files, or folders scanned one level deep), and inputs that are missing."""
    images, missing = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            images += list_images(item)
        elif item.is_file():
            images.append(item)
        else:
            missing.append((str(item), "no such file or folder"))
    return images, missing


def output_stems(images) -> list[str]:
    """One output name per image: the file stem, with a number added where two stems collide."""
    stems, used = [], set()
    for path in images:
        stem, n = path.stem, 0
        while stem in used:
            n += 1
            stem = f"{path.stem}_{n}"
        stems.append(stem)
        used.add(stem)
    return stems


def predict_image(model, image_path, output_dir, stem=None, alpha=0.5, legend=True, json_file=False) -> dict:
    """Segment one image file and write ``<stem>_mask.png``, ``<stem>_overlay.jpg`` (and ``<stem>.json``)."""
    image = read_image(image_path)
    result = model.segment(image)
    output_dir, stem = Path(output_dir), stem or Path(image_path).stem
    names = class_names(model.info.labels, model.info.num_classes)
    palette = palette_for(names)
    mask_path, overlay_path = output_dir / f"{stem}_mask.png", output_dir / f"{stem}_overlay.jpg"

    blended = overlay(image, result.mask, alpha, palette)
    if legend:
        draw_legend(blended, legend_entries(result.mask, names, background=palette.background), palette=palette)
    encoded, jpeg = cv2.imencode(".jpg", blended)
    if not encoded:
        raise DataError(f"{overlay_path}: cannot encode the overlay")
    # everything is made before anything is written: a failure leaves no output of this image
    write_bytes_atomic(mask_path, palette_png(result.mask, palette.rgb))
    write_bytes_atomic(overlay_path, jpeg.tobytes())

    record = {
        "image": str(image_path),
        "mask": str(mask_path),
        "overlay": str(overlay_path),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "model": model.info.name,
        "latency_ms": {"preprocess": round(result.preprocess_ms, 3), "invoke": round(result.invoke_ms, 3),
                       "postprocess": round(result.postprocess_ms, 3), "total": round(result.latency_ms, 3)},
        "classes": {names[c] if c < len(names) else str(c): round(share, 6)
                    for c, share in class_shares(result.mask).items()},
    }
    if json_file:
        write_json_atomic(output_dir / f"{stem}.json", record)
    return record


def predict_images(model, inputs, output_dir, alpha=0.5, legend=True, json_files=False, progress=True,
                   report=None) -> PredictSummary:
    """Segment every image named by ``inputs``; failures are reported through ``report(msg)`` and skipped."""
    from tqdm import tqdm

    report = report or (lambda msg: tqdm.write(msg, file=sys.stderr))
    images, missing = collect_images(inputs)
    summary = PredictSummary(failed=list(missing))
    for item, reason in missing:
        report(f"error: {item}: {reason}")
    bar = tqdm(list(zip(images, output_stems(images))), desc="predict", unit="image", file=sys.stderr,
               disable=not progress)
    for path, stem in bar:
        try:
            record = predict_image(model, path, output_dir, stem, alpha, legend, json_files)
        except UserError as e:
            message = str(e)
        except (cv2.error, OSError, ValueError) as e:  # a bad file must not end the batch
            message = f"{path}: {' '.join(str(e).split()) or type(e).__name__}"
        else:
            summary.done.append(record)
            continue
        summary.failed.append((str(path), message))
        report(f"error: {message}")
    return summary
