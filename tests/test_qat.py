"""Quantization-aware fine-tuning: train, save / load, full-integer conversion with a sane input scale."""
import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_model_optimization")

from edge_deeplab.config import DeepLabConfig  # noqa: E402
from edge_deeplab.datasets import open_dataset  # noqa: E402
from edge_deeplab.evaluate import evaluate, keras_predictor, tflite_predictor  # noqa: E402
from edge_deeplab.model.deeplab import build_deeplab  # noqa: E402
from edge_deeplab.qat import int8_tflite, is_qat_model, load_any_model  # noqa: E402
from edge_deeplab.tflite_report import EXPECTED_INPUT_SCALE  # noqa: E402
from edge_deeplab.train import TrainConfig, train  # noqa: E402

SIZE = 33


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        image = rng.integers(0, 256, (SIZE + 8, SIZE + 4, 3), dtype=np.uint8)  # the full [-1, 1] range
        label = np.zeros(image.shape[:2], np.uint8)
        label[5:25, 6:20] = 1
        image[5:25, 6:20] = (250, 250, 250)
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{i}.png"), label)
    float_model = build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(SIZE, SIZE), num_classes=2))
    dataset = open_dataset(root, "folder", num_classes=2)
    result = train(float_model, dataset, root / "run", TrainConfig(epochs=1, batch_size=2, qat=True,
                                                                   learning_rate=1e-3, freeze_bn=True),
                   progress=False, log_epochs=False)
    return root, result, dataset


def test_qat_training_gives_a_saved_batch1_qat_model(qat_run):
    root, result, _ = qat_run
    assert is_qat_model(result.model) and result.model.input_shape == (1, SIZE, SIZE, 3)
    # activation ranges start from the float model's, not tfmot's [-6, 6] (which would clip the logits)
    logits_max = [w for w in result.model.get_layer("quant_logits").weights if w.name.endswith("activation_max:0")]
    assert logits_max and float(logits_max[0].numpy()) != 6.0
    assert result.output.name == "model_qat.h5"
    loaded = load_any_model(result.output)
    assert is_qat_model(loaded) and loaded.deeplab_config.num_classes == 2
    x = np.random.default_rng(1).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), result.model(x).numpy(), atol=1e-5)


def test_trained_qat_model_converts_to_full_integer_without_calibration(qat_run, tmp_path):
    root, result, dataset = qat_run
    content = int8_tflite(load_any_model(result.output))
    path = tmp_path / "qat_int8.tflite"
    path.write_bytes(content)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    assert inp["dtype"] == np.uint8
    assert inp["quantization"][0] == pytest.approx(EXPECTED_INPUT_SCALE, rel=0.1)
    float_tensors = [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    assert float_tensors == []  # full integer
    # the int8 model and the fake-quantized Keras model score the same through the same evaluation code
    keras_score = evaluate(keras_predictor(result.model), dataset, progress=False).matrix
    int8_score = evaluate(tflite_predictor(path, num_threads=1), dataset, progress=False).matrix
    assert abs(keras_score.miou() - int8_score.miou()) < 0.05


