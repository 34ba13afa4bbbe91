"""How much the Python runtime adds to the model, and how fast the video loop runs.

1. Pre/post-processing overhead at 513: the official 513 uint8 DeepLab on real Penn-Fudan photos.
   Model-only runs (interpreter invoke on an already prepared input) and full-pipeline runs
   (``SegmentationModel.segment``: letterbox, normalize, invoke, crop, resize the mask back) are
   interleaved; medians and their ratio are reported. The same for the official 257 float model.
2. The headless video loop (``edge-deeplab webcam --no-display --output``) over the whole shared
   768x432 video with the official 257 model on 2 threads: frames, FPS, latency percentiles, and a
   check that the written video reads back with as many frames as the source.

Usage (from the repository root, ../shared beside it):
    python benchmarks/runtime_overhead.py --threads 2 --rounds 60 --output benchmarks/runtime_overhead.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_deeplab.runtime.interpreter import SegmentationModel  # noqa: E402
from edge_deeplab.runtime.video import run_video  # noqa: E402

OVERHEAD_LIMIT = 0.15
FPS_TARGET = 20.0


def overhead(model_path, images, rounds, threads):
    """Interleaved model-only and full-pipeline runs on the same images; medians in ms."""
    model = SegmentationModel(model_path, num_threads=threads)
    prepared = []
    for image in images:
        tensor, _ = model.preprocess(image)
        prepared.append(tensor.copy())
    for image in images[:3]:  # warm-up: the first invokes pack weights
        model.segment(image)
    invoke_only, pipeline, pipeline_invoke, pre, post = [], [], [], [], []
    for i in range(rounds):
        k = i % len(images)
        invoke_only.append(model.invoke(prepared[k]))
        start = time.perf_counter()
        result = model.segment(images[k])
        pipeline.append((time.perf_counter() - start) * 1e3)
        pipeline_invoke.append(result.invoke_ms)
        pre.append(result.preprocess_ms)
        post.append(result.postprocess_ms)
    med = {name: float(np.median(v)) for name, v in
           dict(invoke_only=invoke_only, pipeline=pipeline, pipeline_invoke=pipeline_invoke, preprocess=pre,
                postprocess=post).items()}
    added = np.array(pipeline) - np.array(pipeline_invoke)  # everything but the invoke, run by run
    med["added"] = float(np.median(added))
    med["overhead_vs_invoke_only"] = med["pipeline"] / med["invoke_only"] - 1
    med["added_vs_invoke"] = med["added"] / med["invoke_only"]
    return {"model": Path(model_path).name, "info": f"{model.info.input_height}x{model.info.input_width} "
            f"{model.info.input_dtype} -> {model.info.output_kind}", "rounds": rounds,
            **{k: round(v, 4) for k, v in med.items()}}


def video(model_path, video_path, threads):
    model = SegmentationModel(model_path, num_threads=threads)
    capture = cv2.VideoCapture(str(video_path))
    source_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "segmented.mp4"
        summary = run_video(model, str(video_path), output=out, display=False, progress=True)
        readback = cv2.VideoCapture(str(out))
        written = 0
        while readback.read()[0]:
            written += 1
        readback.release()
    return {"model": Path(model_path).name, "source_frames": source_frames, "written_frames": written,
            **summary.to_dict()}


def markdown(command, machine, results, v):
    at_513 = results[0]
    meets = max(at_513["overhead_vs_invoke_only"], at_513["added_vs_invoke"]) <= OVERHEAD_LIMIT
    complete = v["source_frames"] == v["frames"] == v["written_frames"]
    lat = v["latency_ms"]
    lines = [
        "# Runtime overhead and video loop speed",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, load average before / after "
        f"{machine['load_before']} / {machine['load_after']} (the machine is shared: compare the ratios).",
        f"Versions: ai-edge-litert {machine['litert']}, OpenCV {machine['opencv']}, numpy {machine['numpy']}, "
        f"Python {machine['python']}.",
        "",
        "## Pre/post-processing overhead (real Penn-Fudan photos, interleaved runs, medians in ms)",
        "",
        "| model | input -> output | invoke only | full pipeline | pre | post | pipeline / invoke - 1 | "
        "added / invoke |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['model']} | {r['info']} | {r['invoke_only']:.2f} | {r['pipeline']:.2f} | "
                     f"{r['preprocess']:.2f} | {r['postprocess']:.2f} | {r['overhead_vs_invoke_only']:+.1%} | "
                     f"{r['added_vs_invoke']:.1%} |")
    lines += [
        "",
        "'pipeline / invoke - 1' compares the medians of the interleaved full-pipeline and model-only runs; "
        "'added' is each pipeline run's wall time minus its own invoke (pre + set_tensor + post).",
        f"At 513 the runtime {'meets' if meets else 'MISSES'} the {OVERHEAD_LIMIT:.0%} target (both measures).",
        "",
        "## Headless video loop (whole shared video, overlay + legend + FPS text, mp4v output)",
        "",
        "| model | threads | frames (source / segmented / written) | seconds | FPS | latency p50 / p90 / p99 ms "
        "| invoke p50 / mean ms | loop ms per frame outside invoke |",
        "|---|---:|---|---:|---:|---|---:|---:|",
        f"| {v['model']} | {v['threads']} | {v['source_frames']} / {v['frames']} / {v['written_frames']} | "
        f"{v['seconds']:.1f} | {v['fps']:.1f} | {lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f} | "
        f"{v['invoke_ms']['p50']:.1f} / {v['invoke_ms']['mean']:.1f} | {1e3 / v['fps'] - v['invoke_ms']['mean']:.1f} |",
        "",
        "'Outside invoke' is 1000 / FPS minus the mean invoke: decoding, letterbox, argmax, overlay, legend, "
        "text and encoding per frame; on a loaded machine the invoke grows most.",
        "",
        f"Target >= {FPS_TARGET:.0f} FPS: {'met' if v['fps'] >= FPS_TARGET else 'MISSED'}; every frame segmented "
        f"and written (read back with OpenCV): {'yes' if complete else 'NO'}.",
        "",
        "Raw results:",
        "",
        "```json",
        json.dumps({"overhead": results, "video": v}, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds per model")
    parser.add_argument("--images", type=int, default=12, help="Penn-Fudan photos to cycle through")
    parser.add_argument("--output", help="write the Markdown results here")
    args = parser.parse_args()

    shared = Path(args.shared)
    official = shared / "models" / "official"
    photos = sorted((shared / "data" / "pennfudan" / "PennFudanPed" / "PNGImages").glob("*.png"))[:args.images]
    if not photos:
        sys.exit(f"no Penn-Fudan photos under {shared}: pass --shared")
    images = [cv2.imread(str(p)) for p in photos]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_before": round(os.getloadavg()[0], 2), "litert": _version("ai-edge-litert"),
               "opencv": cv2.__version__, "numpy": np.__version__, "python": platform.python_version()}
    machine["cpu"] = _cpu_name() or machine["cpu"]

    results = [overhead(official / name, images, args.rounds, args.threads)
               for name in ("deeplabv3_mnv2_pascal_quant.tflite", "deeplabv3_257_mv_gpu.tflite")]
    for r in results:
        print(json.dumps(r))
    video_result = video(official / "deeplabv3_257_mv_gpu.tflite",
                         shared / "video" / "one-by-one-person-detection.mp4", args.threads)
    print(json.dumps(video_result))
    machine["load_after"] = round(os.getloadavg()[0], 2)

    command = "python benchmarks/runtime_overhead.py " + " ".join(sys.argv[1:])
    text = markdown(command.strip(), machine, results, video_result)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text)


def _version(package):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    main()
