"""How long a conversion takes: ``TFLiteConverter.from_keras_model`` against the converter `convert` uses.

``edge_deeplab.export.convert.tflite_converter`` hands the TFLite converter one frozen concrete function of
the model's forward pass instead of the Keras model (which the converter first saves as a SavedModel,
tracing every tf_keras layer on its own). For each model and quantization this script converts with both,
in turn, round after round (the machine is shared: read the ratios), and checks that the two .tflite files
have the same ops and compute the same outputs on one random input.

    python benchmarks/convert_time.py --rounds 2 --output benchmarks/convert_time.md

Models: the tiny test network (depth 0.35, 33x33, 2 classes) and the official MobileNetV2 depth 1.0, output
stride 16 network at 513x513 (21 classes, random weights: the conversion does the same work whatever the
weights). Quantizations: fp32, and int8 calibrated on 8 synthetic images (the same ones for both converters).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from edge_deeplab.export.convert import tflite_converter  # noqa: E402
from edge_deeplab.model.deeplab import build_deeplab  # noqa: E402
from edge_deeplab.runtime.interpreter import make_interpreter  # noqa: E402
from edge_deeplab.tflite.graph import TFLiteGraph  # noqa: E402

MODELS = {"tiny 0.35 33x33": dict(depth_multiplier=0.35, input_size=33, num_classes=2),
          "MobileNetV2 1.0 513x513": dict(depth_multiplier=1.0, input_size=513, num_classes=21)}
CONVERTERS = {"from_keras_model": tf.lite.TFLiteConverter.from_keras_model, "tflite_converter": tflite_converter}


def converted(make_converter, model, quantize: str) -> bytes:
    converter = make_converter(model)
    if quantize == "int8":
        size = model.input_shape[1:3]
        images = [np.random.default_rng(i).uniform(-1, 1, (1, *size, 3)).astype(np.float32) for i in range(8)]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def invoke(content: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = make_interpreter(content, num_threads=2)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def same_model(a: bytes, b: bytes, size) -> dict:
    x = np.random.default_rng(9).uniform(-1, 1, (1, *size, 3)).astype(np.float32)
    outputs = [invoke(content, x) for content in (a, b)]
    return {"same_ops": TFLiteGraph(a).op_counts() == TFLiteGraph(b).op_counts(),
            "max_abs_difference": float(np.abs(outputs[0].astype(np.float64) - outputs[1]).max())}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "convert_time.md")
    a = p.parse_args()
    rows, load_before = [], os.getloadavg()
    for name, kwargs in MODELS.items():
        model = build_deeplab(**kwargs)
        for quantize in ("fp32", "int8"):
            seconds, contents = {c: [] for c in CONVERTERS}, {}
            for r in range(a.rounds):
                order = list(CONVERTERS) if r % 2 == 0 else list(reversed(CONVERTERS))
                for c in order:
                    started = time.perf_counter()
                    contents[c] = converted(CONVERTERS[c], model, quantize)
                    seconds[c].append(time.perf_counter() - started)
                    print(f"{name} {quantize} {c}: {seconds[c][-1]:.1f} s", flush=True)
            check = same_model(contents["from_keras_model"], contents["tflite_converter"], model.input_shape[1:3])
            medians = {c: statistics.median(s) for c, s in seconds.items()}
            rows.append({"model": name, "quantize": quantize, "seconds": seconds, "median_s": medians,
                         "speedup": medians["from_keras_model"] / medians["tflite_converter"], **check})
    write(a, rows, load_before)


def write(a, rows, load_before):
    report = {"command": f"python benchmarks/convert_time.py --rounds {a.rounds}", "rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__,
                          "load_avg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}}
    a.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Conversion time: from_keras_model against tflite_converter (one frozen concrete function)", "",
             f"Command: `{report['command']} --output {a.output}`", "",
             f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, tensorflow {tf.__version__}; load average "
             f"before / after {report['machine']['load_avg_before_after']}. The two converters ran in turn in "
             f"every round (order alternating), {a.rounds} rounds; medians.", "",
             "| model | quantization | from_keras_model s | tflite_converter s | speed-up | same ops | max abs output difference |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        m = r["median_s"]
        lines.append(f"| {r['model']} | {r['quantize']} | {m['from_keras_model']:.1f} | {m['tflite_converter']:.1f} | "
                     f"{r['speedup']:.1f}x | {'yes' if r['same_ops'] else 'NO'} | {r['max_abs_difference']:.2g} |")
    a.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
