"""Quantization-aware fine-tuning: train, save / load, full-integer conversion with a sane input scale."""
import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_model_optimization")

from edge_deeplab.config import DeepLabConfig  # noqa: E402
from edge_deeplab.data.datasets import open_dataset  # noqa: E402
from edge_deeplab.model.predictor import keras_predictor  # noqa: E402
from edge_deeplab.model.deeplab import build_deeplab, is_qat_model  # noqa: E402
from edge_deeplab.train.qat import load_any_model  # noqa: E402
from edge_deeplab.train.trainer import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.slow  # QAT training and conversion

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


def _kernel_range(model, layer_name):
    """(range variable, kernel) of a QAT model's conv layer."""
    wrapper = model.get_layer(f"quant_{layer_name}")
    (kernel, _, variables), = wrapper._weight_vars
    return variables["max_var"].numpy(), kernel.numpy()


def test_qat_from_the_official_quantization_keeps_its_weight_grids(shared, official_keras, tmp_path):
    """--quantization-from: the run starts at the official model's ranges and trains under its weight grids
    (tfmot alone refits every weight range to the kernel's extremes at each step); a new 2-class head,
    which the official model lacks, starts from calibrated ranges."""
    from edge_deeplab.model import importer
    from edge_deeplab.model.deeplab import adapt, rebuild

    official = shared("models", "official", "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    data = open_dataset(shared("data", "pennfudan", "PennFudanPed"), "pennfudan").subset("0:4")
    imported, _ = official_keras("deeplabv3_mnv2_dm05_pascal_quant.tflite")
    model, fresh = adapt(rebuild(imported, input_size=(65, 65)), num_classes=2)
    assert fresh == ["logits"]
    quantization = importer.read_quantization(model, official)
    assert quantization.new_layers == ("logits",) and "logits" not in quantization.weight_scales
    config = TrainConfig(epochs=1, batch_size=2, qat=True, quantization_from=str(official), crop_size=65,
                         max_resize=97, learning_rate=1e-3, optimizer="adam", freeze_bn=True)
    result = train(model, data, tmp_path / "run", config, progress=False, log_epochs=False)

    for name in ("block_3_depthwise", "expanded_conv_depthwise"):  # per-tensor ranges: exactly the official grid
        high, kernel = _kernel_range(result.model, name)
        assert high == pytest.approx(127 * quantization.weight_scales[name], rel=1e-6)
        assert high != pytest.approx(np.abs(kernel).max(), rel=1e-3)  # not what tfmot's refit would give
        assert np.abs(kernel - model.get_layer(name).depthwise_kernel.numpy()).max() > 1e-4  # it did train
    high, _ = _kernel_range(result.model, "block_3_project")  # per-channel: at least the official grid
    assert np.all(high >= 127 * quantization.weight_scales["block_3_project"] * (1 - 1e-6))

    def activation_range(name):
        return [float(w.numpy()) for w in result.model.get_layer(f"quant_{name}").weights
                if w.name.endswith(("_min:0", "_max:0")) and "kernel" not in w.name]

    # activation ranges start at the official ones and move slowly (moving average): still near them
    official_concat = quantization.activation_ranges["aspp_concat"]
    assert activation_range("aspp_concat") == pytest.approx(official_concat, rel=0.05, abs=0.05)
    # the new head's range was calibrated (tfmot's initial one is [-6, 6])
    low, high = activation_range("logits")
    assert low < 0 < high and (low, high) != pytest.approx((-6, 6), abs=1e-3)


def test_a_new_head_has_no_official_quantization_to_convert_with(shared, official_keras):
    """Post-training conversion with --quantization-from cannot quantize a head the official model lacks."""
    from edge_deeplab.model import importer
    from edge_deeplab.errors import UserError
    from edge_deeplab.model.deeplab import adapt, rebuild
    from edge_deeplab.train.qat import apply_source_quantization, quantize_deeplab

    official = shared("models", "official", "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    imported, _ = official_keras("deeplabv3_mnv2_dm05_pascal_quant.tflite")
    model, _ = adapt(rebuild(imported, input_size=(65, 65)), num_classes=2)
    expected = "no quantization range for the model's logits, upsample_logits .*new classifier"
    with pytest.raises(UserError, match=expected):
        apply_source_quantization(quantize_deeplab(model), importer.read_quantization(model, official))


@pytest.mark.parametrize("changes, message", [
    (dict(quantization_from="official.tflite"), "goes with --qat"),
    (dict(qat=True, quantization_from="/nonexistent/official.tflite"), "model file not found"),
])
def test_quantization_from_is_checked(changes, message):
    from edge_deeplab.errors import UserError

    with pytest.raises(UserError, match=message):
        TrainConfig(**changes)


def test_a_qat_model_rebuilt_at_another_output_stride_keeps_weights_and_ranges(qat_run):
    from edge_deeplab.train.qat import rebuild_qat

    _, result, _ = qat_run
    loaded = load_any_model(result.output)
    at8 = rebuild_qat(loaded, output_stride=8)
    assert is_qat_model(at8) and at8.deeplab_config.output_stride == 8
    for a, b in zip(at8.get_weights(), loaded.get_weights()):  # kernels and min / max ranges alike
        np.testing.assert_array_equal(a, b)
    rates = {layer.layer.dilation_rate for layer in at8.layers if hasattr(getattr(layer, "layer", None),
                                                                         "dilation_rate")}
    assert (4, 4) in rates and (4, 4) not in {layer.layer.dilation_rate for layer in loaded.layers
                                              if hasattr(getattr(layer, "layer", None), "dilation_rate")}
    # eval --output-stride now takes QAT models too
    assert keras_predictor(loaded, output_stride=8).num_classes == 2
