"""Latency on an Android phone over adb, with TFLite's own ``benchmark_model`` binary.

The model and the binary are pushed to /data/local/tmp, ``benchmark_model`` runs there with the chosen
delegate and threads, and its output is parsed in every format its builds print: with or without the
``INFO: `` prefix (older builds log to stderr without it), logcat-style lines, ``count=1 curr=X`` and
``count=N curr=X(all same)`` when every run took the same time, averages in scientific notation
(``1.23457e+06``), the old ``Average inference timings in us: Warmup: .., Init: .., Inference: ..``
(or ``no stats: ..``) summary, and the memory lines.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from edge_deeplab.bench.record import BenchResult
from edge_deeplab.errors import OptionError, UserError

BINARY_ENV = "EDGE_DEEPLAB_BENCHMARK_MODEL"  # path of the benchmark_model binary built for the phone
ADB_ENV = "ADB"  # adb to use instead of the one on PATH
REMOTE_DIR = "/data/local/tmp"
REMOTE_BINARY = f"{REMOTE_DIR}/benchmark_model"
REMOTE_MODELS = f"{REMOTE_DIR}/edge_deeplab"
DELEGATE_FLAGS = {
    "xnnpack": ["--use_xnnpack=true"],
    "cpu": ["--use_xnnpack=false"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}
ANY_PHONE = "pixel"  # --device pixel: the one attached phone, whatever its make
SHELL_TIMEOUT_S = 900

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KEY_VALUE = re.compile(rf"(\w+)=({_NUMBER})")
_LOGCAT = re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+.*?:\s")  # '07-08 15:33:58.992 I/tflite ( 5395): '
_LEVEL = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG):\s*")
_INIT_SESSION = re.compile(rf"Initialized session in ({_NUMBER})\s*ms")
_TIMINGS = re.compile(r"(?:Average )?[Ii]nference timings in us:\s*(.*)")
_TIMING_ITEM = re.compile(rf"([A-Za-z][A-Za-z ()]*?):\s*({_NUMBER})")
_PEAK = re.compile(rf"peak memory footprint \(MB\)[^:]*:\s*({_NUMBER})")
_FOOTPRINT = re.compile(rf"Memory footprint delta[^:]*:\s*init=({_NUMBER})\s+overall=({_NUMBER})")


# ------------------------------------------------------------------------------------------- parsing
def _message(line: str) -> str:
    """The text of a log line without its logcat prefix and level tag."""
    line = _LOGCAT.sub("", line.strip())
    return _LEVEL.sub("", line)


def _stat_line(text: str) -> dict | None:
    """``count=N first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]`` as numbers (us).

    The oldest builds print ``curr=.. count=..``. A line with only count and curr means every run took
    ``curr`` (``(all same)``, or a single run).
    """
    if not (text.startswith("count=") or text.startswith("curr=")):
        return None
    values = {k: float(v) for k, v in _KEY_VALUE.findall(text)}
    if "count" not in values or "curr" not in values:
        return None
    if "avg" not in values:  # all runs equal
        curr = values["curr"]
        values.update(first=values.get("first", curr), min=curr, max=curr, avg=curr, std=0.0, median=curr)
    return values


def parse_benchmark_output(text: str) -> dict:
    """Timings (ms) and memory (MB) from ``benchmark_model``'s output (stdout and stderr together).

    Returns the keys runs, median_ms (None when the build prints no percentiles), min_ms, max_ms,
    mean_ms, std_ms, init_ms, first_ms, warmup_mean_ms, peak_memory_mb, each None when absent.
    Raises ValueError when the output holds no inference timing at all.
    """
    stats, timings, init_session, peak, overall = [], {}, None, None, None
    for raw in text.splitlines():
        line = _message(raw)
        stat = _stat_line(line)
        if stat:
            stats.append(stat)
            continue
        if m := _TIMINGS.search(line):
            timings = {k.strip().lower(): float(v) for k, v in _TIMING_ITEM.findall(m.group(1))}
        elif m := _INIT_SESSION.search(line):
            init_session = float(m.group(1))
        elif m := _PEAK.search(line):
            peak = float(m.group(1))
        elif m := _FOOTPRINT.search(line):
            overall = float(m.group(2))

    us = lambda v: None if v is None else v / 1e3  # noqa: E731 - benchmark_model reports microseconds
    out = dict.fromkeys(["runs", "median_ms", "min_ms", "max_ms", "mean_ms", "std_ms", "init_ms", "first_ms",
                         "warmup_mean_ms", "peak_memory_mb"])
    if stats:
        timed = stats[-1]  # warm-up stats come first, the timed runs last
        out.update(runs=int(timed["count"]), median_ms=us(timed.get("median")), min_ms=us(timed["min"]),
                   max_ms=us(timed["max"]), mean_ms=us(timed["avg"]), std_ms=us(timed["std"]))
        if len(stats) > 1:
            out.update(warmup_mean_ms=us(stats[-2]["avg"]), first_ms=us(stats[-2]["first"]))
    # 'Inference (avg)' in current builds; 'Inference' or 'no stats' in the old summary line
    inference = next((timings[k] for k in ("inference (avg)", "inference", "no stats") if k in timings), None)
    if out["mean_ms"] is None:
        out["mean_ms"] = us(inference)
    if out["mean_ms"] is None:
        raise ValueError("no inference timings in the output")
    out["init_ms"] = us(timings["init"]) if "init" in timings else init_session
    if "first inference" in timings:
        out["first_ms"] = us(timings["first inference"])
    warmup = timings.get("warmup (avg)", timings.get("warmup"))
    if warmup is not None:
        out["warmup_mean_ms"] = us(warmup)
    out["peak_memory_mb"] = peak if peak is not None else overall
    return out


def _error_lines(text: str, limit=3) -> str:
    lines = [_message(line) for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|fail|not found|denied|cannot|unable", line, re.I)]
    return " | ".join((errors or lines)[-limit:]) or "no output"


# ----------------------------------------------------------------------------------------------- adb
def find_adb() -> str:
    adb = os.environ.get(ADB_ENV) or shutil.which("adb")
    if not adb or not (shutil.which(adb) or Path(adb).is_file()):
        raise UserError("adb not found: install Android platform-tools and put adb on PATH "
                        f"(or set {ADB_ENV}=/path/to/adb)")
    return adb


def find_benchmark_binary(path=None) -> Path:
    """The benchmark_model binary to push: ``path``, else $EDGE_DEEPLAB_BENCHMARK_MODEL."""
    given = path or os.environ.get(BINARY_ENV)
    if not given:
        raise OptionError(f"no benchmark_model binary: pass --benchmark-binary PATH or set {BINARY_ENV} (the "
                        "Android build of TFLite's benchmark_model, e.g. android_aarch64_benchmark_model from "
                        "the TensorFlow Lite performance tools)")
    binary = Path(given)
    if not binary.is_file():
        raise UserError(f"{binary}: benchmark_model binary not found")
    return binary


class Adb:
    """adb commands for one device (``serial``), or for the server when serial is None."""

    def __init__(self, adb: str, serial: str | None = None):
        self.adb, self.serial = adb, serial

    def run(self, *args, timeout=120) -> subprocess.CompletedProcess:
        cmd = [self.adb] + (["-s", self.serial] if self.serial else []) + [str(a) for a in args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"adb {' '.join(map(str, args))[:80]}: no answer within {timeout} s") from None
        except OSError as e:
            raise UserError(f"{self.adb}: cannot run adb ({e.strerror or e})") from None

    def check(self, *args, timeout=120) -> str:
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise UserError(f"adb {' '.join(map(str, args))[:80]} failed: {_error_lines(done.stdout + done.stderr)}")
        return done.stdout

    def shell(self, command: str, timeout=120) -> subprocess.CompletedProcess:
        return self.run("shell", command, timeout=timeout)

    def getprop(self, name: str) -> str:
        return self.shell(f"getprop {name}").stdout.strip()


def list_devices(adb: str) -> list[tuple[str, str]]:
    """(serial, state) of every device adb sees; state is 'device' when it is ready."""
    out = Adb(adb).check("devices")
    devices = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            devices.append((parts[0], parts[1]))
    return devices


def pick_device(adb: str, device: str = ANY_PHONE) -> str:
    """The serial to use: the one attached phone for ``pixel``, else ``device`` itself (a serial)."""
    devices = list_devices(adb)
    ready = [serial for serial, state in devices if state == "device"]
    if device != ANY_PHONE:
        states = dict(devices)
        if device not in states:
            seen = ", ".join(serial for serial, _ in devices) or "none"
            raise UserError(f"device {device!r} is not attached (adb devices lists: {seen})")
        if states[device] != "device":
            raise UserError(f"device {device} is {states[device]} (unlock it and accept USB debugging)")
        return device
    if not ready:
        waiting = [f"{serial} ({state})" for serial, state in devices]
        hint = f"; not ready: {', '.join(waiting)}" if waiting else ""
        raise OptionError(f"no Android device attached (adb devices lists none ready{hint})")
    if len(ready) > 1:
        raise OptionError(f"{len(ready)} devices attached ({', '.join(ready)}): pass one serial as --device")
    return ready[0]


def device_info(device: Adb) -> dict:
    """The phone's make, model, SoC, Android version and CPU ABI (getprop)."""
    prop = device.getprop
    soc = " ".join(p for p in (prop("ro.soc.manufacturer"), prop("ro.soc.model")) if p)  # Android 12+
    return {
        "serial": device.serial,
        "manufacturer": prop("ro.product.manufacturer"),
        "model": prop("ro.product.model"),
        "soc": soc or prop("ro.board.platform") or prop("ro.hardware"),
        "android": prop("ro.build.version.release"),
        "sdk": prop("ro.build.version.sdk"),
        "abi": prop("ro.product.cpu.abi"),
    }


def benchmark_command(remote_model: str, threads: int, delegate: str, runs: int, warmup: int,
                      extra_args=()) -> str:
    flags = [f"--graph={remote_model}", f"--num_threads={threads}", f"--num_runs={runs}",
             f"--warmup_runs={warmup}", *DELEGATE_FLAGS[delegate], *extra_args]
    return " ".join(shlex.quote(a) for a in [REMOTE_BINARY, *flags])


def bench_android(model_paths, device=ANY_PHONE, threads=(4,), delegate="xnnpack", runs=50, warmup=5,
                  binary=None, extra_args=(), progress=None) -> list[BenchResult]:
    """Run every model with ``benchmark_model`` on the phone, thread count by thread count.

    benchmark_model times one model per run, so the models run one after another (one
    ``benchmark_model`` run each, with its own warm-up) within each thread count. ``extra_args`` go to
    benchmark_model as they are (e.g. ``--gpu_precision_loss_allowed=false``).
    """
    if delegate not in DELEGATE_FLAGS:
        raise OptionError(f"delegate on Android must be one of {', '.join(DELEGATE_FLAGS)}, got {delegate!r}")
    paths = [Path(p) for p in model_paths]
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: model file not found")
    binary = find_benchmark_binary(binary)
    adb = find_adb()
    phone = Adb(adb, pick_device(adb, device))
    info = device_info(phone)
    name = " ".join(p for p in (info["manufacturer"], info["model"]) if p) or phone.serial
    device_label = f"{name} (Android {info['android']})" if info["android"] else name

    phone.check("push", binary, REMOTE_BINARY, timeout=300)
    phone.check("shell", f"chmod 755 {REMOTE_BINARY} && mkdir -p {REMOTE_MODELS}")
    remote = {}
    for p in paths:
        remote[p] = f"{REMOTE_MODELS}/{p.name}"
        phone.check("push", p, remote[p], timeout=600)

    results = []
    for n in threads:
        for p in paths:
            if progress:
                progress(f"{p.name}: {delegate}, {n} threads on {device_label}")
            command = benchmark_command(remote[p], n, delegate, runs, warmup, extra_args)
            done = phone.shell(command, timeout=SHELL_TIMEOUT_S)
            output = done.stdout + "\n" + done.stderr
            try:
                parsed = parse_benchmark_output(output)
            except ValueError:
                raise UserError(f"{p.name}: benchmark_model on {phone.serial} gave no timings "
                                f"({_error_lines(output)})") from None
            results.append(BenchResult(
                model=p.stem, path=str(p), device=device_label, soc=info["soc"], delegate=delegate, threads=n,
                runs=parsed["runs"] or runs, warmup=warmup, median_ms=parsed["median_ms"],
                min_ms=parsed["min_ms"], max_ms=parsed["max_ms"], mean_ms=parsed["mean_ms"],
                std_ms=parsed["std_ms"], init_ms=parsed["init_ms"], first_ms=parsed["first_ms"],
                peak_memory_mb=parsed["peak_memory_mb"], size_mb=p.stat().st_size / 1e6,
                runner=f"benchmark_model over adb ({info['abi'] or 'android'})"))
    return results
