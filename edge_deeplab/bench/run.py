"""The bench stage as one call: time models on a target, add mIOU where data is given, write reports.

>>> from edge_deeplab.bench.run import benchmark, write_reports
>>> results = benchmark(["a.tflite", "b.tflite"], threads=(1, 2), data="PennFudanPed", data_format="pennfudan")
>>> write_reports(results, "benchmarks/study")  # study.json, .csv, .md and .png
"""
from __future__ import annotations

import dataclasses
import datetime
import platform
import sys
from pathlib import Path

from edge_deeplab.bench import host, report
from edge_deeplab.errors import OptionError, UserError

HOST = "host"


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where mIOU comes from: a dataset, its format, and how model classes map to its classes."""

    root: str
    format: str
    max_images: int | None = None
    subset: str | None = None  # start:stop[:step] of the sorted images (e.g. held-out 1::2), or a .txt list
    class_map: dict | None = None  # model class -> dataset class; None: see accuracy.default_class_map
    default_class: int | None = None

    def describe(self) -> str:
        subset = f", subset {self.subset}" if self.subset else ""
        images = f", first {self.max_images} images" if self.max_images else ""
        return f"{self.root} ({self.format}{subset}{images})"


def benchmark(models, device=HOST, threads=None, delegate="xnnpack", runs=30, warmup=5, baselines=(),
              data: DataSpec | None = None, binary=None, android_args=(), memory=True, progress=True,
              failed: list | None = None):
    """Latency of ``models`` and ``baselines`` (official models, marked as such) on ``device``.

    device: 'host' (this machine, in-process LiteRT, models interleaved run by run), 'pixel' (the one
    attached Android phone) or an adb serial. With ``data``, each model's mIOU is measured on this
    machine (LiteRT, XNNPACK) and attached to all its rows. ``failed``: a list to collect (path, reason)
    of the models that cannot be loaded and run, which are then left out (without it, the first one raises).
    """
    paths = [Path(p) for p in [*baselines, *models]]
    if not paths:
        raise OptionError("no models to benchmark: give .tflite files (or --sweep SPEC)")
    if len(set(paths)) != len(paths):
        raise OptionError("a model is listed twice")
    if device == HOST:
        host.check_host_delegate(delegate)
    paths = _loadable(paths, delegate if device == HOST else "xnnpack", failed)
    official = {str(Path(p)) for p in baselines}
    threads = tuple(threads or (_default_threads(device),))
    if device == HOST:
        results = host.bench_host(paths, threads, delegate, runs, warmup, progress=progress, memory=memory)
    else:
        from edge_deeplab.bench.phone import bench_android

        say = (lambda text: print(text, file=sys.stderr)) if progress else None
        results = bench_android(paths, device, threads, delegate, runs, warmup, binary=binary,
                                extra_args=android_args, progress=say)
        _fill_inputs(results)
    for r in results:
        r.baseline = r.path in official
    if data:
        attach_miou(results, data, threads=max(threads) if device == HOST else None, progress=progress)
    return results


def _loadable(paths, delegate, failed):
    """The models that load and run once here; the others go to ``failed`` (or raise, without it)."""
    from edge_deeplab.runtime.interpreter import make_interpreter
    from edge_deeplab.tflite.graph import read_model_file

    good = []
    for path in paths:
        try:
            interpreter = make_interpreter(read_model_file(path), 1, delegate, source=path)
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], host.timing_input(interpreter))
            interpreter.invoke()
        except (UserError, RuntimeError, ValueError) as e:
            error = e if isinstance(e, UserError) else UserError(f"{path}: cannot run the model ({e})")
            if failed is None:
                raise error from None
            failed.append((str(path), str(error)))
            continue
        good.append(path)
    if not good:
        raise OptionError(failed[0][1] if len(failed) == 1 else
                        f"none of the {len(paths)} models can be measured (the first: {failed[0][1]})")
    return good


def _default_threads(device):
    from edge_deeplab.runtime.interpreter import default_num_threads

    return default_num_threads() if device == HOST else 4  # phones: the big cores


def _fill_inputs(results):
    """The input shape and type of each model (benchmark_model does not print them)."""
    from edge_deeplab.runtime.interpreter import make_interpreter
    from edge_deeplab.tflite.graph import read_model_file

    described = {}
    for r in results:
        if r.path not in described:
            interpreter = make_interpreter(read_model_file(r.path), 1, "xnnpack", source=r.path)
            described[r.path] = host.describe_input(interpreter)
        r.input = described[r.path]


def attach_miou(results, data: DataSpec, threads=None, progress=True):
    """Measure each distinct model's mIOU once and put it on every row of that model."""
    from edge_deeplab.bench.accuracy import measure_miou
    from edge_deeplab.runtime.interpreter import default_num_threads

    scores = {}
    for r in results:
        if r.path not in scores:
            if progress:
                print(f"mIOU of {Path(r.path).name} on {data.describe()}", file=sys.stderr)
            scores[r.path] = measure_miou(r.path, data.root, data.format, threads=threads or default_num_threads(),
                                          class_map=data.class_map, default_class=data.default_class,
                                          max_images=data.max_images, subset=data.subset, progress=progress)
        s = scores[r.path]
        r.miou, r.iou, r.eval_images = s["miou"], s["iou"], s["images"]


def run_meta(command=None, device=HOST, data: DataSpec | None = None, **settings) -> dict:
    """What a report needs to be reproduced and compared: command, date, machine, runtime, settings."""
    meta = {"command": command, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if device == HOST:
        meta.update(machine=host.host_label().removeprefix("host: "), runtime=host.runner_label())
    else:
        meta.update(machine=f"Android device {device!r} over adb (benchmark_model)")
    meta.update(python=platform.python_version(), **{k: v for k, v in settings.items() if v not in (None, "")})
    if data:
        meta["accuracy"] = f"mIOU on {data.describe()}, measured on this machine with LiteRT"
    return meta


def write_reports(results, prefix=None, json_path=None, csv_path=None, markdown_path=None, plot_path=None,
                  meta=None, title="Benchmark") -> list[Path]:
    """Write the report files asked for; ``prefix`` asks for all four (PREFIX.json/.csv/.md/.png; the
    plot only when mIOU was measured). Returns the paths written."""
    if prefix:
        json_path = json_path or f"{prefix}.json"
        csv_path = csv_path or f"{prefix}.csv"
        markdown_path = markdown_path or f"{prefix}.md"
        if plot_path is None and any(r.miou is not None for r in results):
            plot_path = f"{prefix}.png"
    written = []
    if plot_path:
        report.plot_pareto(results, plot_path, title=title)
        written.append(Path(plot_path))
    if json_path:
        report.write_json(results, json_path, meta)
        written.append(Path(json_path))
    if csv_path:
        report.write_csv(results, csv_path)
        written.append(Path(csv_path))
    if markdown_path:
        report.write_markdown(results, markdown_path, title=title, meta=meta, plot=plot_path)
        written.append(Path(markdown_path))
    return written
