"""Latency on this machine: in-process LiteRT timing of the interpreter's invoke only.

All models of one thread count are loaded side by side, warmed up, then timed run by run in turn
(round r starts with model r mod n), so that drift of a shared, noisy machine hits every model alike.
Init time, first-invoke time and peak memory come from a fresh process per model (``probe``), as
the phone's ``benchmark_model`` measures them, so that models loaded earlier do not blur them.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_deeplab.bench.record import BenchResult, latency_summary
from edge_deeplab.choices import HOST_DELEGATES, PHONE_DELEGATES
from edge_deeplab.errors import ModelFileError, OptionError, UserError
from edge_deeplab.runtime.interpreter import make_interpreter
from edge_deeplab.tflite.graph import read_model_file

PHONE_ONLY_DELEGATES = tuple(d for d in PHONE_DELEGATES if d not in HOST_DELEGATES)
PROBE_TIMEOUT_S = 600


def check_host_delegate(delegate: str):
    if delegate in PHONE_ONLY_DELEGATES:
        raise OptionError(f"the {delegate} delegate runs on a phone (--device pixel); on this machine use "
                        f"{' or '.join(HOST_DELEGATES)}, or the path of a delegate library")


def host_label() -> str:
    """'host: <CPU model>, <n> cores' (the device column of host results)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"host: {cpu}, {os.cpu_count()} cores"


def runner_label() -> str:
    try:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except Exception:  # another runtime (tflite-runtime / tf.lite) stands in
        return "tflite interpreter"


def timing_input(interpreter) -> np.ndarray:
    """A fixed pseudo-random input of the model's shape and type (latency does not depend on content)."""
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    shape, dtype = detail["shape"], np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.uniform(-1, 1, size=shape).astype(dtype)


def describe_input(interpreter) -> str:
    detail = interpreter.get_input_details()[0]
    shape = detail["shape"]
    size = "x".join(str(int(s)) for s in shape[1:3]) if len(shape) == 4 else str(shape.tolist())
    return f"{size} {np.dtype(detail['dtype']).name}"


def _memory_mb(field: str) -> float | None:
    """A VmRSS / VmHWM figure of this process from /proc (Linux), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS mark (VmHWM) from the current RSS (Linux 4.0+), so imports do not count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _ru_maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def probe(path, threads: int, delegate: str) -> dict:
    """init_ms, first_ms and peak_memory_mb of one model, measured in a fresh Python process."""
    cmd = [sys.executable, "-m", "edge_deeplab.bench.host", str(path), str(threads), str(delegate)]
    package_root = str(Path(__file__).resolve().parents[2])  # importable even when not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise ModelFileError(f"{path}: loading and running it once took over {PROBE_TIMEOUT_S} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFileError(f"{path}: cannot load and run the model ({reason.removeprefix('error: ')})")
    return json.loads(lines[-1])


def _probe_main(path, threads, delegate):
    """Body of ``probe``: what one model costs a process that loads it and runs it once."""
    content = read_model_file(path)
    # the model's own cost: peak resident memory above what the process held before loading it
    before_rss, before_max = _memory_mb("VmRSS"), _ru_maxrss_mb()
    has_hwm = before_rss is not None and _reset_peak_rss()
    start = time.perf_counter()
    interpreter = make_interpreter(content, int(threads), delegate, source=path)
    loaded = time.perf_counter()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], timing_input(interpreter))
    invoked = time.perf_counter()
    interpreter.invoke()
    done = time.perf_counter()
    print(json.dumps({"init_ms": (loaded - start) * 1e3, "first_ms": (done - invoked) * 1e3,
                      "peak_memory_mb": (_memory_mb("VmHWM") - before_rss) if has_hwm else
                      (_ru_maxrss_mb() - before_max)}))


def bench_host(model_paths, threads=(2,), delegate="xnnpack", runs=30, warmup=5, progress=True,
               memory=True) -> list[BenchResult]:
    """Time the invoke of every model, interleaved run by run, for each thread count.

    Returns one BenchResult per (thread count, model), in that order. ``memory=False`` skips the
    fresh-process probe (init time then comes from the in-process load, first_ms and peak memory stay
    empty).
    """
    check_host_delegate(delegate)
    if runs < 1 or warmup < 0:
        raise OptionError(f"runs must be >= 1 and warm-up runs >= 0 (got {runs} and {warmup})")
    paths = [Path(p) for p in model_paths]
    if not paths:
        raise OptionError("no models to benchmark")
    contents = [read_model_file(p) for p in paths]
    device, runner = host_label(), runner_label()
    results = []
    for n in threads:
        loaded = []
        for path, content in zip(paths, contents):
            start = time.perf_counter()
            interpreter = make_interpreter(content, int(n), delegate, source=path)
            init_ms = (time.perf_counter() - start) * 1e3
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], timing_input(interpreter))
            loaded.append((interpreter, init_ms))
        for _ in range(warmup):
            for interpreter, _ in loaded:
                interpreter.invoke()
        times = [[] for _ in loaded]
        rounds = range(runs)
        if progress:
            from tqdm import tqdm

            rounds = tqdm(rounds, desc=f"{len(paths)} model(s), {n} thread(s)", unit="round", file=sys.stderr,
                          leave=False)
        for r in rounds:
            for k in range(len(loaded)):
                i = (r + k) % len(loaded)
                interpreter = loaded[i][0]
                start = time.perf_counter()
                interpreter.invoke()
                times[i].append((time.perf_counter() - start) * 1e3)
        for path, content, (interpreter, init_ms), model_times in zip(paths, contents, loaded, times):
            extra = probe(path, n, delegate) if memory else {"init_ms": init_ms}
            results.append(BenchResult(
                model=path.stem, path=str(path), device=device, delegate=delegate, threads=int(n), runs=runs,
                warmup=warmup, size_mb=len(content) / 1e6, input=describe_input(interpreter), runner=runner,
                **latency_summary(model_times), **extra))
        del loaded, interpreter  # free the interpreters before the next thread count loads its own
    return results


if __name__ == "__main__":  # the fresh process of probe(): python -m edge_deeplab.bench.host PATH THREADS DELEGATE
    try:
        _probe_main(*sys.argv[1:4])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
