"""Conversion to TFLite: quantization modes, heads, QAT, metadata, report, errors, CLI.

Conversions take tens of seconds each, so the converted models are module fixtures shared by the tests.
"""
import contextlib
import io
import json

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import tf_keras as keras  # noqa: E402

import tiny_tflite  # noqa: E402
from edge_deeplab.cli import main  # noqa: E402
from edge_deeplab.export.convert import (ConvertOptions, argmax_size, convert, export_model, model_input,  # noqa: E402
                                  nearest_indices)
from edge_deeplab.errors import UserError  # noqa: E402
from edge_deeplab.model.importer import synthetic_images  # noqa: E402
from edge_deeplab.model.deeplab import build_deeplab, rebuild, save_model  # noqa: E402
from edge_deeplab.runtime.interpreter import SegmentationModel  # noqa: E402
from edge_deeplab.tflite.metadata import read_metadata  # noqa: E402
from edge_deeplab.tflite.graph import TFLiteGraph  # noqa: E402
from edge_deeplab.tflite.report import EXPECTED_INPUT_SCALE, check_input_scale  # noqa: E402

pytestmark = pytest.mark.slow  # every test here converts a model (or reads an official one)

SIZE = 65
LABELS = ["background", "sky", "road", "person", "car"]


def _recalibrate_batch_norm(model, images):
    """BatchNorm statistics from actual activations, so that a randomly initialised network computes on
    unit-scale values and its int8 ranges look like a trained one's (with the default statistics its
    activations fade to ~1e-9 by the logits)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(np.concatenate([model_input(im, model.input_shape[1:3]) for im in images]), training=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="module")
def images_dir(workdir):
    folder = workdir / "images"
    folder.mkdir()
    for i, image in enumerate(synthetic_images(8, (90, 120), seed=3)):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def tiny(workdir):
    keras.utils.set_random_seed(0)  # the same network every run
    model = build_deeplab(depth_multiplier=0.35, input_size=SIZE, num_classes=len(LABELS))
    _recalibrate_batch_norm(model, synthetic_images(8, (SIZE, SIZE), seed=7))
    return save_model(model, workdir / "tiny.keras"), model


@pytest.fixture(scope="module")
def float_logits(tiny, workdir, images_dir):
    """Converted through the CLI: float32, logits, metadata, report."""
    path, _ = tiny
    out = workdir / "float" / "tiny.tflite"
    labels = workdir / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(["convert", str(path), "-o", str(out), "--labels", str(labels), "--samples", str(images_dir),
              "--name", "tiny deeplab", "--model-version", "2.1", "--threads", "1"])
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def int8_labels(tiny, workdir, images_dir):
    path, _ = tiny
    return convert(path, workdir / "int8" / "labels.tflite", quantize="int8", io="uint8", head="labels",
                   argmax_stride=4, calibration=str(images_dir), num_calibration=8, labels=LABELS,
                   num_threads=1, progress=False)


# --------------------------------------------------------------------------------------------- float
def test_float_export_ops_metadata_and_report(float_logits):
    float_logits, printed = float_logits
    content = float_logits.read_bytes()
    graph = TFLiteGraph(content)
    ops = graph.op_counts()
    assert ops["CONV_2D"] >= 30 and ops["DEPTHWISE_CONV_2D"] == 17
    assert "SPACE_TO_BATCH_ND" not in ops and "BATCH_TO_SPACE_ND" not in ops
    assert graph.io(graph.outputs)[0]["shape"] == [1, SIZE, SIZE, len(LABELS)]
    meta = read_metadata(content)
    assert meta.name == "tiny deeplab" and meta.labels == LABELS
    assert meta.norm_mean == [127.5] and meta.norm_std == [127.5]

    report_path = float_logits.with_name("tiny.report.json")
    report = json.loads(report_path.read_text())
    assert report["size_bytes"] == len(content) and report["ops"] == ops
    assert report["conversion"]["quantize"] == "fp32" and report["float_ops"] is None
    assert report["inputs"][0]["dtype"] == "float32" and report["image_quantization"] is None
    agreement = report["agreement"]
    assert agreement["images"] == 4 and agreement["label_agreement"] > 0.999
    assert agreement["logits_max_abs_error"] < 1e-3
    assert isinstance(report["gpu"]["compatible"], bool)
    # Only the image-pooling broadcast (a nearest resize of a 1x1 map) runs outside XNNPACK.
    assert {f["op"] for f in report["xnnpack"]["fallback"]} <= {"RESIZE_NEAREST_NEIGHBOR"}
    assert report["xnnpack"]["delegated_ops"] >= report["op_total"] - 1
    # Corner-aligned resizes are what Android 10's NNAPI rejects.
    assert any(f["op"] == "RESIZE_BILINEAR" and "align_corners" in f["reason"] for f in report["nnapi"]["fall_off"])
    assert "agreement with Keras on 4" in printed and f"wrote {float_logits}" in printed
    assert sorted(p.name for p in float_logits.parent.iterdir()) == ["tiny.report.json", "tiny.tflite"]


def test_runtime_reads_the_converted_model(float_logits, tiny):
    model = SegmentationModel(float_logits[0], num_threads=1)
    assert model.info.normalization_source == "metadata"
    assert model.info.labels == LABELS and model.info.output_kind == "logits"
    image = synthetic_images(1, (SIZE, SIZE), seed=11)[0]
    keras_labels = tiny[1](model_input(image, (SIZE, SIZE))).numpy()[0].argmax(-1)
    ours = model.predict_labels(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert (ours == keras_labels).mean() > 0.999


# ---------------------------------------------------------------------------------------------- int8
def test_int8_labels_is_full_integer(int8_labels):
    content = int8_labels.path.read_bytes()
    graph = TFLiteGraph(content)
    (inp,), (out,) = graph.io(graph.inputs), graph.io(graph.outputs)
    assert inp["dtype"] == "uint8" and abs(inp["scale"] - EXPECTED_INPUT_SCALE) < 1e-6
    assert inp["zero_point"] in (127, 128)  # raw pixels, as MediaPipe feeds a uint8 input
    assert out == {"name": out["name"], "shape": [1, SIZE, SIZE], "dtype": "int32"}
    assert int8_labels.report["float_ops"] == {"boundary": [], "inner": []}
    weights = [graph.tensors[op["inputs"][1]] for op in graph.ops if op["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert weights and all(w["dtype"] == "int8" for w in weights)
    ops = graph.op_counts()
    assert ops["ARG_MAX"] == 1 and ops["GATHER"] == 2  # argmax on the 17x17 grid, then nearest upsampling
    argmax_input = graph.tensors[next(op for op in graph.ops if op["op"] == "ARG_MAX")["inputs"][0]]
    assert argmax_input["shape"] == [1, 17, 17, len(LABELS)] and argmax_input["dtype"] == "int8"
    fallback = {f["op"] for f in int8_labels.report["xnnpack"]["fallback"]}
    assert "ARG_MAX" in fallback and "CONV_2D" not in fallback
    assert int8_labels.report["conversion"]["calibration"]["images"] == 8
    assert read_metadata(content).labels == LABELS


def test_report_agreement_is_what_the_two_models_say(int8_labels, tiny):
    """The report's agreement, recomputed by hand. (A random network amplifies int8 noise layer by layer,
    so the value itself is only meaningful for trained weights: see the test with the official ones.)"""
    from ai_edge_litert.interpreter import Interpreter

    from edge_deeplab.export.report import agreement

    content = int8_labels.path.read_bytes()
    export = export_model(tiny[1], "labels", argmax_stride=4)
    inputs = [model_input(im, (SIZE, SIZE)) for im in synthetic_images(2, (SIZE, SIZE), seed=9)]
    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = inp["quantization"]
    same = 0
    for x in inputs:
        interpreter.set_tensor(inp["index"], np.clip(np.round(x / scale + zero), 0, 255).astype(np.uint8))
        interpreter.invoke()
        same += (interpreter.get_tensor(out["index"]) == export(x).numpy()).sum()
    result = agreement(content, export, inputs, num_threads=1)
    assert result["images"] == 2 and "logits_max_abs_error" not in result
    assert result["label_agreement"] == pytest.approx(same / (2 * SIZE * SIZE))


def test_runtime_runs_the_int8_labels_model(int8_labels):
    model = SegmentationModel(int8_labels.path, num_threads=1)
    assert model.info.output_kind == "labels" and model.info.input_dtype == "uint8"
    mask = model.predict_labels(cv2.cvtColor(synthetic_images(1, (80, 100), seed=5)[0], cv2.COLOR_RGB2BGR))
    assert mask.shape == (80, 100) and mask.max() < len(LABELS)


def test_int8_of_real_weights_keeps_the_classes(shared, official_keras, workdir):
    """The official 257 model's weights at 129x129, int8 with a float stem conv: it agrees with float on real
    street photos, and the stem conv (with the QUANTIZE after it) is the only float op."""
    photos = shared("data", "pennfudan", "PennFudanPed", "PNGImages")
    model = rebuild(official_keras("deeplabv3_257_mv_gpu.tflite")[0], input_size=(129, 129))
    result = convert(model, workdir / "real_int8.tflite", quantize="int8", float_stem=True, calibration=str(photos),
                     num_calibration=16, num_samples=6, num_threads=1, progress=False)
    graph = TFLiteGraph(result.path.read_bytes())
    assert graph.float_ops() == (["DEQUANTIZE"], ["CONV_2D", "QUANTIZE"])  # float logits out
    stem = graph.ops[0]
    assert stem["op"] == "CONV_2D" and stem["inputs"][0] == graph.inputs[0]
    assert graph.tensors[stem["inputs"][1]]["dtype"] == "float32"
    assert all(graph.tensors[op["inputs"][1]]["dtype"] == "int8" for op in graph.ops[1:]
               if op["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    assert result.report["agreement"]["label_agreement"] > 0.95


# ----------------------------------------------------------------------------------- fp16 and dynamic
@pytest.mark.parametrize("mode, weight_type, max_size_ratio", [("fp16", "float16", 0.55), ("dynamic", "int8", 0.4)])
def test_weight_quantization_modes(tiny, float_logits, workdir, mode, weight_type, max_size_ratio):
    result = convert(tiny[1], workdir / f"{mode}.tflite", quantize=mode, num_threads=1, progress=False)
    graph = TFLiteGraph(result.path.read_bytes())
    assert graph.io(graph.inputs)[0]["dtype"] == "float32" and graph.io(graph.outputs)[0]["dtype"] == "float32"
    assert any(t["dtype"] == weight_type and t["constant"] for t in graph.tensors)
    conv_weights = {graph.tensors[op["inputs"][1]]["dtype"] for op in graph.ops if op["op"] == "CONV_2D"}
    if mode == "fp16":  # float16 constants, dequantized to float32 weights when the model loads
        assert graph.op_counts()["DEQUANTIZE"] >= 55 and conv_weights == {"float32"}
    else:  # int8 weights read by the (hybrid) convolutions themselves, float activations
        assert "int8" in conv_weights and graph.image_quantization() is None
    assert result.report["size_bytes"] < max_size_ratio * float_logits[0].stat().st_size
    assert result.report["agreement"]["label_agreement"] > 0.9


# ----------------------------------------------------------------------------------------------- QAT
def test_qat_model_converts_to_int8_without_calibration(shared, official_keras, workdir):
    """A QAT model of the official 257 weights (at 129x129) whose quantizers learnt their ranges on a few
    photos: its int8 .tflite computes what the fake-quantized Keras model computes."""
    from edge_deeplab.model.importer import read_images
    from edge_deeplab.train.qat import quantize_deeplab

    photos = shared("data", "pennfudan", "PennFudanPed", "PNGImages")
    model = rebuild(official_keras("deeplabv3_257_mv_gpu.tflite")[0], input_size=(129, 129))
    qat = quantize_deeplab(model)
    x = np.concatenate([model_input(im, (129, 129)) for im in read_images(photos, 12)])
    qat.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, model.predict(x, batch_size=1, verbose=0).argmax(-1), batch_size=1, verbose=0)  # ranges only
    result = convert(qat, workdir / "qat.tflite", quantize="int8", io="int8", head="labels",
                     samples=str(photos), num_samples=6, num_threads=1, progress=False)
    report = result.report
    assert report["conversion"]["qat"] is True and report["conversion"]["calibration"] is None
    assert abs(report["image_quantization"]["scale"] / EXPECTED_INPUT_SCALE - 1) < 0.05
    assert report["float_ops"] == {"boundary": [], "inner": []}
    assert report["agreement"]["label_agreement"] > 0.99


def test_int8_with_the_official_quantization(shared, official_keras, workdir):
    """Weights imported from the official 8-bit 513 model (at 129x129, to be quick), converted with that
    model's own activation ranges and weight scales, no calibration set: the int8 weights are the official
    ones on the official grid, the residual additions keep the official ranges, and it agrees with float."""
    official = shared("models", "official", "deeplabv3_mnv2_pascal_quant.tflite")
    photos = shared("data", "pennfudan", "PennFudanPed", "PNGImages")
    model = rebuild(official_keras("deeplabv3_mnv2_pascal_quant.tflite")[0], input_size=(129, 129))
    result = convert(model, workdir / "official_quant.tflite", quantize="int8", io="uint8",
                     quantization_from=str(official), samples=str(photos), num_samples=6, num_threads=1,
                     progress=False)
    report = result.report
    assert report["conversion"]["quantization_from"] == str(official) and report["conversion"]["calibration"] is None
    assert report["float_ops"] == {"boundary": [], "inner": []}
    assert report["agreement"]["label_agreement"] > 0.97  # against the float model

    theirs, ours = TFLiteGraph.read(official), TFLiteGraph.read(result.path)

    def weights(g):
        return [g.values(g.ops[i]["inputs"][1]) for i, t in enumerate(g.op_types)
                if t in ("CONV_2D", "DEPTHWISE_CONV_2D")]

    pairs = [(a, b) for a, b in zip(weights(theirs), weights(ours))]
    assert len(pairs) == 55 and all(a.shape == b.shape for a, b in pairs)
    same = sum(np.isclose(a, b, rtol=1e-5, atol=1e-8).sum() for a, b in pairs)
    # all but the few weights more than 127 steps from the official zero point (67 of 2.08M) and the
    # channels re-scaled to hold them; re-quantizing from the float weights keeps far fewer exact
    assert same / sum(a.size for a, _ in pairs) > 0.99

    def add_ranges(g):
        out = []
        for i, t in enumerate(g.op_types):
            if t == "ADD":
                scale, zero_point, _ = g.quantization(g.ops[i]["outputs"][0])
                signed = g.tensors[g.ops[i]["outputs"][0]]["dtype"] == "int8"  # zero point 128 lower than uint8
                out.append((round(float(scale[0]), 6), int(zero_point[0]) + (128 if signed else 0)))
        return out

    assert add_ranges(ours) == add_ranges(theirs) and len(add_ranges(ours)) == 10


def test_untrained_quantizers_give_a_clear_error():
    absurd = tiny_tflite.dequantize_logits(dtype=np.int8, scale=4e-9)
    with pytest.raises(UserError, match="was the QAT model trained"):
        check_input_scale(TFLiteGraph(absurd), source="qat.tflite")
    check_input_scale(TFLiteGraph(tiny_tflite.dequantize_logits(dtype=np.int8, scale=2 / 255)))


# --------------------------------------------------------------------------------------------- report
def test_report_rules_on_the_official_513_model(shared):
    from edge_deeplab.tflite.report import nnapi_fallback, xnnpack_fallback

    content = shared("models", "official", "deeplabv3_mnv2_pascal_quant.tflite").read_bytes()
    graph = TFLiteGraph(content)
    assert graph.io(graph.inputs)[0] == {"name": graph.tensors[graph.inputs[0]]["name"], "shape": [1, 513, 513, 3],
                                         "dtype": "uint8", "scale": 1 / 128, "zero_point": 128}
    assert graph.io(graph.outputs)[0]["dtype"] == "int64" and graph.op_counts()["ARG_MAX"] == 1
    assert graph.float_ops() == ([], [])
    nnapi = nnapi_fallback(graph)
    assert nnapi["full_delegation"] == "no Android version"  # NNAPI's arg-max gives int32 only
    assert any(f["op"] == "ARG_MAX" and "int64" in f["reason"] for f in nnapi["fall_off"])
    xnnpack = xnnpack_fallback(content, graph)
    fallback = {f["op"] for f in xnnpack["fallback"]}
    assert "ARG_MAX" in fallback and not fallback & {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD"}
    assert xnnpack["delegated_ops"] + sum(f["count"] for f in xnnpack["fallback"]) == xnnpack["ops"] == len(graph.ops)


def test_xnnpack_fallback_is_measured_not_guessed():
    from edge_deeplab.tflite.report import xnnpack_fallback

    tanh = tiny_tflite.tanh_logits()
    assert xnnpack_fallback(tanh, TFLiteGraph(tanh)) == {"delegated_ops": 1, "ops": 1, "partitions": 1, "fallback": []}
    argmax = tiny_tflite.argmax_labels()
    result = xnnpack_fallback(argmax, TFLiteGraph(argmax))
    assert result["partitions"] == 0 and result["fallback"][0]["op"] == "ARG_MAX"
    assert result["fallback"][0]["types"] == "float32->int64"


# ---------------------------------------------------------------------------------------------- heads
def test_label_heads_match_numpy(tiny):
    model = tiny[1]
    x = model_input(synthetic_images(1, (SIZE, SIZE), seed=4)[0], (SIZE, SIZE))
    logits = export_model(model, "logits")(x).numpy()[0]
    np.testing.assert_allclose(logits, model(x).numpy()[0], atol=1e-5)
    full = export_model(model, "labels")(x).numpy()[0]
    assert full.dtype == np.int32
    np.testing.assert_array_equal(full, logits.argmax(-1))
    low = keras.Model(model.input, model.get_layer("logits").output)(x).numpy()[0]  # 5x5 at output stride 16
    coarse = export_model(model, "labels", argmax_stride=16)(x).numpy()[0]
    rows = nearest_indices(low.shape[0], SIZE)
    np.testing.assert_array_equal(coarse, low.argmax(-1)[rows][:, rows])
    fine = export_model(model, "labels", argmax_stride=4)(x).numpy()[0]
    assert (fine == full).mean() > 0.9  # the argmax on a 17x17 grid moves boundaries by a pixel or two


def test_argmax_grid_and_nearest_indices():
    assert argmax_size((513, 513), 4) == (129, 129) and argmax_size((513, 385), 8) == (65, 49)
    assert argmax_size((65, 65), 1) == (65, 65)
    # 129 -> 513 corner-aligned: output pixel j takes grid point round(j / 4)
    idx = nearest_indices(129, 513)
    assert idx[0] == 0 and idx[1] == 0 and idx[2] == 1 and idx[4] == 1 and idx[512] == 128
    assert (np.abs(idx * 4 - np.arange(513)) <= 2).all()


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("source, options, message", [
    ("tiny", dict(quantize="int8"), "needs calibration images"),
    ("tiny", dict(io="uint8"), "--io uint8 needs --quantize int8"),
    ("tiny", dict(argmax_stride=4), "--head labels only"),
    ("tiny", dict(quantize="int8", io="uint8", float_stem=True), "--float-stem goes with"),
    ("tiny", dict(quantize="int8", calibration="/nonexistent/folder"), "image folder not found"),
    ("tiny", dict(quantize="fp16", quantization_from="official.tflite"), "goes with --quantize int8"),
    ("tiny", dict(quantize="int8", quantization_from="/nonexistent/official.tflite"), "model file not found"),
    ("tiny", dict(quantize="int8", quantization_from="x.tflite", synthetic_calibration=True), "no calibration"),
    ("no_such_preset", {}, "unknown preset"),
    ("missing.keras", {}, "model file not found"),
    ("tiny", dict(output_stride=12), "output stride must be one of"),
])
def test_bad_options_are_user_errors(tiny, workdir, source, options, message):
    source = tiny[1] if source == "tiny" else (workdir / source if source.endswith(".keras") else source)
    with pytest.raises(UserError, match=message):
        convert(source, workdir / "never.tflite", ConvertOptions(**options))
    assert not (workdir / "never.tflite").exists()


def test_cli_errors_are_one_line(tiny, workdir, capsys):
    for args in (["convert", str(tiny[0]), "-o", str(workdir / "x.tflite"), "--quantize", "int8"],
                 ["convert", str(tiny[0]), "-o", str(workdir / "x.onnx")]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_convert_at_another_output_stride(tiny, workdir):
    """--output-stride rebuilds the weights at another output stride first; the report compares the
    .tflite with that rebuilt model (the same weights, dilated)."""
    from edge_deeplab.model.deeplab import rebuild

    path, model = tiny
    result = convert(path, workdir / "os8.tflite", output_stride=8, progress=False)
    assert result.report["agreement"]["label_agreement"] > 0.99
    x = np.random.default_rng(0).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    at8, at16 = rebuild(model, output_stride=8)(x).numpy(), model(x).numpy()
    out = SegmentationModel(result.path, num_threads=1)
    out.invoke(x)
    np.testing.assert_allclose(out.raw_output(), at8, atol=1e-3)
    assert np.abs(at8 - at16).max() > 1e-2  # another network indeed
