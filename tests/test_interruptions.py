"""Real processes interrupted at the dangerous step ($EDGE_DEEPLAB_CRASH_AT, see io_utils.crash_point):
kill -9 leaves nothing the next run does not clean up, SIGTERM ends a job as Ctrl-C does, a model and
its report never silently disagree, and a resumed training run keeps every epoch's history."""
import json
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

import tiny_tflite
from edge_deeplab.cli import main
from edge_deeplab.errors import UserError
from edge_deeplab.io_utils import CRASH_ENV



def edge_deeplab(*args, crash=None, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.run([sys.executable, "-m", "edge_deeplab", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def tiny_keras(path):
    """A tiny DeepLab saved as .keras, built in this process (TensorFlow is imported once)."""
    from edge_deeplab.model.deeplab import build_deeplab, save_model

    return save_model(build_deeplab(depth_multiplier=0.35, input_size=33, num_classes=2), path)


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def photos(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite.tanh_logits())
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((24, 32, 3), 60, np.uint8))
    return tmp_path, model


def test_predict_killed_while_writing_leaves_a_leftover_that_the_next_run_removes(photos):
    root, model = photos
    out = root / "out"
    killed = edge_deeplab("predict", "-m", model, root / "a.png", "-o", out, crash="write:a_mask.png")
    assert killed.returncode == -signal.SIGKILL
    assert [name.split(".partial-")[0] for name in hidden(out)] == [".a_mask.png"]
    done = edge_deeplab("predict", "-m", model, root / "a.png", "-o", out)
    assert done.returncode == 0, done.stderr
    assert hidden(out) == [] and sorted(p.name for p in out.iterdir()) == ["a_mask.png", "a_overlay.jpg"]


def test_sigterm_ends_a_batch_as_ctrl_c_does(photos):
    root, model = photos
    out = root / "out"
    stopped = edge_deeplab("predict", "-m", model, root / "a.png", root / "b.png", "-o", out,
                           crash="write:b_overlay.jpg=TERM")
    assert stopped.returncode == 130 and "interrupted" in stopped.stderr and "Traceback" not in stopped.stderr
    assert hidden(out) == []  # the temporary file of the interrupted write is gone
    assert "b_overlay.jpg" not in {p.name for p in out.iterdir()} and (out / "a_overlay.jpg").is_file()


@pytest.mark.slow
def test_convert_killed_between_report_and_model(tmp_path):
    """The report is written first, with the model's SHA-256: killed before the model's rename, the new report
    sits beside the old model, and tflite_report.read_report says they disagree."""
    from edge_deeplab.export.convert import convert
    from edge_deeplab.tflite.report import read_report

    model = tiny_keras(tmp_path / "tiny.keras")
    out = tmp_path / "tiny.tflite"
    out.write_bytes(tiny_tflite.tanh_logits())  # the model of an earlier conversion
    killed = edge_deeplab("convert", model, "-o", out, "--quantize", "fp16", crash="write:tiny.tflite")
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((tmp_path / "tiny.report.json").read_text())["conversion"]["quantize"] == "fp16"
    with pytest.raises(UserError, match="describes another version of tiny.tflite"):
        read_report(out)
    assert [n.split(".partial-")[0] for n in hidden(tmp_path)] == [".tiny.tflite"]
    convert(model, out, quantize="fp16", progress=False)  # the next run, in this process
    report = read_report(out)
    assert report["conversion"]["quantize"] == "fp16" and out.read_bytes() != tiny_tflite.tanh_logits()
    assert hidden(tmp_path) == []


@pytest.mark.slow
def test_training_killed_between_history_and_checkpoint_resumes_with_every_epoch(tmp_path):
    from test_train import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "data")
    tiny_keras(tmp_path / "init.keras")
    args = ["train", "--init", tmp_path / "init.keras", "--data", data, "--format", "folder", "--data-classes", "2",
            "--run-dir", tmp_path / "run", "--epochs", "2", "--batch-size", "2", "--crop-size", "33", "--cache",
            "--no-progress"]
    assert edge_deeplab(*args, crash="train:after-history").returncode == -signal.SIGKILL
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1]
    killed = edge_deeplab(*args, crash="write:model.keras")  # resumes, trains, killed saving the model
    assert killed.returncode == -signal.SIGKILL
    assert [n.split(".partial-")[0] for n in hidden(tmp_path / "run")] == [".model.keras"]
    main([str(a) for a in args])  # the next run, in this process
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and [h["steps"] for h in history] == [2, 4]
    assert hidden(tmp_path / "run") == [] and (tmp_path / "run" / "model.keras").is_file()


@pytest.mark.slow
def test_a_run_stopped_by_bad_data_can_be_rerun_corrected(tmp_path, capsys):
    from test_train import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "data")
    cv2.imwrite(str(data / "masks" / "1.png"), np.full((33, 33), 7, np.uint8))
    tiny_keras(tmp_path / "init.keras")
    args = [str(a) for a in ["train", "--init", tmp_path / "init.keras", "--data", data, "--format", "folder",
                             "--run-dir", tmp_path / "run", "--epochs", "1", "--batch-size", "2", "--crop-size",
                             "33", "--no-progress"]]
    with pytest.raises(SystemExit) as e:
        main(args + ["--data-classes", "8"])
    assert e.value.code == 2 and "1.png: label 7" in capsys.readouterr().err
    cv2.imwrite(str(data / "masks" / "1.png"), np.zeros((33, 33), np.uint8))
    main(args + ["--data-classes", "2"])  # other settings, same run dir: nothing to resume
    assert (tmp_path / "run" / "model.keras").is_file()
