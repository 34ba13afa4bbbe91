"""How faithfully `edge-deeplab import` reproduces the official DeepLab models, and the output-stride
trade-off the imported weights open up. Full Penn-Fudan set (119 photos) from ../shared.

1. For each official model (257 float OS 8 depth 0.5; 513 uint8 OS 16 depth 1.0 and 0.5): the argmax
   pixel agreement of the imported Keras model with the official TFLite model, the largest logit
   difference (the 257 model, the only one that outputs logits), and the person IoU of both.
2. The imported depth-1.0 weights at output stride 16 and 8: both Keras models converted to float
   TFLite (plain TFLiteConverter.from_keras_model), their person IoU, multiply-adds and latency
   (ai-edge-litert, 2 threads, interleaved runs, medians; the official uint8 model timed alongside).

Person IoU protocol: the image stretched to the model input (cv2.INTER_LINEAR), normalized x / 127.5 - 1
(quantized with the model's input scale and zero point for the uint8 models; the imported Keras model
gets exactly the dequantized value the official model sees), the predicted labels resized back to the
image size (nearest), VOC class 15 -> person, everything else -> background, scored against mask > 0
with one confusion matrix over all pixels of all images.

Usage (from the repository root, ../shared beside it; slow on 2 shared cores, run it in the background):
    nice python benchmarks/import_fidelity.py --threads 2 --rounds 30
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import edge_deeplab  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edge_deeplab.model import importer  # noqa: E402
from edge_deeplab.data.datasets import VOC_PERSON, open_dataset  # noqa: E402
from edge_deeplab.io_utils import write_text_atomic  # noqa: E402
from edge_deeplab.runtime.metrics import ConfusionMatrix  # noqa: E402
from edge_deeplab.runtime.interpreter import SegmentationModel, make_interpreter  # noqa: E402

MODELS = ["deeplabv3_257_mv_gpu.tflite", "deeplabv3_mnv2_pascal_quant.tflite",
          "deeplabv3_mnv2_dm05_pascal_quant.tflite"]
TRADE_OFF_SOURCE = "deeplabv3_mnv2_pascal_quant.tflite"


def person(labels, image_hw):
    """Class ids at model resolution -> 1 where person, 0 elsewhere, at the image's size (nearest)."""
    h, w = image_hw
    mask = (labels == VOC_PERSON).astype(np.uint8)
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) if mask.shape != (h, w) else mask


def fidelity(path, samples, threads):
    """Imported Keras model vs official TFLite model on every sample."""
    model, source = importer.import_tflite(path)
    interpreter = make_interpreter(source.path.read_bytes(), threads, source=source.path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    official_cm, imported_cm = ConfusionMatrix(2), ConfusionMatrix(2)
    agree = pixels = 0
    max_diff = 0.0
    per_image = []
    for sample in samples:
        tensor, real = importer.model_input(sample.image, source.config.input_size, source)
        interpreter.set_tensor(inp["index"], tensor)
        interpreter.invoke()
        theirs = interpreter.get_tensor(out["index"])[0]
        logits = model.predict_on_batch(real)[0]
        if source.output_kind == "logits":
            max_diff = max(max_diff, float(np.abs(logits - theirs).max()))
            theirs = theirs.argmax(-1)
        ours = logits.argmax(-1)
        same = int((ours == theirs).sum())
        agree, pixels = agree + same, pixels + ours.size
        per_image.append(same / ours.size)
        official_cm.update(person(theirs, sample.label.shape), sample.label)
        imported_cm.update(person(ours, sample.label.shape), sample.label)
    return model, source, {
        "model": path.name,
        "source": source.describe(),
        "images": len(samples),
        "agreement": agree / pixels,
        "worst_image_agreement": min(per_image),
        "max_abs_logit_diff": max_diff if source.output_kind == "logits" else None,
        "person_iou_official": float(official_cm.iou()[1]),
        "person_iou_imported": float(imported_cm.iou()[1]),
    }


def convert(model, path):
    import tensorflow as tf

    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path.write_bytes(content)
    interpreter = make_interpreter(content, 1, source=path)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def tflite_person_iou(path, samples, threads):
    model = SegmentationModel(path, num_threads=threads, resize="stretch")
    cm = ConfusionMatrix(2)
    for sample in samples:
        mask = model.segment(cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)).mask
        cm.update((mask == VOC_PERSON).astype(np.uint8), sample.label)
    return float(cm.iou()[1])


def interleaved_latency(paths, image_bgr, threads, rounds, warmup=3):
    """Median invoke time (ms) of each model, runs interleaved model by model, round by round."""
    models = [SegmentationModel(p, num_threads=threads, resize="stretch") for p in paths]
    tensors = [m.preprocess(image_bgr)[0].copy() for m in models]
    for m, t in zip(models, tensors):
        for _ in range(warmup):
            m.invoke(t)
    times = [[] for _ in models]
    for _ in range(rounds):
        for k, (m, t) in enumerate(zip(models, tensors)):
            times[k].append(m.invoke(t))
    return [float(np.median(t)) for t in times]


def trade_off(model16, samples, shared_models, threads, rounds, workdir):
    from edge_deeplab.model.complexity import model_complexity
    from edge_deeplab.model.deeplab import rebuild

    model8 = rebuild(model16, output_stride=8)
    rows = []
    paths = []
    for os_, model in ((16, model16), (8, model8)):
        path = workdir / f"imported_dm1_os{os_}_float.tflite"
        ops = convert(model, path)
        paths.append(path)
        rows.append({"output_stride": os_, "tflite": path.name, "tflite_mb": path.stat().st_size / 1e6,
                     "multiply_adds": model_complexity(model)["multiply_adds"], "ops": ops,
                     "space_to_batch": "SPACE_TO_BATCH_ND" in ops,
                     "person_iou": tflite_person_iou(path, samples, threads)})
    official = shared_models / TRADE_OFF_SOURCE
    image = cv2.cvtColor(samples[0].image, cv2.COLOR_RGB2BGR)
    official_ms, os16_ms, os8_ms = interleaved_latency([official, *paths], image, threads, rounds)
    rows[0]["latency_ms"], rows[1]["latency_ms"] = os16_ms, os8_ms
    return {"rows": rows, "official_uint8_latency_ms": official_ms, "rounds": rounds, "threads": threads}


def markdown(command, env, fidelity_rows, trade):
    lines = ["# Import fidelity: official DeepLab TFLite models -> Keras (`edge-deeplab import`)", "",
             f"Command: `{command}`", "",
             f"Machine: {env['machine']}, {env['cores']} cores, load average (1, 5, 15 min) before / after "
             f"{env['load_before']} / {env['load_after']} (shared machine: compare ratios). Versions: "
             f"{env['versions']}.", "",
             "## Imported vs official, full Penn-Fudan set", "",
             "| official model | images | argmax agreement | worst image | max abs logit diff | person IoU official "
             "| person IoU imported | difference (points) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in fidelity_rows:
        diff = "-" if r["max_abs_logit_diff"] is None else f"{r['max_abs_logit_diff']:.2e}"
        delta = 100 * (r["person_iou_imported"] - r["person_iou_official"])
        lines.append(f"| {r['model']} | {r['images']} | {100 * r['agreement']:.3f}% | "
                     f"{100 * r['worst_image_agreement']:.2f}% | {diff} | {100 * r['person_iou_official']:.2f} | "
                     f"{100 * r['person_iou_imported']:.2f} | {delta:+.2f} |")
    lines += ["", "Agreement is counted at the model's resolution (257x257 or 513x513). The uint8 models "
              "output ARG_MAX labels, so there are no logits to compare; they were quantization-aware trained, "
              "and the imported float model computes the float function they approximate.", "",
              "Person IoU protocol: image stretched to the model input (cv2.INTER_LINEAR), normalized "
              "x / 127.5 - 1 (for the uint8 models quantized with their input scale 1/128 and zero point 128; the "
              "Keras model gets exactly the dequantized value the official model sees), labels resized back "
              "to the image size (nearest), VOC class 15 = person, everything else background, against "
              "mask > 0; one confusion matrix over all pixels of all images.", "",
              "## Output stride 16 vs 8 with the imported depth-1.0 weights (513x513, float TFLite)", "",
              "| output stride | person IoU | multiply-adds | latency median (ms) | vs OS 16 | model MB | "
              "SPACE_TO_BATCH_ND |", "|---:|---:|---:|---:|---:|---:|---|"]
    base = trade["rows"][0]["latency_ms"]
    for r in trade["rows"]:
        lines.append(f"| {r['output_stride']} | {100 * r['person_iou']:.2f} | {r['multiply_adds'] / 1e9:.2f}B | "
                     f"{r['latency_ms']:.1f} | {r['latency_ms'] / base:.2f}x | {r['tflite_mb']:.1f} | "
                     f"{'yes' if r['space_to_batch'] else 'no'} |")
    lines += ["", f"Latency: ai-edge-litert interpreter invoke, {trade['threads']} threads, XNNPACK, "
              f"{trade['rounds']} interleaved rounds after 3 warm-up runs each, medians. The official uint8 "
              f"{TRADE_OFF_SOURCE} (OS 16) ran in the same rounds: {trade['official_uint8_latency_ms']:.1f} ms "
              f"({trade['official_uint8_latency_ms'] / base:.2f}x the float OS 16 model). Person IoU of the "
              "converted float models with the project runtime (`SegmentationModel`, resize=stretch; float input "
              "x / 127.5 - 1), same protocol as above. Conversion: plain `TFLiteConverter.from_keras_model`, "
              "float32 (no quantization); the dilated convolutions stay CONV_2D / DEPTHWISE_CONV_2D.", "",
              "Raw results:", "", "```json",
              json.dumps({"fidelity": fidelity_rows, "trade_off": trade, "environment": env}, indent=1), "```", ""]
    return "\n".join(lines)


def cpu_name():
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def versions():
    import ai_edge_litert
    import tensorflow as tf

    litert = getattr(ai_edge_litert, "__version__", None)
    if litert is None:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    return f"tensorflow {tf.__version__}, ai-edge-litert {litert}, OpenCV {cv2.__version__}, " \
           f"numpy {np.__version__}, Python {platform.python_version()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--limit", type=int, help="Use only the first N images (a quick trial).")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "import_fidelity.md"))
    args = parser.parse_args()
    from tqdm import tqdm

    shared = Path(args.shared)
    models_dir = shared / "models" / "official"
    dataset = open_dataset(shared / "data" / "pennfudan", format="pennfudan")
    samples = list(tqdm(dataset, desc="reading Penn-Fudan", file=sys.stderr))[: args.limit]
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    fidelity_rows, imported = [], {}
    for name in MODELS:
        model, _, row = fidelity(models_dir / name, tqdm(samples, desc=name, file=sys.stderr), args.threads)
        fidelity_rows.append(row)
        imported[name] = model
        print(json.dumps(row), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        trade = trade_off(imported[TRADE_OFF_SOURCE], samples, models_dir, args.threads, args.rounds, Path(tmp))
    env = {"machine": cpu_name(), "cores": os.cpu_count(),
           "load_before": load_before, "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
           "versions": versions(), "images": len(samples)}
    command = "nice python benchmarks/import_fidelity.py " + " ".join(sys.argv[1:])
    output = Path(args.output)
    write_text_atomic(output, markdown(command.strip(), env, fidelity_rows, trade))
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
