"""Import of the official DeepLab TFLite weights: architecture, weights, fidelity, re-targeting, bad files."""
import numpy as np
import pytest

pytest.importorskip("tensorflow")
import tf_keras as keras  # noqa: E402

import tiny_tflite  # noqa: E402
from edge_deeplab.model import importer  # noqa: E402
from edge_deeplab.tflite.graph import TFLiteGraph  # noqa: E402
from edge_deeplab.cli import main  # noqa: E402
from edge_deeplab.errors import UserError  # noqa: E402
from edge_deeplab.model.deeplab import load_model  # noqa: E402
from edge_deeplab.presets import get_preset  # noqa: E402

pytestmark = pytest.mark.slow  # imports the official models

OFFICIAL = {  # file -> the preset that describes it
    "deeplabv3_257_mv_gpu.tflite": "mobilenetv2_dm05_os8_257",
    "deeplabv3_mnv2_pascal_quant.tflite": "mobilenetv2_dm1_os16_513",
    "deeplabv3_mnv2_dm05_pascal_quant.tflite": "mobilenetv2_dm05_os16_513",
}
FLOAT_257 = "deeplabv3_257_mv_gpu.tflite"


def official(shared, name):
    return shared("models", "official", name)


def pennfudan_images(shared, count):
    return importer.read_images(shared("data", "pennfudan", "PennFudanPed", "PNGImages"), count)


def _conv(source, name_prefix):
    return next(c for c in source.backbone if c.name.startswith(name_prefix))


@pytest.fixture(scope="module")
def float_import(official_keras):
    return official_keras(FLOAT_257)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_reads_the_architecture_of_each_official_model(shared, name):
    source = importer.read_official_tflite(official(shared, name))
    preset = get_preset(OFFICIAL[name])["config"]
    for field in ("backbone", "depth_multiplier", "output_stride", "input_size", "num_classes", "aspp", "decoder"):
        assert getattr(source.config, field) == getattr(preset, field), field
    assert source.config.aspp_channels == 256
    quantized = name != FLOAT_257
    assert source.quantized == quantized
    assert source.output_kind == ("labels" if quantized else "logits")
    if quantized:  # uint8 input: real = (q - 128) / 128
        assert (source.input_dtype, source.input_scale, source.input_zero_point) == ("uint8", 1 / 128, 128)
    # Conv1, the first block (depthwise, project: no expansion), 16 blocks of 3 convs; 10 residual adds
    assert len(source.backbone) == 1 + 2 + 16 * 3 and source.residual_adds == 10


def test_float_257_import_reproduces_the_official_logits(shared, float_import):
    model, source = float_import
    check = importer.verify(model, source, pennfudan_images(shared, 6), "pennfudan")
    assert check.images == 6 and check.pixels == 6 * 257 * 257
    assert check.agreement >= 0.995
    assert check.max_abs_logit_diff < 1e-3  # measured 4e-5: float rounding only


@pytest.mark.parametrize("name", ["deeplabv3_mnv2_dm05_pascal_quant.tflite", "deeplabv3_mnv2_pascal_quant.tflite"])
def test_uint8_513_import_agrees_with_the_official_model(shared, official_keras, name):
    model, source = official_keras(name)
    check = importer.verify(model, source, pennfudan_images(shared, 2), "pennfudan")
    assert check.max_abs_logit_diff is None  # the official 513 models output ARG_MAX labels only
    assert check.agreement >= 0.97


def test_folded_batch_norm_becomes_an_identity_carrying_the_bias(float_import):
    model, source = float_import
    conv = _conv(source, "MobilenetV2/expanded_conv_1/depthwise/")  # keras block_1_depthwise
    layer = model.get_layer("block_1_depthwise")
    np.testing.assert_array_equal(layer.get_weights()[0], conv.kernel)
    gamma, beta, mean, variance = model.get_layer("block_1_depthwise_BN").get_weights()
    np.testing.assert_array_equal(beta, conv.bias)
    assert (gamma == 1).all() and (mean == 0).all()
    assert (variance + np.float32(1e-3) == 1).all()
    # The BatchNorm in inference mode is then exactly "+ bias".
    x = np.random.default_rng(0).normal(size=(1, 4, 4, conv.bias.size)).astype(np.float32)
    out = model.get_layer("block_1_depthwise_BN")(x, training=False).numpy()
    np.testing.assert_allclose(out, x + conv.bias, rtol=0, atol=1e-6)


def test_output_stride_override_keeps_the_weights(shared, float_import):
    model, _ = float_import
    result = importer.import_official(official(shared, FLOAT_257), output_stride=16, verification=False)
    moved = result.model
    assert moved.deeplab_config.output_stride == 16 and result.source.config.output_stride == 8
    assert len(moved.weights) == len(model.weights)
    for a, b in zip(model.get_weights(), moved.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert moved.get_layer("aspp0").input_shape[1] == 17 and model.get_layer("aspp0").input_shape[1] == 33
    assert moved.get_layer("block_7_depthwise").dilation_rate == (1, 1)
    assert model.get_layer("block_7_depthwise").dilation_rate == (2, 2)


def test_a_wrong_weight_fails_the_verification(shared, monkeypatch):
    load = importer.load_weights

    def damaged(model, source):
        load(model, source)
        layer = model.get_layer("concat_projection")
        kernel = layer.get_weights()[0]
        half = kernel.shape[2] // 2
        layer.set_weights([np.concatenate([kernel[:, :, half:], kernel[:, :, :half]], axis=2)])  # branches swapped

    monkeypatch.setattr(importer, "load_weights", damaged)
    with pytest.raises(UserError, match=r"disagrees with it: argmax agreement .* below the required 99\.5%"):
        importer.import_official(official(shared, FLOAT_257), verify_images=shared(
            "data", "pennfudan", "PennFudanPed", "PNGImages"), max_images=2, progress=False)


def test_a_layer_that_differs_from_the_graph_is_named(shared):
    from edge_deeplab.model.deeplab import build_deeplab

    source = importer.read_official_tflite(official(shared, FLOAT_257))
    _conv(source, "MobilenetV2/expanded_conv_7/depthwise/").dilation = 4  # as if dilation started elsewhere
    with pytest.raises(UserError, match=r"layer block_7_depthwise .* dilation 2 .* does not match .* dilation 4"):
        importer.load_weights(build_deeplab(source.config), source)


def test_quantization_of_the_official_model_maps_onto_our_layers(shared):
    """The ranges and weight scales of the 8-bit 513 model, keyed by our layer names, at another output stride."""
    from edge_deeplab.model.deeplab import build_deeplab

    path = official(shared, "deeplabv3_mnv2_pascal_quant.tflite")
    source = importer.read_official_tflite(path)
    model = build_deeplab(source.config.replace(output_stride=8, input_size=(65, 65)))
    q = importer.read_quantization(model, path)
    g = TFLiteGraph.read(path)
    assert set(q.activation_ranges) <= {layer.name for layer in model.layers}
    assert len(q.weight_scales) == 55 and len(q.activation_ranges) == 55 + 10 + 1  # convs, adds, concat
    low, high = q.activation_ranges["block_1_expand_relu"]  # a fused ReLU6: the official [0, 6]
    assert low == 0 and abs(high - 6) < 1e-3
    project = _conv(source, "MobilenetV2/expanded_conv/project/")  # linear: the BatchNorm's output
    scale, zero_point, _ = g.quantization(g.ops[project.op]["outputs"][0])
    assert np.allclose(q.activation_ranges["expanded_conv_project_BN"],
                       (-zero_point[0] * scale[0], (255 - zero_point[0]) * scale[0]))
    assert q.weight_scales["expanded_conv_project"] == float(g.quantization(g.ops[project.op]["inputs"][1])[0][0])


def test_quantization_needs_a_quantized_model_of_the_same_architecture(shared, float_import):
    model = float_import[0]
    with pytest.raises(UserError, match="float weights, no 8-bit quantization"):
        importer.read_quantization(model, official(shared, FLOAT_257))
    with pytest.raises(UserError, match="not the architecture of this graph"):  # depth 0.5 vs the depth 1.0 graph
        importer.read_quantization(model, official(shared, "deeplabv3_mnv2_pascal_quant.tflite"))


@pytest.mark.parametrize("content, message", [
    (b"", "not a TFLite model"),
    (bytes(range(256)) * 8, "not a TFLite model"),
    (tiny_tflite.tanh_logits(), "no DeepLab image-pooling branch"),
    (tiny_tflite.pooled_logits(), "no DeepLab image-pooling branch"),
    (tiny_tflite.not_segmentation(), r"input \[1, 6\] float32 is not one \[1, H, W, 3\]"),
])
def test_unrecognised_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        importer.read_official_tflite(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_truncated_official_model(shared, tmp_path):
    data = official(shared, FLOAT_257).read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated TFLite model"):
        importer.read_official_tflite(path)


def test_cli_imports_verifies_and_saves(shared, tmp_path, capsys):
    out = tmp_path / "imported.keras"
    images = shared("data", "pennfudan", "PennFudanPed", "PNGImages")
    main(["import", str(official(shared, FLOAT_257)), "-o", str(out), "--os", "16", "--verify-images", str(images),
          "--max-verify-images", "2"])
    printed = capsys.readouterr().out
    assert "depth 0.5, output stride 8, 257x257" in printed
    assert "of 132098 pixels on 2" in printed
    assert float(printed.split("verified: argmax agreement ")[1].split("%")[0]) >= 99.5
    assert "at output stride 16" in printed
    model = load_model(out)
    assert model.deeplab_config.output_stride == 16 and model.deeplab_config.depth_multiplier == 0.5
    assert isinstance(model.get_layer("block_1_depthwise_BN"), keras.layers.BatchNormalization)


def test_cli_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(SystemExit) as code:
        main(["import", str(bad), "-o", str(tmp_path / "m.keras")])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a TFLite model" in err and "\n" not in err
    assert not (tmp_path / "m.keras").exists()
