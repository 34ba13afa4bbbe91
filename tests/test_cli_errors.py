"""Bad input through the command line: one line `error: <file>: <what is wrong>`, exit status 2, no
traceback, and no output left behind (issue 14's cases that need no model training)."""
import socket

import cv2
import numpy as np
import pytest

import tiny_tflite
from edge_deeplab.cli import main


def run(args, capsys):
    """Exit status and stderr of `edge-deeplab ARGS`."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err


def one_error(args, capsys, message):
    code, err = run(args, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite.tanh_logits())
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.full((24, 32, 3), 90, np.uint8))
    (tmp_path / "afile").write_text("a file, not a folder")
    return tmp_path, model, image


def test_outputs_under_a_file_fail_before_the_work(files, capsys):
    root, model, image = files
    blocked = root / "afile"
    cases = [
        ["build", "--backbone", "mobilenetv2", "-d", "0.35", "--input-size", "33", "-o", blocked / "b.keras"],
        ["import", root / "official.tflite", "-o", blocked / "x.keras"],
        ["convert", root / "m.keras", "-o", blocked / "x.tflite"],
        ["train", "--data", root, "--format", "folder", "--run-dir", blocked / "run"],
        ["predict", "-m", model, image, "-o", blocked / "out"],
        ["webcam", "-m", model, "--source", root / "clip.mp4", "--no-display", "--output", blocked / "v.mp4"],
        ["bench", model, "--json-file", blocked / "r.json"],
        ["bench", model, "--report", blocked / "r"],
    ]
    for args in cases:
        line = one_error(args, capsys, "cannot write (a parent path is a file, not a folder)")
        assert line.startswith(f"error: {blocked}"), line
    assert sorted(p.name for p in root.iterdir()) == ["afile", "m.tflite", "photo.png"]


def test_export_android_into_unwritable_assets(files, capsys):
    root, model, _ = files
    app = root / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    (app / "app" / "src" / "main" / "AndroidManifest.xml").write_text("<manifest/>")
    (app / "app" / "src" / "main" / "assets").write_text("not a folder")
    one_error(["export-android", model, "--app", app], capsys, "assets: cannot write")


def test_directories_and_empty_files_as_models(files, capsys):
    root, model, image = files
    folder = root / "models"
    folder.mkdir()
    for args in (["predict", "-m", folder, image, "-o", root / "out"], ["eval", folder, "--data", root, "--format",
                 "folder", "--data-classes", "3"], ["convert", folder, "-o", root / "x.tflite"], ["bench", folder],
                 ["export-android", folder, "--app", root]):
        one_error(args, capsys, "models: is a folder, not a model file")
    (root / "empty.tflite").write_bytes(b"")
    one_error(["predict", "-m", root / "empty.tflite", image, "-o", root / "out"], capsys,
              "empty.tflite: empty file, not a TFLite model")


def test_bench_measures_the_good_models_and_names_the_bad_one(files, capsys):
    root, model, _ = files
    bad = root / "bad.tflite"
    bad.write_bytes(model.read_bytes()[:200])
    code, err = run(["bench", model, bad, "--runs", "2", "--warmup", "0", "--no-memory", "--json-file", root / "r.json"],
                    capsys)
    assert code == 2 and "Traceback" not in err
    assert "error: " + str(bad) in err and "1 of 2 models could not be measured" in err
    import json

    assert [r["model"] for r in json.loads((root / "r.json").read_text())["results"]] == ["m"]


def test_class_maps_that_cannot_apply(files, capsys):
    root, model, image = files
    from test_datasets import make_camvid

    make_camvid(root / "camvid", splits=(("val", 1),))
    data = ["--data", root / "camvid", "--format", "camvid"]
    one_error(["eval", model, *data, "--default-class", "-3"], capsys, "default class -3 is not a class of the 11")
    one_error(["eval", model, *data, "--class-map", "5:1"], capsys,
              "the model has 3 classes (0..2), so model class 5 maps nothing")
    one_error(["bench", model, *data, "--default-class", "-3", "--runs", "1", "--no-memory"], capsys,
              "default class -3 is not a class")


def test_truncated_and_tiny_images_in_a_batch(files, capsys):
    root, model, image = files
    ok, jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    (root / "cut.jpg").write_bytes(jpeg.tobytes()[:400])
    cv2.imwrite(str(root / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    code, err = run(["predict", "-m", model, root / "cut.jpg", root / "dot.png", image, "-o", root / "out"], capsys)
    assert code == 2 and "cut.jpg: truncated JPEG" in err and "1 of 3 inputs could not be segmented" in err
    outputs = sorted(p.name for p in (root / "out").iterdir())
    assert outputs == ["dot_mask.png", "dot_overlay.jpg", "photo_mask.png", "photo_overlay.jpg"]  # nothing of cut
    assert cv2.imread(str(root / "out" / "dot_mask.png"), cv2.IMREAD_UNCHANGED).shape[:2] == (1, 1)


def test_display_named_but_not_there(files, capsys, monkeypatch):
    """OpenCV's Qt build aborts the process when $DISPLAY names no server: the display is probed first."""
    root, model, _ = files
    monkeypatch.setenv("DISPLAY", ":93")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    clip = root / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    for _ in range(3):
        writer.write(np.full((24, 32, 3), 120, np.uint8))
    writer.release()
    one_error(["webcam", "-m", model, "--source", clip, "--output", root / "out" / "seg.mp4"], capsys,
              "no X server answers at DISPLAY=:93")
    assert not (root / "out").exists() or not list((root / "out").iterdir())


def test_x11_probe_answers_for_a_listening_server():
    from edge_deeplab.runtime.video import _x11_reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _x11_reachable(f"127.0.0.1:{port - 6000}")
    assert not _x11_reachable(f"127.0.0.1:{port - 6000}")  # closed now
    assert not _x11_reachable(":93") and not _x11_reachable("nonsense")


def test_errors_about_a_model_name_its_file(tmp_path, capsys):
    keras = pytest.importorskip("tf_keras")
    inputs = keras.Input((33, 33, 3), batch_size=1)
    path = tmp_path / "plain.keras"
    keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(inputs)).save(path)
    one_error(["convert", path, "-o", tmp_path / "x.tflite"], capsys, f"{path}: no 'logits' layer")
    one_error(["eval", path, "--data", tmp_path, "--format", "folder", "--data-classes", "2"], capsys,
              "images folder not found")  # the model is a segmentation model: the data is what is missing
    classifier = tmp_path / "classifier.keras"
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]).save(classifier)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((40, 40), np.uint8))
    one_error(["eval", classifier, "--data", tmp_path, "--format", "folder", "--data-classes", "2", "--class-map",
               "1:1", "--default-class", "0"], capsys, "classifier.keras: not a segmentation model")


def test_library_callers_can_tell_the_kinds_of_error_apart(files):
    """One base (the CLI's one line, exit 2) and a kind per cause, so code can match on the type."""
    from edge_deeplab.data.datasets import open_dataset
    from edge_deeplab.errors import DataError, ModelFileError, OptionError, UserError
    from edge_deeplab.runtime.interpreter import SegmentationModel

    root, _, _ = files
    (root / "bad.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFileError, match="bad.tflite: not a TFLite model"):
        SegmentationModel(root / "bad.tflite")
    with pytest.raises(DataError, match="dataset folder not found"):
        open_dataset(root / "nowhere", "pennfudan")
    with pytest.raises(OptionError, match="resize must be one of letterbox, stretch"):
        SegmentationModel(root / "m.tflite", resize="squash")
    assert all(issubclass(kind, UserError) for kind in (DataError, ModelFileError, OptionError))


def test_convert_says_where_the_head_went(files, capsys):
    """`--output labels` chose the head before -o/--output became the path the verb writes."""
    root, _, _ = files
    one_error(["convert", root / "m.keras", "--output", "labels"], capsys, "choose the head with --head labels")
    one_error(["convert", root / "m.keras", "-o", root / "a.tflite", "--output", root / "b.tflite"], capsys,
              "-o/--output is the one .tflite to write, given 2 times")
