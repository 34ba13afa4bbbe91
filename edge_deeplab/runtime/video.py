"""Real-time segmentation of a camera, a video file or a stream, with the mask overlaid.

Cameras and streams are read by a capture thread that keeps only the newest frame, so inference
never works on a stale one (frames that arrive meanwhile are dropped and counted). A video file is
processed frame by frame, in order, none skipped. The loop ends on q / Esc in the window, Ctrl-C,
the end of a file, or when a camera or stream stops giving frames (reported, not an error).

Showing a window needs an OpenCV build with a GUI and a display; when either is missing the loop
refuses to start and says to use ``display=False`` (CLI: ``--no-display``), which runs headless and
can still write the result with ``output``.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_deeplab.errors import DataError, OptionError
from edge_deeplab.io_utils import atomic_path
from edge_deeplab.runtime.visualize import (
    class_names,
    draw_legend,
    legend_entries,
    overlay,
    palette_for,
)

WINDOW = "edge-deeplab"
STALL_SECONDS = 10.0  # a live source that gives no frame for this long is treated as gone
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def parse_source(source):
    """A camera index ('0' -> 0) or a file / URL string."""
    text = str(source).strip()
    return int(text) if text.isdigit() else text


def is_live(source) -> bool:
    """Cameras and network streams are live (keep only the newest frame); files are read in full."""
    return isinstance(source, int) or "://" in source


def describe(source) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


def open_capture(source) -> cv2.VideoCapture:
    """An opened capture for a camera index, file or URL; UserError with the reason when it cannot open."""
    if not isinstance(source, int) and "://" not in source and not Path(source).is_file():
        raise DataError(f"{source}: no such video file")
    with _quiet_opencv():  # OpenCV logs several warnings for a missing camera; we say it in one line
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        if isinstance(source, int):
            raise DataError(f"cannot open camera {source} (no such device, no permission, or in use by "
                            "another program); pass --source with another index, a video file or a URL")
        raise DataError(f"{source}: cannot open video (not a video, unsupported codec, or unreachable stream)")
    return capture


@contextlib.contextmanager
def _quiet_opencv():
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def display_problem() -> str | None:
    """Why a window cannot be shown here, or None when it can."""
    gui = cv2.getBuildInformation().split("GUI:", 1)[-1].split("\n", 1)[0].strip()
    if gui.upper() in ("", "NONE"):
        return "this OpenCV build has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux"):
        x11, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
        if not (x11 or wayland):
            return "no display ($DISPLAY is not set)"
        # OpenCV's Qt build aborts the whole process when the display named is not there: ask first
        if x11 and not _x11_reachable(x11):
            return f"no X server answers at DISPLAY={x11}"
        if not x11 and not _unix_socket_answers(Path(os.environ.get("XDG_RUNTIME_DIR", "/run/user/0")) / wayland):
            return f"no Wayland compositor answers at WAYLAND_DISPLAY={wayland}"
    return None


def _x11_reachable(display: str) -> bool:
    """Whether an X server accepts connections at ``display`` ([host]:N[.screen])."""
    host, _, rest = display.rpartition(":")
    try:
        number = int(rest.split(".")[0])
    except ValueError:
        return False
    if host in ("", "unix") or host.startswith("/"):
        path = host if host.startswith("/") else f"/tmp/.X11-unix/X{number}"
        return _unix_socket_answers(path) or _unix_socket_answers(path, abstract=True)
    try:
        socket.create_connection((host, 6000 + number), timeout=1.0).close()
        return True
    except OSError:
        return False


def _unix_socket_answers(path, abstract=False) -> bool:
    """Whether something accepts connections on the Unix socket ``path`` (Linux abstract name: ``abstract``)."""
    path = "\0" + str(path) if abstract else str(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
            return True
        except OSError:
            return False


class FileFrames:
    """Every frame of a video file, in order."""

    def __init__(self, capture):
        self.capture, self.dropped, self.ended = capture, 0, None

    def read(self):
        ok, frame = self.capture.read()
        return frame if ok else None

    def close(self):
        self.capture.release()


class LatestFrames:
    """A capture thread that keeps only the newest frame of a camera or stream."""

    def __init__(self, capture, stall_seconds=STALL_SECONDS):
        self.capture, self.stall_seconds = capture, stall_seconds
        self.dropped = 0  # frames captured but never processed
        self.ended = None  # why the source stopped, when it did
        self._frame, self._count, self._taken, self._finished = None, 0, 0, False
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self._thread.start()

    def _capture_loop(self):
        ok = True
        while ok and not self._stop.is_set():
            ok, frame = self.capture.read()
            with self._changed:
                if ok:
                    self._frame, self._count = frame, self._count + 1
                else:
                    self._finished = True
                self._changed.notify_all()
        self.capture.release()  # here, never while a read is in progress in this thread

    def read(self):
        """The newest frame not yet returned; None once the source has stopped."""
        deadline = time.monotonic() + self.stall_seconds
        with self._changed:
            while self._count == self._taken and not self._finished:
                if time.monotonic() > deadline:
                    self.ended = f"no frame for {self.stall_seconds:.0f} s"
                    return None
                self._changed.wait(0.2)  # short waits keep Ctrl-C responsive
            if self._count == self._taken:
                self.ended = "the source stopped giving frames (camera disconnected or stream closed)"
                return None
            self.dropped += self._count - self._taken - 1
            self._taken = self._count
            return self._frame

    def close(self):
        self._stop.set()
        # a camera read that blocks may outlast the wait; the daemon thread then ends on its own
        self._thread.join(timeout=2.0)


@dataclass
class VideoSummary:
    source: str
    frames: int  # frames segmented
    dropped: int  # live sources: frames that arrived while the previous one was being segmented
    seconds: float
    fps: float
    latency_ms: dict  # segmentation (pre + invoke + post) per frame: p50, p90, p99, mean
    invoke_ms: dict
    output: str | None
    stopped_by: str  # 'end of file', 'max frames', 'user', 'interrupted', 'source ended'
    message: str | None = None  # why a live source ended
    threads: int = 0
    model: str = ""

    def to_dict(self):
        return asdict(self)

    def line(self):
        lat = self.latency_ms
        return (f"{self.frames} frames in {self.seconds:.1f} s: {self.fps:.1f} FPS; segmentation latency "
                f"p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms"
                + (f"; {self.dropped} frames dropped" if self.dropped else "")
                + (f"; wrote {self.output}" if self.output else ""))


def _percentiles(values):
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "mean": round(float(np.mean(values)), 3)}


def draw_stats(frame, fps, latency_ms):
    text = f"{fps:5.1f} FPS  {latency_ms:5.1f} ms"
    scale = max(0.5, frame.shape[0] / 720)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = frame.shape[1] - w - 12, 8
    frame[y:y + h + base + 8, x - 4:x + w + 4] //= 3  # darken behind the text
    cv2.putText(frame, text, (x, y + h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _writer(path, fps, size):
    fourcc = FOURCC.get(Path(path).suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise DataError(f"{path}: cannot write video ({fourcc} at {size[0]}x{size[1]})")
    return writer


def run_video(model, source=0, output=None, display=True, max_frames=None, alpha=0.5, legend=True,
              stats=True, progress=False, live=None) -> VideoSummary:
    """Segment a camera / file / stream frame by frame; show it, write it to ``output``, or both.

    live: force the newest-frame-only reading (default: cameras and URLs are live, files are not).
    """
    source = parse_source(source)
    if display and (problem := display_problem()):
        raise OptionError(f"cannot show video: {problem}; run with --no-display (and --output OUT.mp4 to keep "
                          "the result)")
    capture = open_capture(source)
    live = is_live(source) if live is None else live
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
    frames = LatestFrames(capture) if live else FileFrames(capture)
    painter = _Painter(model, alpha, legend, stats)
    loop = _Loop(max_frames)

    from tqdm import tqdm

    bar = tqdm(total=total or None, desc="video", unit="frame", file=sys.stderr, disable=not progress)
    with contextlib.ExitStack() as stack:
        stack.callback(frames.close)
        stack.callback(bar.close)
        if display:
            stack.callback(cv2.destroyAllWindows)
        sink = _VideoFile(stack, output, source_fps if 1 <= source_fps <= 240 else 30.0)
        try:
            loop.run(model, frames, painter, sink, bar, display)
        except KeyboardInterrupt:
            loop.stopped_by = "interrupted"
    if not loop.latencies:
        raise DataError(f"{describe(source)}: no frame could be read"
                        + (f" ({frames.ended})" if frames.ended else ""))
    return loop.summary(describe(source), frames, output, model)


class _Painter:
    """A segmented frame as shown: the overlay, the class legend, the FPS / latency line."""

    def __init__(self, model, alpha, legend, stats):
        self.names = class_names(model.info.labels, model.info.num_classes)
        self.palette = palette_for(self.names)
        self.alpha, self.legend, self.stats = alpha, legend, stats

    def draw(self, frame, result, fps):
        shown = overlay(frame, result.mask, self.alpha, self.palette)
        if self.legend:
            draw_legend(shown, legend_entries(result.mask, self.names, min_share=0.01,
                                              background=self.palette.background), palette=self.palette)
        if self.stats:
            draw_stats(shown, fps, result.latency_ms)
        return shown


class _VideoFile:
    """The segmented video, opened (atomically) with the first frame's size; nothing when no output."""

    def __init__(self, stack: contextlib.ExitStack, output, fps):
        self.stack, self.output, self.fps, self.writer = stack, output, fps, None

    def write(self, shown):
        if not self.output:
            return
        if self.writer is None:
            size = (shown.shape[1], shown.shape[0])
            self.writer = _writer(self.stack.enter_context(atomic_path(self.output)), self.fps, size)
            self.stack.callback(self.writer.release)
        self.writer.write(shown)


def _window_closed(shown) -> bool:
    """Show a frame; True when the user quit (q, Esc, or the window closed)."""
    cv2.imshow(WINDOW, shown)
    key = cv2.waitKey(1) & 0xFF
    return key in (ord("q"), 27) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1


class _Loop:
    """Read, segment, draw, write, show, until the source ends, max_frames, or the user stops it."""

    def __init__(self, max_frames):
        self.max_frames, self.latencies, self.invokes = max_frames, [], []
        self.stopped_by, self.fps_shown, self.start = "end of file", 0.0, time.perf_counter()
        self.seconds = 0.0

    def run(self, model, frames, painter, sink, bar, display):
        self.start = last = time.perf_counter()
        try:
            while self.max_frames is None or len(self.latencies) < self.max_frames:
                frame = frames.read()
                if frame is None:
                    if frames.ended:
                        self.stopped_by = "source ended"
                    return
                result = model.segment(frame)
                self.latencies.append(result.latency_ms)
                self.invokes.append(result.invoke_ms)
                now = time.perf_counter()
                rate = 1.0 / max(1e-6, now - last)  # frames per second of the whole loop, smoothed
                self.fps_shown = rate if self.fps_shown == 0 else 0.9 * self.fps_shown + 0.1 * rate
                last = now
                shown = painter.draw(frame, result, self.fps_shown)
                sink.write(shown)
                bar.update()
                if display and _window_closed(shown):
                    self.stopped_by = "user"
                    return
            self.stopped_by = "max frames"
        finally:
            self.seconds = time.perf_counter() - self.start

    def summary(self, source_name, frames, output, model) -> VideoSummary:
        n, seconds = len(self.latencies), self.seconds
        return VideoSummary(
            source=source_name, frames=n, dropped=frames.dropped, seconds=round(seconds, 3),
            fps=round(n / seconds, 2) if seconds > 0 else 0.0,
            latency_ms=_percentiles(self.latencies), invoke_ms=_percentiles(self.invokes),
            output=str(output) if output else None, stopped_by=self.stopped_by, message=frames.ended,
            threads=model.num_threads, model=model.info.name)
