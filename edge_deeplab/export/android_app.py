"""Put a segmentation .tflite into the Android demo app (``android_demo/``) with its model card.

The app reads ``app/src/main/assets/model.tflite`` and ``model_card.json``: input size, normalization,
tensor types and quantization, output kind, classes and labels, so that it runs float, uint8 and int8
models with logits or label outputs without code changes. The card is parsed by the app's own Kotlin
code (android_demo/core), which the tests run on the JVM against cards written here.

Needs only the inference stack (numpy, OpenCV, ai-edge-litert): no TensorFlow.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edge_deeplab.errors import ModelFileError, OptionError
from edge_deeplab.io_utils import write_bytes_atomic, write_json_atomic

CARD_FORMAT = "edge-deeplab-model-card"
CARD_VERSION = 1
MODEL_ASSET = "model.tflite"
CARD_ASSET = "model_card.json"
ASSETS_DIR = Path("app", "src", "main", "assets")

# Outputs the app's Segmenter can read (android_demo/core ModelCard.kt says the same); its input types
# (float32, uint8, int8) are the ones the runtime accepts.
APP_LOGITS_TYPES = ("float32", "uint8", "int8")
APP_LABELS_TYPES = ("uint8", "int32", "int64")


def app_assets_dir(app_dir) -> Path:
    """The assets folder of the Android project at ``app_dir`` (checked to be one)."""
    app_dir = Path(app_dir)
    manifest = app_dir / "app" / "src" / "main" / "AndroidManifest.xml"
    if not manifest.is_file():
        raise OptionError(f"{app_dir}: not the Android demo project ({manifest} not found); "
                        "pass --app PATH/TO/android_demo")
    return app_dir / ASSETS_DIR


def check_app_can_run(model_path, interpreter, info):
    """Raise a UserError naming the file unless the app can run this model.

    ``info`` (runtime's ModelInfo) already guarantees one [1, H, W, 3] input of float32 / uint8 / int8
    and a logits or labels output with batch 1; this adds what the app itself needs.
    """
    outputs = interpreter.get_output_details()
    if len(outputs) != 1:
        names = ", ".join(o["name"] for o in outputs)
        raise ModelFileError(f"{model_path}: the app reads one output; this model has {len(outputs)} ({names})")
    allowed = APP_LOGITS_TYPES if info.output_kind == "logits" else APP_LABELS_TYPES
    if info.output_dtype not in allowed:
        raise ModelFileError(f"{model_path}: {info.output_kind} output of type {info.output_dtype} is not supported "
                        f"by the app (one of {', '.join(allowed)})")
    if info.input_dtype != "float32" and not info.input_scale > 0:
        raise ModelFileError(f"{model_path}: {info.input_dtype} input without quantization parameters (scale 0)")
    signature = interpreter.get_input_details()[0].get("shape_signature")
    if signature is not None and any(int(d) < 0 for d in list(signature)[1:]):
        raise ModelFileError(f"{model_path}: input size is dynamic ({list(signature)}); export with a fixed H x W")
    if not info.num_classes:
        raise ModelFileError(f"{model_path}: cannot tell how many classes its label output holds; "
                        "pass --labels FILE (one class name per line)")


def model_card(info, model_bytes: bytes, source_name: str, background_class=0) -> dict:
    """The card the app reads (see android_demo/README.md for the fields)."""
    if background_class is not None and not 0 <= int(background_class) < info.num_classes:
        raise ModelFileError(f"background class {background_class} is not a class id (0..{info.num_classes - 1})")
    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "name": info.name,
        "source": source_name,
        "model_file": MODEL_ASSET,
        "model_bytes": len(model_bytes),
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "input": {
            "height": info.input_height,
            "width": info.input_width,
            "channels": 3,
            "type": info.input_dtype,
            "scale": info.input_scale,
            "zero_point": info.input_zero_point,
            "mean": list(info.norm_mean),
            "std": list(info.norm_std),
            "normalization_source": info.normalization_source,
        },
        "output": {
            "kind": info.output_kind,
            "type": info.output_dtype,
            "height": info.output_height,
            "width": info.output_width,
            "num_classes": info.num_classes,
            "scale": info.output_scale,
            "zero_point": info.output_zero_point,
        },
        "labels": list(info.labels) if info.labels else None,
        "background_class": None if background_class is None else int(background_class),
    }


def export_android(model_path, app_dir="android_demo", labels=None, background_class=0) -> dict:
    """Check that the app can run ``model_path`` and write it with its card into the app's assets.

    labels: a label file (one name per line) overriding the model's metadata. background_class:
    the class drawn transparent over the camera picture (None: none). Returns the card.
    The model is written first and the card last, each atomically; the card records the model's
    size and SHA-256, which the app checks, so a half-done export is detected rather than run.
    """
    from edge_deeplab.io_utils import check_writable, require_file
    from edge_deeplab.runtime.interpreter import SegmentationModel, make_interpreter

    model_path = require_file(model_path)
    assets = app_assets_dir(app_dir)
    model = SegmentationModel(model_path, num_threads=1, labels=labels)
    check_writable(assets, folder=True)
    content = model_path.read_bytes()
    check_app_can_run(model_path, make_interpreter(content, 1, source=model_path), model.info)
    # One real inference: a model that loads but cannot run (an op the runtime lacks at invoke
    # time, a broken tensor) is refused here rather than on the phone.
    info = model.info
    model.segment(np.zeros((info.input_height, info.input_width, 3), np.uint8))
    card = model_card(info, content, model_path.name, background_class)

    write_bytes_atomic(assets / MODEL_ASSET, content)
    write_json_atomic(assets / CARD_ASSET, card)
    return card


def describe_card(card: dict) -> str:
    """One line for the CLI."""
    i, o = card["input"], card["output"]
    quant = f" (scale {i['scale']:g}, zero point {i['zero_point']})" if i["type"] != "float32" else ""
    labels = f"{len(card['labels'])} labels" if card["labels"] else "no labels"
    return (f"{card['name']}: input {i['height']}x{i['width']} {i['type']}{quant}, normalization "
            f"({', '.join(f'{v:g}' for v in i['mean'])}) / ({', '.join(f'{v:g}' for v in i['std'])}) "
            f"[{i['normalization_source']}]; output {o['kind']} {o['type']} {o['height']}x{o['width']}, "
            f"{o['num_classes']} classes, {labels}")
