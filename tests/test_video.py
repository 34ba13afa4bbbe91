import json
import sys

import cv2
import pytest

import tiny_tflite
from edge_deeplab.cli import main
from edge_deeplab.errors import UserError
from edge_deeplab.runtime.interpreter import SegmentationModel
from edge_deeplab.runtime.video import display_problem, parse_source, run_video

FRAMES, H, W = 24, 48, 64


def count_frames(path):
    capture = cv2.VideoCapture(str(path))
    n, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        n, size = n + 1, frame.shape
    capture.release()
    return n, size


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A real mp4 file: red / blue halves with a moving stripe."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    for i in range(FRAMES):
        frame = tiny_tflite.red_blue_image(H, W)
        frame[:, 2 * i % W] = 255
        writer.write(frame)
    writer.release()
    assert count_frames(path) == (FRAMES, (H, W, 3))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(tiny_tflite.tanh_logits(16, 16))
    return SegmentationModel(path, num_threads=1)


def test_file_source_processes_every_frame_and_writes_a_playable_video(clip, model, tmp_path):
    out = tmp_path / "out.mp4"
    summary = run_video(model, str(clip), output=out, display=False)
    assert (summary.frames, summary.dropped, summary.stopped_by) == (FRAMES, 0, "end of file")
    assert count_frames(out) == (FRAMES, (H, W, 3))
    assert summary.fps > 0 and summary.latency_ms["p50"] <= summary.latency_ms["p99"]
    assert not list(tmp_path.glob(".out.mp4*"))  # no temporary file left behind


def test_max_frames(clip, model, tmp_path):
    summary = run_video(model, str(clip), output=tmp_path / "five.avi", display=False, max_frames=5)
    assert (summary.frames, summary.stopped_by) == (5, "max frames")
    assert count_frames(tmp_path / "five.avi")[0] == 5


def test_live_source_that_ends_mid_stream_stops_cleanly(clip, model, tmp_path):
    """A live reader keeps only the newest frame; when its source stops, the loop ends with a message."""
    summary = run_video(model, str(clip), output=tmp_path / "live.mp4", display=False, live=True)
    assert summary.stopped_by == "source ended"
    assert "stopped giving frames" in summary.message
    assert 1 <= summary.frames and summary.frames + summary.dropped <= FRAMES
    assert count_frames(tmp_path / "live.mp4")[0] == summary.frames


def test_missing_camera_and_file_are_clear_errors(model, tmp_path):
    with pytest.raises(UserError, match="cannot open camera 57"):
        run_video(model, "57", display=False)
    with pytest.raises(UserError, match="no such video file"):
        run_video(model, str(tmp_path / "none.mp4"), display=False)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    with pytest.raises(UserError, match="cannot open video"):
        run_video(model, str(not_video), display=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection by $DISPLAY is Linux only")
def test_display_without_a_gui_asks_for_no_display(clip, model, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_problem() is not None
    with pytest.raises(UserError, match="--no-display"):
        run_video(model, str(clip), display=True)


def test_parse_source():
    assert parse_source("0") == 0 and parse_source(" 2 ") == 2
    assert parse_source("rtsp://cam/stream") == "rtsp://cam/stream" and parse_source("a.mp4") == "a.mp4"


def test_shared_video_with_the_official_model(shared, tmp_path):
    video = shared("video", "one-by-one-person-detection.mp4")
    model = SegmentationModel(shared("models", "official", "deeplabv3_257_mv_gpu.tflite"), num_threads=2)
    summary = run_video(model, str(video), output=tmp_path / "people.mp4", display=False, max_frames=30)
    assert summary.frames == 30
    assert count_frames(tmp_path / "people.mp4") == (30, (432, 768, 3))


def test_cli_webcam_headless_prints_a_json_summary(clip, model, tmp_path, capsys):
    main(["webcam", "-m", str(model.path), "--threads", "1", "--source", str(clip), "--no-display",
          "--output", str(tmp_path / "o.mp4"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == FRAMES and summary["output"] == str(tmp_path / "o.mp4")
    assert count_frames(tmp_path / "o.mp4")[0] == FRAMES
