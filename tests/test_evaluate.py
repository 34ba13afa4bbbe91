"""Evaluation: one loop for .tflite (no TensorFlow) and Keras models, class maps, --json, bad data."""
import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

import tiny_tflite
from edge_deeplab.cli import main
from edge_deeplab.data.datasets import open_dataset
from edge_deeplab.errors import UserError
from edge_deeplab.model.predictor import open_predictor
from edge_deeplab.runtime.evaluate import evaluate, prediction_lut, tflite_predictor


def red_blue_dataset(root, n=3, blue_class=2):
    """Images whose left half is red and right half blue; labels red -> 0, blue -> ``blue_class``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        h, w = 24 + 4 * i, 32
        cv2.imwrite(str(root / "images" / f"{i}.png"), tiny_tflite.red_blue_image(h, w))
        labels = tiny_tflite.red_blue_labels(h, w)
        labels[labels == 2] = blue_class
        labels[0, 0] = 255  # ignored
        cv2.imwrite(str(root / "masks" / f"{i}.png"), labels)
    return root


@pytest.fixture
def tanh_model(tmp_path):
    path = tmp_path / "tanh.tflite"
    path.write_bytes(tiny_tflite.tanh_logits(16, 16))  # 3 classes: the input's R, G, B channels
    return path


def test_tflite_eval_json_without_tensorflow(tmp_path, tanh_model):
    data = red_blue_dataset(tmp_path / "data")
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class BlockHeavy(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"):
                    raise ImportError("blocked by the test: " + name)
        sys.meta_path.insert(0, BlockHeavy())
        from edge_deeplab.cli import main
        main(["eval", {str(tanh_model)!r}, "--data", {str(data)!r}, "--format", "folder", "--data-classes", "3",
              "--threads", "1", "--json", "--no-progress"])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["images"] == 3 and result["skipped"] == 0
    assert result["iou"]["1"] is None  # green: in neither labels nor predictions
    assert result["iou"]["0"] > 0.9 and result["iou"]["2"] > 0.9
    assert result["miou"] == pytest.approx((result["iou"]["0"] + result["iou"]["2"]) / 2)


def test_class_map_from_model_classes_to_dataset_classes(tmp_path, tanh_model, capsys):
    data = red_blue_dataset(tmp_path / "data", blue_class=1)
    dataset = open_dataset(data, "folder", class_names=["background", "blue"])
    predictor = tflite_predictor(tanh_model, num_threads=1)
    with pytest.raises(UserError, match="model has 3 classes and the dataset 2"):
        evaluate(predictor, dataset, progress=False)
    result = evaluate(predictor, dataset, class_map={2: 1}, default_class=0, progress=False)
    assert result.matrix.miou() > 0.9
    # a class left out of the map with no default points nowhere in the dataset
    with pytest.raises(UserError, match=r"model classes \[2\] map to no class"):
        prediction_lut(3, 2, {0: 0, 1: 0})
    main(["eval", str(tanh_model), "--data", str(data), "--format", "folder", "--data-classes", "background,blue",
          "--class-map", "2:1", "--default-class", "0", "--threads", "1", "--no-progress"])
    table = capsys.readouterr().out
    assert "blue" in table and "mIOU" in table


def test_bad_samples_are_skipped_and_counted(tmp_path, tanh_model):
    data = red_blue_dataset(tmp_path / "data")
    cv2.imwrite(str(data / "masks" / "1.png"), np.zeros((5, 5), np.uint8))  # another size
    dataset = open_dataset(data, "folder", num_classes=3)
    with pytest.raises(UserError, match=r"1\.png: mask is 5x5"):
        evaluate(tflite_predictor(tanh_model, num_threads=1), dataset, progress=False)
    dataset.skip_bad = True
    result = evaluate(tflite_predictor(tanh_model, num_threads=1), dataset, progress=False)
    assert result.images == 2 and len(result.skipped) == 1 and result.to_dict()["skipped"] == 1


def test_tflite_output_stride_and_missing_model_are_errors(tmp_path, tanh_model):
    with pytest.raises(UserError, match="output stride is fixed"):
        open_predictor(tanh_model, output_stride=8)
    with pytest.raises(UserError, match="model file not found"):
        open_predictor(tmp_path / "none.keras")


@pytest.mark.slow  # converts
def test_keras_and_tflite_models_score_alike_through_the_same_loop(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from edge_deeplab.config import DeepLabConfig
    from edge_deeplab.export.convert import tflite_converter
    from edge_deeplab.model.deeplab import build_deeplab, save_model

    rng = np.random.default_rng(0)
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "d" / "images" / f"{i}.png"), rng.integers(0, 256, (40, 52, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "d" / "masks" / f"{i}.png"), rng.integers(0, 3, (40, 52)).astype(np.uint8))
    dataset = open_dataset(tmp_path / "d", "folder", num_classes=3)
    tf.keras.utils.set_random_seed(2)  # a random network that predicts all three classes, not one
    model = build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(33, 33), num_classes=3))
    save_model(model, tmp_path / "m.keras")
    (tmp_path / "m.tflite").write_bytes(tflite_converter(model).convert())
    keras_result = evaluate(open_predictor(tmp_path / "m.keras"), dataset, progress=False)
    assert (keras_result.matrix.matrix.sum(0) > 0).sum() >= 2  # otherwise the comparisons below prove nothing
    tflite_result = evaluate(open_predictor(tmp_path / "m.tflite", num_threads=1), dataset, progress=False)
    # the same pixels, the same predictions (up to float ties): the same confusion matrix
    differing = np.abs(keras_result.matrix.matrix - tflite_result.matrix.matrix).sum()
    assert differing <= 0.01 * keras_result.matrix.matrix.sum()
    os8 = evaluate(open_predictor(tmp_path / "m.keras", output_stride=8), dataset, progress=False)
    assert os8.images == 2 and not np.array_equal(os8.matrix.matrix, keras_result.matrix.matrix)
