"""export-android: the model card the Android demo app reads, its checks, and the app's own Kotlin card
reader (android_demo/core, run on the JVM) reading cards written here."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import tiny_tflite
from conftest import SHARED

from edge_deeplab.export.android_app import CARD_ASSET, MODEL_ASSET, export_android
from edge_deeplab.cli import main
from edge_deeplab.errors import UserError
from edge_deeplab.runtime.interpreter import Placement

REPO = Path(__file__).resolve().parents[1]
JVM_TESTS = REPO / "android_demo" / "run_jvm_tests.sh"
OFFICIAL = ("models", "official")


def make_app(app_dir):
    """A stand-in for android_demo/: what export-android needs of it is the app module's manifest."""
    (app_dir / "app" / "src" / "main").mkdir(parents=True)
    (app_dir / "app" / "src" / "main" / "AndroidManifest.xml").write_text("<manifest/>\n")
    return app_dir


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path / "android_demo")


def assets(app_dir):
    return app_dir / "app" / "src" / "main" / "assets"


def read_card(app_dir):
    return json.loads((assets(app_dir) / CARD_ASSET).read_text())


# ------------------------------------------------------------------------------------- official models
def test_float_logits_model(shared, app):
    model = shared(*OFFICIAL, "deeplabv3_257_mv_gpu.tflite")
    card = export_android(model, app)
    assert card == read_card(app)
    assert (card["format"], card["version"], card["model_file"]) == ("edge-deeplab-model-card", 1, MODEL_ASSET)
    assert card["input"] == {"height": 257, "width": 257, "channels": 3, "type": "float32", "scale": 0.0,
                             "zero_point": 0, "mean": [127.5] * 3, "std": [127.5] * 3,
                             "normalization_source": "default"}
    assert card["output"]["kind"] == "logits" and card["output"]["type"] == "float32"
    assert (card["output"]["height"], card["output"]["width"], card["output"]["num_classes"]) == (257, 257, 21)
    assert card["labels"] is None and card["background_class"] == 0
    copied = (assets(app) / MODEL_ASSET).read_bytes()
    assert copied == model.read_bytes()
    assert card["model_bytes"] == len(copied) and card["model_sha256"] == hashlib.sha256(copied).hexdigest()


def test_metadata_gives_labels_and_normalization(shared, app):
    card = export_android(shared(*OFFICIAL, "deeplabv3_257_mv_gpu_metadata.tflite"), app)
    assert card["input"]["normalization_source"] == "metadata"
    assert len(card["labels"]) == 21 and card["labels"][15] == "person"


def test_uint8_model_with_int64_labels_output(shared, app):
    labels = shared(*OFFICIAL, "pascal_voc_segmentation_labels.txt")
    card = export_android(shared(*OFFICIAL, "deeplabv3_mnv2_pascal_quant.tflite"), app, labels=labels,
                          background_class=None)
    assert card["input"]["type"] == "uint8"
    assert (card["input"]["scale"], card["input"]["zero_point"]) == (0.0078125, 128)
    assert card["output"]["kind"] == "labels" and card["output"]["type"] == "int64"
    assert card["output"]["num_classes"] == 21  # the depth of the ArgMax inside the model
    assert card["labels"][0] == "background" and card["background_class"] is None


def test_export_replaces_the_previous_model(shared, app):
    export_android(shared(*OFFICIAL, "deeplabv3_mnv2_pascal_quant.tflite"), app)
    export_android(shared(*OFFICIAL, "deeplabv3_257_mv_gpu.tflite"), app)
    assert read_card(app)["input"]["height"] == 257
    assert sorted(p.name for p in assets(app).iterdir()) == [MODEL_ASSET, CARD_ASSET]  # no temporary files left


# --------------------------------------------------------------------------------------------- refusals
def test_refuses_a_folder_that_is_not_the_app(shared, tmp_path):
    with pytest.raises(UserError, match="not the Android demo project"):
        export_android(shared(*OFFICIAL, "deeplabv3_257_mv_gpu.tflite"), tmp_path)


def test_refuses_a_file_that_is_not_a_model(app, tmp_path):
    bad = tmp_path / "notes.tflite"
    bad.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(UserError, match="notes.tflite"):
        export_android(bad, app)
    assert not assets(app).exists()  # nothing written


def test_refuses_labels_that_do_not_match_and_bad_background(shared, app, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("background\nperson\n")
    model = shared(*OFFICIAL, "deeplabv3_257_mv_gpu.tflite")
    with pytest.raises(UserError, match="2 labels for a model with 21 classes"):
        export_android(model, app, labels=labels)
    with pytest.raises(UserError, match="background class 21"):
        export_android(model, app, background_class=21)


def test_cli_prints_one_line_errors(app, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export-android", str(tmp_path / "missing.tflite"), "--app", str(app)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.tflite" in err[0]


def test_cli_exports(shared, app, capsys):
    main(["export-android", str(shared(*OFFICIAL, "deeplabv3_257_mv_gpu.tflite")), "--app", str(app),
          "--background-class", "none"])
    out = capsys.readouterr().out
    assert "input 257x257 float32" in out and "logits float32 257x257, 21 classes" in out
    assert read_card(app)["background_class"] is None


# ------------------------------------------------------------ tiny models written without TensorFlow
def int8_model_with_metadata(path):
    """int8 input with per-channel normalization and labels in its metadata -> float logits [1,9,5,3]."""
    meta = tiny_tflite.metadata_flatbuffer(name="tiny int8", mean=(123.675, 116.28, 103.53),
                                           std=(58.395, 57.12, 57.375))
    model = tiny_tflite.single_op_model(tiny_tflite.fb.BuiltinOperator.DEQUANTIZE, (1, 9, 5, 3), np.int8,
                                        (1, 9, 5, 3), np.float32, in_quant=(1 / 127.5, -1), metadata=meta)
    path.write_bytes(tiny_tflite.with_associated_files(model, {"labels.txt": "background\nperson\ndog\n"}))
    return path


def test_int8_input_with_metadata(app, tmp_path):
    card = export_android(int8_model_with_metadata(tmp_path / "tiny.tflite"), app)
    assert card["name"] == "tiny int8" and card["labels"] == ["background", "person", "dog"]
    assert card["input"]["type"] == "int8" and card["input"]["zero_point"] == -1
    assert card["input"]["scale"] == pytest.approx(1 / 127.5)
    assert card["input"]["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert card["input"]["normalization_source"] == "metadata"
    assert (card["input"]["height"], card["input"]["width"]) == (9, 5)


def test_uint8_logits_and_int64_labels(app, tmp_path):
    model = tmp_path / "q.tflite"
    model.write_bytes(tiny_tflite.quantized_logits(dtype=np.uint8, scale=1 / 128, zero_point=128))
    card = export_android(model, app)
    assert card["output"]["kind"] == "logits" and card["output"]["type"] == "uint8"
    assert (card["output"]["scale"], card["output"]["zero_point"]) == (1 / 128, 128)
    model.write_bytes(tiny_tflite.argmax_labels())
    card = export_android(model, app)
    assert (card["output"]["kind"], card["output"]["type"], card["output"]["num_classes"]) == ("labels", "int64", 3)


def test_refuses_a_classifier(app, tmp_path):
    model = tmp_path / "classifier.tflite"
    model.write_bytes(tiny_tflite.not_segmentation())
    with pytest.raises(UserError, match="classifier.tflite: not a segmentation model"):
        export_android(model, app)


# ------------------------------------------------------------- tiny generated models (needs TensorFlow)
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Small converted models of the kinds the app must run, and of kinds it must refuse."""
    tf = pytest.importorskip("tensorflow")
    import tf_keras as keras

    from edge_deeplab.export.convert import tflite_converter

    out = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)

    def image_input():
        return keras.Input((16, 16, 3), batch_size=1)

    def logits(x, classes=3):
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        return keras.layers.Conv2D(classes, 1)(x)

    def convert(model, name, int8=False):
        converter = tflite_converter(model)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)] for _ in range(8))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        with warnings.catch_warnings():  # TF's note that int8 I/O got no input statistics: not ours
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            content = converter.convert()
        path = out / f"{name}.tflite"
        path.write_bytes(content)
        return path

    x = image_input()
    models = {"int8_logits": convert(keras.Model(x, logits(x)), "int8_logits", int8=True)}
    x = image_input()
    ids = keras.layers.Lambda(lambda t: tf.argmax(t, axis=-1, output_type=tf.int32))(logits(x, 5))
    models["int32_labels"] = convert(keras.Model(x, ids), "int32_labels")
    x = image_input()
    ids16 = keras.layers.Lambda(lambda t: tf.cast(tf.argmax(t, axis=-1), tf.int16))(logits(x))
    models["int16_labels"] = convert(keras.Model(x, ids16), "int16_labels")
    x = image_input()
    models["two_outputs"] = convert(keras.Model(x, [logits(x), logits(x)]), "two_outputs")
    a, b = image_input(), image_input()
    models["two_inputs"] = convert(keras.Model([a, b], logits(keras.layers.Add()([a, b]))), "two_inputs")
    x = keras.Input((16, 16, 3), batch_size=2)
    models["batch2"] = convert(keras.Model(x, logits(x)), "batch2")
    return models


def test_int8_model_with_int8_logits(tiny_models, app):
    card = export_android(tiny_models["int8_logits"], app)
    assert card["input"]["type"] == "int8" and card["input"]["scale"] > 0.001  # a sane calibrated scale
    assert -128 <= card["input"]["zero_point"] <= 127
    assert card["output"] == {**card["output"], "kind": "logits", "type": "int8", "num_classes": 3,
                              "height": 16, "width": 16}
    assert card["output"]["scale"] > 0


def test_int32_labels_model(tiny_models, app):
    card = export_android(tiny_models["int32_labels"], app)
    assert (card["output"]["kind"], card["output"]["type"], card["output"]["num_classes"]) == ("labels", "int32", 5)


@pytest.mark.parametrize("name, reason", [
    ("int16_labels", "labels output of type int16 is not supported by the app"),
    ("two_outputs", "the app reads one output; this model has 2"),
    ("two_inputs", "2 inputs"),
    ("batch2", r"input shape \[2, 16, 16, 3\]"),
])
def test_refuses_models_the_app_cannot_run(tiny_models, app, name, reason):
    with pytest.raises(UserError, match=reason):
        export_android(tiny_models[name], app)
    assert not (assets(app) / CARD_ASSET).exists()


# --------------------------------------------------------------- the app's Kotlin code reads these cards
def expected_lut(card):
    """What each pixel value 0..255 of channel R, G, B becomes in the input tensor (the runtime's rule)."""
    i = card["input"]
    real = (np.arange(256)[None, :] - np.array(i["mean"])[:, None]) / np.array(i["std"])[:, None]
    if i["type"] == "float32":
        return real.astype(np.float32).ravel()
    limits = np.iinfo(i["type"])
    return np.clip(np.round(real / i["scale"] + i["zero_point"]), limits.min, limits.max).ravel()


def jvm_tools_missing():
    java = Path(os.environ.get("JAVA_LIBS", "/usr/share/java"))
    missing = [tool for tool in ("kotlinc", "java") if not shutil.which(tool)]
    missing += [jar for jar in ("kotlin-stdlib.jar", "junit4.jar", "hamcrest-core.jar") if not (java / jar).is_file()]
    return missing


@pytest.mark.slow  # compiles and runs the Kotlin tests
def test_kotlin_card_reader_accepts_exported_cards(tmp_path):
    missing = jvm_tools_missing()
    if missing:
        if os.environ.get("EDGE_DEEPLAB_REQUIRE_JVM") == "1":  # CI: a missing compiler is a failure
            pytest.fail(f"EDGE_DEEPLAB_REQUIRE_JVM=1 but {', '.join(missing)} missing (apt-get install kotlin junit4)")
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install kotlin junit4): the app's JVM tests need them")

    # A tiny int8 model with per-channel normalization always; the official models when ../shared is there.
    cards = {"tiny_int8": export_android(int8_model_with_metadata(tmp_path / "tiny.tflite"), make_app(tmp_path / "t"))}
    official = SHARED.joinpath(*OFFICIAL)
    if (official / "deeplabv3_257_mv_gpu_metadata.tflite").is_file():
        for name, kwargs in [("deeplabv3_257_mv_gpu_metadata", {}),
                             ("deeplabv3_mnv2_pascal_quant",
                              {"labels": official / "pascal_voc_segmentation_labels.txt", "background_class": None})]:
            cards[name] = export_android(official / f"{name}.tflite", make_app(tmp_path / name), **kwargs)
    paths = {}
    for name, card in cards.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(card, indent=2))

    run = subprocess.run(["bash", str(JVM_TESTS), *map(str, paths.values())], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "run_jvm_tests: PASSED" in run.stdout

    for name, card in cards.items():
        summary = re.search(rf"^parsed {re.escape(str(paths[name]))}: (.*)$", run.stdout, re.M)
        assert summary, f"the Kotlin test did not report {name}"
        s, i, o = summary.group(1), card["input"], card["output"]
        assert f"input {i['height']}x{i['width']} {i['type']}" in s
        assert f"output {o['kind']} {o['type']} {o['height']}x{o['width']} classes={o['num_classes']}" in s
        assert f"labels={len(card['labels'] or [])}" in s
        assert f"background={card['background_class'] if card['background_class'] is not None else 'none'}" in s
        mean = re.search(r"mean=([^ ]+)", s).group(1)
        assert np.allclose([float(v) for v in mean.split(",")], i["mean"], rtol=0, atol=1e-9)

        lut = re.search(rf"^lut {re.escape(str(paths[name]))}: (.*)$", run.stdout, re.M)
        assert lut, f"the Kotlin test printed no input table for {name}"
        kotlin = np.array([float(v) for v in lut.group(1).split(",")])
        if i["type"] == "float32":
            assert np.allclose(kotlin, expected_lut(card), rtol=0, atol=1e-6)
        else:  # the app must feed exactly the bytes the Python runtime feeds
            assert np.array_equal(kotlin, expected_lut(card))

        boxes = re.search(rf"^letterbox {re.escape(str(paths[name]))}: (.*)$", run.stdout, re.M)
        assert boxes, f"the Kotlin test printed no letterbox for {name}"
        for item in boxes.group(1).split(";"):  # the app places frames where the Python runtime does
            size, box = item.split("=")
            w, h = map(int, size.split("x"))
            p = Placement.fit((h, w), (i["height"], i["width"]))
            assert [int(v) for v in box.split(",")] == [p.top, p.left, p.height, p.width], item
