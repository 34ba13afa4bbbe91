"""A multi-class, non-square model end to end on a tiny generated CamVid-layout dataset: train with class
weights and validation on val/, convert, evaluate the .tflite, predict, export to the Android app; the
class names travel from the dataset into every output."""
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("tf_keras")

pytestmark = pytest.mark.slow  # trains, converts and benches a CamVid model

from test_datasets import make_camvid  # noqa: E402

from edge_deeplab.cli import main  # noqa: E402
from edge_deeplab.config import DeepLabConfig  # noqa: E402
from edge_deeplab.data.datasets import CAMVID_CLASSES, CAMVID_COLORS  # noqa: E402
from edge_deeplab.model.deeplab import build_deeplab, load_model, save_model  # noqa: E402
from edge_deeplab.runtime.interpreter import SegmentationModel  # noqa: E402

INPUT = (33, 49)  # 16k+1 by 16k+1, at the 3:4 aspect of CamVid's 360x480 frames


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid")
    data = root / "camvid"
    make_camvid(data, splits=(("train", 4), ("val", 2)))
    keras.utils.set_random_seed(0)
    model = build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=INPUT, num_classes=11))
    save_model(model, root / "init.keras")
    main(["train", "--init", str(root / "init.keras"), "--data", str(data), "--format", "camvid",
          "--val-split", "val", "--class-weights", "median-frequency", "--run-dir", str(root / "run"),
          "--epochs", "2", "--batch-size", "2", "--optimizer", "adam", "--lr", "1e-3", "--crop-size", "33x49",
          "--cache", "--no-progress"])
    return root, data


def test_training_weights_classes_validates_on_val_and_keeps_the_best(trained):
    root, _ = trained
    run = root / "run"
    weights = json.loads((run / "run.json").read_text())["class_weights"]
    assert len(weights) == 11 and min(weights) > 0 and max(weights) > min(weights)
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(0 <= h["val_miou"] <= 1 for h in history)
    best, last = load_model(run / "best.keras"), load_model(run / "model.keras")
    for model in (best, last):
        assert model.input_shape == (1, *INPUT, 3)
        assert list(model.deeplab_config.class_names) == CAMVID_CLASSES


def test_class_names_travel_into_the_tflite_eval_predict_and_android(trained, tmp_path, capsys):
    root, data = trained
    tflite = tmp_path / "camvid_int8.tflite"
    main(["convert", str(root / "run" / "model.keras"), "-o", str(tflite), "--quantize", "int8",
          "--calibration", str(data / "train"), "--num-samples", "2"])
    model = SegmentationModel(tflite, num_threads=1)
    assert model.info.labels == CAMVID_CLASSES
    assert (model.info.input_height, model.info.input_width) == INPUT

    capsys.readouterr()
    main(["eval", str(tflite), "--data", str(data), "--format", "camvid", "--json", "--no-progress"])
    result = json.loads(capsys.readouterr().out)
    assert list(result["iou"]) == CAMVID_CLASSES and result["images"] == 2

    main(["bench", str(tflite), "--data", str(data), "--format", "camvid", "--runs", "2", "--warmup", "0",
          "--threads", "1", "--no-memory", "--json-file", str(tmp_path / "bench.json")])
    row = json.loads((tmp_path / "bench.json").read_text())["results"][0]
    assert row["input"] == "33x49 float32" and list(row["iou"]) == CAMVID_CLASSES

    main(["predict", "-m", str(tflite), str(data / "val"), "-o", str(tmp_path / "out")])
    mask_png = tmp_path / "out" / "fval0_mask.png"
    palette = _png_palette(mask_png.read_bytes())
    assert [tuple(palette[i]) for i in range(11)] == CAMVID_COLORS  # CamVid's own colours
    frame = cv2.imread(str(data / "val" / "fval0.png"))
    overlay = cv2.imread(str(tmp_path / "out" / "fval0_overlay.jpg"))
    assert overlay.shape == frame.shape
    # CamVid has no background class: every pixel is painted (class 0, Sky, too)
    assert np.abs(overlay.astype(int) - frame).mean() > 10

    app = tmp_path / "app"
    (app / "app" / "src" / "main" / "assets").mkdir(parents=True)
    (app / "app" / "src" / "main" / "AndroidManifest.xml").write_text("<manifest/>")
    main(["export-android", str(tflite), "--app", str(app), "--background-class", "none"])
    card = json.loads((app / "app" / "src" / "main" / "assets" / "model_card.json").read_text())
    assert card["labels"] == CAMVID_CLASSES and (card["input"]["height"], card["input"]["width"]) == INPUT


def _png_palette(data: bytes) -> np.ndarray:
    start = data.index(b"PLTE")
    length = int.from_bytes(data[start - 4:start], "big")
    return np.frombuffer(data[start + 4:start + 4 + length], np.uint8).reshape(-1, 3)
