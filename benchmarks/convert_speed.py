"""Our .tflite exports of the official DeepLab weights against the official 513 quantized model.

1. The official MobileNetV2 depth-1.0, output stride 16, 513 weights are imported from
   ``deeplabv3_mnv2_pascal_quant.tflite`` (edge_deeplab.model.importer) and converted in several ways
   (float32 / fp16 / dynamic / int8 / int8 with a float stem conv, logits or labels heads, argmax
   strides). int8 is calibrated on 100 frames of the shared video, so the Penn-Fudan photos it is
   scored on stay unseen; the int8-officialq variants take the official model's own activation ranges
   and weight grid instead (--quantization-from), no calibration.
2. Person IoU of every model on the 119 Penn-Fudan photos (VOC person -> 1, every other class -> 0;
   letterbox, as ``edge-deeplab eval`` does it).
3. Latency on this machine: all models loaded side by side and timed invoke by invoke in turn
   (edge_deeplab.bench.host, interleaved, rotating order), medians and ratios.
4. With --profile (Linux perf): where the time goes, per op kind, in a process that only invokes one
   model (1 thread, so that samples are not blurred by the thread pool): the XNNPACK / TFLite kernels
   sampled are mapped to the op that runs them.

Usage (from the repository root, ../shared beside it; run it on a quiet machine, it takes a while):
    nice python benchmarks/convert_speed.py --threads 2 --rounds 40 --profile \\
        --work-dir /tmp/convert_speed --output benchmarks/convert_speed.md
Converted models are kept in --work-dir and reused by later runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
OFFICIAL = SHARED / "models" / "official" / "deeplabv3_mnv2_pascal_quant.tflite"
PENNFUDAN = SHARED / "data" / "pennfudan" / "PennFudanPed"
VIDEO = SHARED / "video" / "one-by-one-person-detection.mp4"
VOC_PERSON = 15
SPEED_TARGET = 0.8  # our int8 at 513 against the official quantized model
IOU_TOLERANCE = 0.01  # int8 person IoU within 1 point of float

# name -> ConvertOptions fields. int8 variants get the calibration frames.
VARIANTS = {
    "float32-logits": {},
    "float32-labels": {"output": "labels"},
    "float32-labels-s2": {"output": "labels", "argmax_stride": 2},
    "float32-labels-s4": {"output": "labels", "argmax_stride": 4},
    "fp16-labels-s4": {"quantize": "fp16", "output": "labels", "argmax_stride": 4},
    "dynamic-labels-s4": {"quantize": "dynamic", "output": "labels", "argmax_stride": 4},
    "int8-logits-uint8io": {"quantize": "int8", "io": "uint8"},
    "int8-logits-int8io": {"quantize": "int8", "io": "int8"},
    "int8-labels": {"quantize": "int8", "io": "uint8", "output": "labels"},
    "int8-labels-s2": {"quantize": "int8", "io": "uint8", "output": "labels", "argmax_stride": 2},
    "int8-labels-s4": {"quantize": "int8", "io": "uint8", "output": "labels", "argmax_stride": 4},
    "int8-labels-s16": {"quantize": "int8", "io": "uint8", "output": "labels", "argmax_stride": 16},
    "int8-floatstem-logits": {"quantize": "int8", "float_stem": True},
    "int8-floatstem-labels": {"quantize": "int8", "float_stem": True, "output": "labels"},
    "int8-floatstem-labels-s2": {"quantize": "int8", "float_stem": True, "output": "labels", "argmax_stride": 2},
    "int8-floatstem-labels-s4": {"quantize": "int8", "float_stem": True, "output": "labels", "argmax_stride": 4},
    # the official model's own activation ranges and weight grid (--quantization-from), no calibration
    "int8-officialq-logits": {"quantize": "int8", "io": "uint8", "quantization_from": str(OFFICIAL)},
    "int8-officialq-labels": {"quantize": "int8", "io": "uint8", "output": "labels",
                              "quantization_from": str(OFFICIAL)},
    "int8-officialq-labels-s2": {"quantize": "int8", "io": "uint8", "output": "labels", "argmax_stride": 2,
                                 "quantization_from": str(OFFICIAL)},
}
# (ours, float32 reference with the same head) pairs for the int8 / fp16 vs float32 comparison
SAME_HEAD = [("int8-logits-uint8io", "float32-logits"), ("int8-logits-int8io", "float32-logits"),
             ("int8-labels", "float32-labels"), ("int8-labels-s2", "float32-labels-s2"),
             ("int8-labels-s4", "float32-labels-s4"), ("fp16-labels-s4", "float32-labels-s4"),
             ("dynamic-labels-s4", "float32-labels-s4"), ("int8-floatstem-logits", "float32-logits"),
             ("int8-floatstem-labels", "float32-labels"), ("int8-floatstem-labels-s2", "float32-labels-s2"),
             ("int8-floatstem-labels-s4", "float32-labels-s4"), ("int8-officialq-logits", "float32-logits"),
             ("int8-officialq-labels", "float32-labels"), ("int8-officialq-labels-s2", "float32-labels-s2")]
PROFILED = ("float32-logits", "int8-logits-uint8io", "int8-logits-int8io", "float32-labels", "int8-labels",
            "int8-floatstem-labels", "float32-labels-s4", "int8-labels-s4", "int8-floatstem-labels-s4",
            "int8-officialq-labels")

# Kernel symbol (perf) -> the op it runs, first match wins.
KERNEL_OPS = [
    (r"xnn_.*_igemm_", "CONV_2D 3x3 (the stride-2 stem conv)"),
    (r"xnn_.*_gemm_", "CONV_2D 1x1"),
    (r"xnn_.*dwconv", "DEPTHWISE_CONV_2D"),
    (r"xnn_.*ibilinear|ResizeBilinear", "RESIZE_BILINEAR"),
    (r"ArgMinMax|ArgMax", "ARG_MAX"),
    (r"Gather", "GATHER"),
    (r"ResizeNearest", "RESIZE_NEAREST_NEIGHBOR"),
    (r"xnn_.*vadd|xnn_.*vaddc", "ADD"),
    (r"quantize::|Requantize|MultiplyByQuantizedMultiplier|xnn_.*vcvt|dequantize", "QUANTIZE / DEQUANTIZE"),
    (r"xnn_.*(gavgpool|rsum|rdsum|reduce)|reduce|Mean", "MEAN"),
    (r"xnn_.*(copy|concat|fill|pad)|memcpy|memmove|memset|Concatenation", "copies (concatenation, padding)"),
    (r"pthreadpool|futex|sched_yield", "thread pool"),
]


# ------------------------------------------------------------------------------------------ the models
def calibration_frames(folder: Path, count=100) -> Path:
    """``count`` frames spread over the shared video, as JPEG files (the int8 calibration set)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) >= count:
        return folder
    capture = cv2.VideoCapture(str(VIDEO))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = {i * total // count for i in range(count)}
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            cv2.imwrite(str(folder / f"frame_{index:05d}.jpg"), frame)
        index += 1
    capture.release()
    return folder


def imported_model(work_dir: Path):
    from edge_deeplab.model.importer import import_official
    from edge_deeplab.model.deeplab import load_model, save_model

    path = work_dir / "imported_mnv2_dm1_os16_513.keras"
    if not path.exists():
        save_model(import_official(OFFICIAL, verify_images=PENNFUDAN / "PNGImages", max_images=8).model, path)
    return load_model(path)


def convert_variants(names, work_dir: Path, calibration: Path) -> dict:
    """name -> .tflite path, converting only what --work-dir does not hold yet."""
    from edge_deeplab.export.convert import ConvertOptions, convert

    paths, model = {}, None
    for name in names:
        path = work_dir / f"{name}.tflite"
        if not path.exists():
            model = model or imported_model(work_dir)
            fields = dict(VARIANTS[name])
            if fields.get("quantize") == "int8" and not fields.get("quantization_from"):
                fields.update(calibration=str(calibration), num_calibration=100)
            print(f"converting {name}", file=sys.stderr)
            convert(model, path, ConvertOptions(samples=str(PENNFUDAN / "PNGImages"), **fields))
        paths[name] = path
    return paths


# --------------------------------------------------------------------------------------- measurements
def person_iou(path, threads) -> float:
    from edge_deeplab.data.datasets import pennfudan
    from edge_deeplab.runtime.evaluate import evaluate, tflite_predictor

    result = evaluate(tflite_predictor(path, num_threads=threads), pennfudan(PENNFUDAN),
                      class_map={VOC_PERSON: 1}, default_class=0)
    return float(result.matrix.iou()[1])


def latencies(paths: dict, threads, rounds, warmup) -> dict:
    from edge_deeplab.bench.host import bench_host

    results = bench_host(list(paths.values()), threads=(threads,), runs=rounds, warmup=warmup, memory=False)
    return {name: r.median_ms for name, r in zip(paths, results)}


def op_profile(path, runs=20, frequency=1999) -> dict:
    """op kind -> CPU ms per invoke, from perf samples of a process that loads ``path``, warms up, then only
    invokes (1 thread). CPU time, unlike wall time, does not grow when other jobs take the cores."""
    data = Path(path).with_suffix(".perf.data")
    child = subprocess.Popen([sys.executable, __file__, "--invoke-loop", str(path), str(runs)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child.stdout.readline()  # "ready": loaded and warmed up
    perf = subprocess.Popen(["perf", "record", "-q", "-F", str(frequency), "-o", str(data), "-p", str(child.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # perf attaches
    child.stdin.write("go\n")
    child.stdin.flush()
    child.wait()
    perf.wait()
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "-n", "--sort", "symbol",
                             "--stdio", "--percent-limit", "0"], capture_output=True, text=True).stdout
    data.unlink(missing_ok=True)
    ms = Counter()
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+\[[.k]\]\s+(\S.*?)\s*$", line)
        if m:
            ms[_op_of(m.group(2))] += int(m.group(1)) * 1e3 / frequency / runs
    return dict(ms.most_common())


def op_profiles(paths: dict, repeats=5) -> dict:
    """name -> {op kind: CPU ms per invoke}, the median of ``repeats`` profiles taken in turn."""
    taken = {name: [] for name in paths}
    for _ in range(repeats):
        for name, path in paths.items():
            taken[name].append(op_profile(path))
    return {name: {kind: float(np.median([p.get(kind, 0.0) for p in profiles]))
                   for kind in {k for p in profiles for k in p}} for name, profiles in taken.items()}


def _op_of(symbol):
    for pattern, op in KERNEL_OPS:
        if re.search(pattern, symbol):
            return op
    return "other (interpreter, Python)"


def _invoke_loop(path, runs):
    """The profiled child: load, warm up, say ready, wait, invoke ``runs`` times."""
    from edge_deeplab.bench.host import timing_input
    from edge_deeplab.runtime.interpreter import make_interpreter

    interpreter = make_interpreter(Path(path).read_bytes(), 1)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], timing_input(interpreter))
    for _ in range(3):
        interpreter.invoke()
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(runs)):
        interpreter.invoke()


# -------------------------------------------------------------------------------------------- the report
def ops_line(path) -> str:
    from edge_deeplab.tflite.graph import TFLiteGraph

    return ", ".join(f"{k} {v}" for k, v in TFLiteGraph(Path(path).read_bytes()).op_counts().items())


def markdown(command, machine, rows, profiles, checks) -> str:
    lines = [
        "# Conversion: speed and accuracy of our exports at 513",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']} ({machine['isa']}), {machine['cores']} cores, {machine['threads']} interpreter "
        f"threads, load average before / after {machine['load_before']} / {machine['load_after']} (the machine is "
        "shared: read the ratios of the interleaved runs). Versions: " + machine["versions"] + ".",
        "",
        "Model: the official DeepLabv3 MobileNetV2 depth 1.0, output stride 16, 513x513 weights imported from "
        "`deeplabv3_mnv2_pascal_quant.tflite`; int8 calibrated on 100 frames of the shared video, except "
        "int8-officialq (`--quantization-from` the official model: its activation ranges and weight grid). Person IoU on "
        "the 119 Penn-Fudan photos (letterbox, VOC person -> person, every other class -> background).",
        "",
        f"| model | size MB | output | person IoU | median ms, {machine['threads']} threads | / official | "
        "/ float32, same head | median ms, 1 thread | / float32, same head, 1 thread |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = f"{r['vs_float32']:.2f}" if r.get("vs_float32") else ""
        ref1 = f"{r['vs_float32_1_thread']:.2f}" if r.get("vs_float32_1_thread") else ""
        lines.append(f"| {r['name']} | {r['size_mb']:.2f} | {r['output']} | {100 * r['iou']:.2f} | "
                     f"{r['median_ms']:.1f} | {r['vs_official']:.2f} | {ref} | {r['median_ms_1_thread']:.1f} | "
                     f"{ref1} |")
    lines += ["", "## Acceptance", ""]
    lines += [f"- {c}" for c in checks]
    if profiles:
        names = list(profiles)
        lines += ["", "## Where the time goes: op profile (perf samples, 1 thread)", "",
                  "CPU ms per invoke by op kind: perf samples of a process that only invokes the model, the XNNPACK / "
                  "TFLite kernels sampled mapped to the op they run (median of 5 profiles taken in turn; run to run "
                  "the 1x1 convolutions vary by a few ms).", "",
                  "| op | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        kinds = sorted({k for p in profiles.values() for k in p},
                       key=lambda k: -max(p.get(k, 0) for p in profiles.values()))
        lines.append("| **total** | " + " | ".join(f"**{sum(profiles[n].values()):.1f}**" for n in names) + " |")
        for kind in kinds:
            lines.append(f"| {kind} | " + " | ".join(f"{profiles[n].get(kind, 0.0):.2f}" for n in names) + " |")
        lines += ["", "int8 minus float32, CPU ms per invoke by op kind (same head; + is where int8 loses time):", ""]
        for ours, ref in SAME_HEAD:
            if ours in profiles and ref in profiles:
                diff = {k: profiles[ours].get(k, 0.0) - profiles[ref].get(k, 0.0) for k in kinds}
                terms = ", ".join(f"{k} {d:+.2f}" for k, d in sorted(diff.items(), key=lambda kv: -abs(kv[1]))
                                  if abs(d) >= 0.1)
                lines.append(f"- {ours} - {ref}: total {sum(diff.values()):+.2f} ({terms})")
    lines += ["", "Op lists:", ""]
    lines += [f"- {r['name']}: {r['ops']}" for r in rows if r["name"] != "official"]
    lines += ["", "Raw results:", "", "```json", json.dumps({"rows": rows, "profiles": profiles}, indent=1), "```", ""]
    return "\n".join(lines)


def machine_info(threads) -> dict:
    from importlib.metadata import version

    cpu, flags = platform.processor(), set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags) or "no AVX2"
    return {"cpu": cpu, "isa": isa, "cores": os.cpu_count(), "threads": threads,
            "load_before": round(os.getloadavg()[0], 2),
            "versions": ", ".join(f"{p} {version(p)}" for p in ("ai-edge-litert", "tensorflow", "numpy"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--profile", action="store_true", help="perf op profile of float32 and int8 (Linux perf)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/convert_speed"))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "convert_speed.md")
    args = parser.parse_args()
    for needed in (OFFICIAL, PENNFUDAN, VIDEO):
        if not needed.exists():
            sys.exit(f"{needed} is absent: this benchmark needs ../shared beside the repository")
    machine = machine_info(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    paths = convert_variants(args.variants, args.work_dir, calibration_frames(args.work_dir / "calibration"))
    models = {"official": OFFICIAL, **paths}

    ious = {name: person_iou(path, args.threads) for name, path in models.items()}
    medians = latencies(models, args.threads, args.rounds, args.warmup)
    one_thread = latencies(models, 1, args.rounds, args.warmup) if args.threads != 1 else medians
    rows = []
    for name, path in models.items():
        fields = VARIANTS.get(name, {})
        out = fields.get("output", "logits")
        stride = fields.get("argmax_stride", 1)
        rows.append({"name": name, "size_mb": path.stat().st_size / 1e6, "iou": ious[name],
                     "median_ms": medians[name], "vs_official": medians[name] / medians["official"],
                     "median_ms_1_thread": one_thread[name],
                     "output": "int64 labels (513 argmax)" if name == "official" else
                     out + (f", argmax at 1/{stride}" if stride > 1 else ""),
                     "ops": "" if name == "official" else ops_line(path)})
    by_name = {r["name"]: r for r in rows}
    for ours, ref in SAME_HEAD:
        if ours in by_name and ref in by_name:
            by_name[ours]["vs_float32"] = by_name[ours]["median_ms"] / by_name[ref]["median_ms"]
            by_name[ours]["vs_float32_1_thread"] = (by_name[ours]["median_ms_1_thread"]
                                                    / by_name[ref]["median_ms_1_thread"])

    profiles = {}
    if args.profile:
        profiles = op_profiles({n: paths[n] for n in PROFILED if n in paths})

    checks = acceptance(by_name, paths)
    machine["load_after"] = round(os.getloadavg()[0], 2)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    text = markdown(command, machine, rows, profiles, checks)
    args.output.write_text(text)
    print(text)


def acceptance(by_name, paths) -> list:
    from edge_deeplab.tflite.graph import TFLiteGraph

    checks = []
    s2b = [n for n, p in paths.items()
           if {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"} & set(TFLiteGraph(p.read_bytes()).op_counts())]
    checks.append(f"SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND in an export: {', '.join(s2b) if s2b else 'none'}.")
    int8 = [n for n in paths if VARIANTS[n].get("quantize") == "int8"]
    for name in int8:
        boundary, inner = TFLiteGraph(paths[name].read_bytes()).float_ops()
        why = " (the stem conv and the QUANTIZE after it: --float-stem)" if VARIANTS[name].get("float_stem") else ""
        checks.append(f"{name}: float ops inside the int8 graph: {', '.join(inner) if inner else 'none'}{why}; "
                      f"at the float I/O boundary: {', '.join(boundary) if boundary else 'none'}.")
    official = by_name["official"]
    if "float32-logits" in by_name:
        d = by_name["float32-logits"]["iou"] - official["iou"]
        checks.append(f"float32-logits (the imported weights, unquantized) vs the official quantized model: person IoU "
                      f"{100 * d:+.2f} points: the reference every export starts from.")
    for name in int8:
        ours = by_name[name]
        ok = ours["vs_official"] <= SPEED_TARGET and ours["iou"] >= official["iou"]
        checks.append(f"{name} vs the official quantized model: {ours['vs_official']:.2f}x its latency (target <= "
                      f"{SPEED_TARGET}), person IoU {100 * (ours['iou'] - official['iou']):+.2f} points: "
                      f"{'met' if ok else 'MISSED'}.")
    for ours, ref in SAME_HEAD:
        if ours in by_name and ref in by_name:
            d = by_name[ours]["iou"] - by_name[ref]["iou"]
            iou = (f"person IoU {100 * d:+.2f} points (tolerance {100 * IOU_TOLERANCE:.0f}): "
                   f"{'met' if abs(d) <= IOU_TOLERANCE else 'MISSED'}; " if VARIANTS[ours].get("quantize") == "int8"
                   else f"person IoU {100 * d:+.2f} points; ")
            checks.append(f"{ours} against {ref}: {iou}latency {by_name[ours]['vs_float32']:.2f}x "
                          f"({by_name[ours]['vs_float32_1_thread']:.2f}x at 1 thread).")
    return checks


if __name__ == "__main__":
    if sys.argv[1:2] == ["--invoke-loop"]:
        _invoke_loop(*sys.argv[2:4])
    else:
        main()
