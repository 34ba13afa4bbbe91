"""Recipe: the official VOC DeepLab fine-tuned to CamVid's 11 road-scene classes, decoder off and on, then QAT.

    python benchmarks/finetune_camvid.py --work-dir runs/camvid   # resumable: rerun the same command

Writes benchmarks/finetune_camvid.{md,json} and WORK/models.json: every .tflite the recipe made, with its
output stride, decoder, quantization and val mIOU, so that anyone can score them again (for example on
CamVid's test split, which is kept out of reach here). Every step is an `edge-deeplab` command, printed,
timed and recorded in the report, so the recipe can be repeated by hand:
  1. import the official deeplabv3_mnv2_pascal_quant.tflite (MobileNetV2 depth 1.0, OS 16) at 361x481:
     CamVid's 360x480 frames, one pixel more each way so that both sides are 16k+1 and the corner-aligned
     resizes of the network land on whole feature pixels;
  2. fine-tune it (float, output stride 16) to the 11 classes on train/, once without and once with the
     DeepLabv3+ decoder (a new decoder and a new classifier start untrained), the same schedule for both;
     every epoch is scored on val/ and the best epoch is kept (`best.keras`: model selection on val);
  3. score each best model on val/ at output stride 16 and, the same weights rebuilt, at output stride 8;
  4. convert each to float32 and to post-training full-integer int8 (calibrated on train/ frames);
  5. quantization-aware fine-tuning of each best float model, then full-integer int8 (no calibration);
  6. float32 and QAT int8 at output stride 8 too (`convert --output-stride 8`: the same weights, dilated);
  7. score every .tflite on val/ in the TensorFlow-free runtime, and time them all (2 threads, interleaved).
A step whose output is there is not run again (its scores are cached under WORK/scores/); a training run
that was interrupted resumes at its last finished epoch.

Choices (and why):
- Starting weights: the official depth-1.0 VOC model (8-bit QAT-trained), the strongest MobileNetV2 DeepLab
  published; its 21-class head is replaced by an 11-class one.
- Crops 321x321 (random scale 0.5-2.0, flips), batch 8, Adam 5e-4 with poly decay, 60 epochs: a 10-epoch
  probe of this kind reached val mIOU 60.3 (no class weights, frozen batch norm) and was still rising;
  one epoch takes about 25-40 s here, so 60 epochs stay well inside the 2-hour budget per model.
- Class weights: median frequency (SegNet's weighting, computed on train/): the thin and rare classes
  (Pole, SignSymbol, Pedestrian, Bicyclist) are where the probe lost most.
- Trainable batch norm (batch 8), re-estimated from training batches first (`--recalibrate-bn`, on by
  default): the imported weights carry folded identity batch norms that training mode would break. In
  3-epoch probes on the same schedule (val mIOU after epochs 1-3; a look at val, stated as such): frozen
  42.3 / 49.2 / 50.7, trainable 42.6 / 47.9 / 52.9. QAT keeps batch norm frozen (its statistics are folded
  into the weights it fake-quantizes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from recipe_steps import REPO, Recipe, shared_paths

OFFICIAL = "models/official/deeplabv3_mnv2_pascal_quant.tflite"
CAMVID = "data/camvid"
THIN = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist")
VARIANTS = {"nodecoder": [], "decoder": ["--decoder"]}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", type=Path, default=REPO / "runs" / "finetune_camvid",
                   help="Models, runs, scores and logs (not committed).")
    p.add_argument("--input-size", default="361x481", help="Model input HxW.")
    p.add_argument("--crop-size", default="321")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--class-weights", default="median-frequency")
    p.add_argument("--freeze-bn", action="store_true", help="Keep batch norm frozen in float training too.")
    p.add_argument("--qat-epochs", type=int, default=8)
    p.add_argument("--qat-lr", type=float, default=5e-5)
    p.add_argument("--num-calibration", type=int, default=100, help="train/ frames that calibrate PTQ int8.")
    p.add_argument("--threads", type=int, default=2, help="Interpreter threads for the .tflite scoring.")
    p.add_argument("--variants", default="nodecoder,decoder", help="Which float models: nodecoder, decoder.")
    p.add_argument("--report", type=Path, default=REPO / "benchmarks" / "finetune_camvid")
    return p.parse_args()


def main():
    a = parse_args()
    official, data = shared_paths(OFFICIAL, CAMVID)
    w = a.work_dir.resolve()
    w.mkdir(parents=True, exist_ok=True)
    recipe = Recipe(w / "scores")
    load_before = os.getloadavg()
    data_args = ["--data", data, "--format", "camvid"]
    val = [*data_args, "--split", "val", "--json", "--no-progress"]
    train_args = [*data_args, "--split", "train", "--val-split", "val", "--num-classes", "11",
                  "--crop-size", a.crop_size, "--batch-size", a.batch_size, "--optimizer", "adam",
                  "--class-weights", a.class_weights, "--cache", "--no-progress"]
    imported = w / f"voc_{a.input_size}.keras"
    recipe.run("import", ["import", official, "-o", imported, "--input-size", a.input_size, "--no-verify"],
               done=imported)
    models, scores, fits = [], {}, {}
    for variant in a.variants.split(","):
        run, qat_run = w / f"float_{variant}", w / f"qat_{variant}"
        best = run / "best.keras"
        recipe.run(f"fine-tune float, {variant}",
                   ["train", "--init", imported, *VARIANTS[variant], *train_args, "--epochs", a.epochs,
                    "--lr", a.lr, *(["--freeze-bn"] if a.freeze_bn else []), "--run-dir", run],
                   done=run / "model.keras")
        for os_ in (16, 8):
            scores[f"{variant}_keras_os{os_}"] = recipe.run(
                f"score float {variant} (Keras) at OS {os_}", ["eval", best, *val, "--output-stride", os_],
                score=f"{variant}_keras_os{os_}")
        fits[variant] = recipe.run(f"score float {variant} (Keras) on its training frames",
                                   ["eval", best, *data_args, "--split", "train", "--json", "--no-progress"],
                                   score=f"{variant}_keras_train")
        recipe.run(f"QAT fine-tune, {variant}",
                   ["train", "--qat", "--init", best, *train_args, "--freeze-bn",
                    "--epochs", a.qat_epochs, "--lr", a.qat_lr, "--run-dir", qat_run],
                   done=qat_run / "model_qat.h5")
        conversions = {  # (quantization, output stride): (source, options); OS 8: the same weights, rebuilt
            ("fp32", 16): (best, ["--quantize", "fp32"]),
            ("int8_ptq", 16): (best, ["--quantize", "int8", "--calibration", data / "train",
                                      "--num-calibration", a.num_calibration]),
            ("int8_qat", 16): (qat_run / "best_qat.h5", ["--quantize", "int8"]),
            ("fp32", 8): (best, ["--quantize", "fp32", "--output-stride", 8]),
            ("int8_qat", 8): (qat_run / "best_qat.h5", ["--quantize", "int8", "--output-stride", 8]),
        }
        for (quant, os_), (source, options) in conversions.items():
            tflite = w / "models" / f"camvid_{variant}_os{os_}_{quant}.tflite"
            tflite.parent.mkdir(exist_ok=True)
            recipe.run(f"convert {variant} {quant} OS {os_}", ["convert", source, "-o", tflite, *options],
                       done=tflite)
            key = f"{variant}_{quant}" + ("" if os_ == 16 else f"_os{os_}")
            scores[key] = recipe.run(f"score {variant} {quant} OS {os_} (.tflite)",
                                     ["eval", tflite, *val, "--threads", a.threads], score=key)
            models.append({"path": str(tflite), "output_stride": os_, "decoder": variant == "decoder",
                           "quantization": quant, "source": str(source), "val_miou": scores[key]["miou"],
                           "val_iou": scores[key]["iou"]})
    write_models_json(w / "models.json", models)
    latency_file = w / "latency.json"
    latency = measured_latency(latency_file, models)
    if latency is None:  # not measured yet, or for another set of models: all of them again, side by side
        recipe.run("latency of every .tflite, 2 threads, interleaved",
                   ["bench", *[m["path"] for m in models], "--threads", 2, "--runs", 30, "--json-file", latency_file])
        latency = measured_latency(latency_file, models)
    for m in models:
        m["median_ms_2_threads"] = latency.get(Path(m["path"]).name)
    write_models_json(w / "models.json", models)
    sizes = input_size_check(w / "float_nodecoder" / "best.keras", data, recipe) if "nodecoder" in a.variants else {}
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_before": [round(x, 2) for x in load_before]},
        "settings": {k: str(v) for k, v in vars(a).items()},
        "steps": recipe.steps,
        "scores": {k: {"miou": v["miou"], "iou": v["iou"]} for k, v in scores.items()},
        "histories": {v: json.loads((w / f"float_{v}" / "history.json").read_text()) for v in a.variants.split(",")},
        "fit_on_train": {k: {"miou": v["miou"], "iou": v["iou"]} for k, v in fits.items()},
        "input_size_check": sizes,
        "models": models,
    }
    a.report.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    a.report.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def measured_latency(path: Path, models: list) -> dict | None:
    """{.tflite name: median ms} from a bench --json-file file, if it measured exactly these models."""
    if not path.exists():
        return None
    results = json.loads(path.read_text())["results"]
    if sorted(r["path"] for r in results) != sorted(m["path"] for m in models):
        return None
    return {Path(r["path"]).name: r["median_ms"] for r in results}


def input_size_check(best, data, recipe) -> dict:
    """The no-decoder model's val mIOU at 360x480 (CamVid's own size) against 361x481 (16k+1 on both sides,
    where the corner-aligned resizes land on whole feature pixels): the same weights, rebuilt."""
    cache = recipe.scores / "input_size_check.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from edge_deeplab.data.datasets import open_dataset
    from edge_deeplab.model.predictor import keras_predictor
    from edge_deeplab.runtime.evaluate import evaluate
    from edge_deeplab.model.deeplab import load_model, rebuild

    started = time.perf_counter()
    model, val = load_model(best), open_dataset(data, "camvid", "val")
    result = {f"{h}x{w}": evaluate(keras_predictor(rebuild(model, input_size=(h, w))), val,
                                   progress=False).matrix.miou() for h, w in ((361, 481), (360, 480))}
    recipe.record("input size check (Python: rebuild + evaluate)", "input_size_check()",
                  time.perf_counter() - started)
    cache.write_text(json.dumps(result))
    return result


def write_models_json(path: Path, models: list):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"models": models}, indent=2) + "\n")
    os.replace(tmp, path)


def targets(r) -> list:
    """Issue 12's targets and trade-offs, from the scores and latencies above."""
    s, ms = r["scores"], {(m["decoder"], m["quantization"], m["output_stride"]): m.get("median_ms_2_threads")
                          for m in r["models"]}
    pts = lambda a, b: f"{100 * (a - b):+.2f}"  # noqa: E731
    variants = [v for v in ("nodecoder", "decoder") if f"{v}_fp32" in s]
    best = max(s[f"{v}_fp32"]["miou"] for v in variants)
    lines = ["## Targets and trade-offs", "",
             f"- Best float model, val mIOU >= 70: {'met' if best >= 0.70 else 'NOT met'} ({100 * best:.2f})."]
    for v in variants:
        dec = v == "decoder"
        f32, qat, ptq = (s[f"{v}_{q}"]["miou"] for q in ("fp32", "int8_qat", "int8_ptq"))
        lines.append(f"- {v}: QAT int8 {pts(qat, f32)} points against its float model (target within 0.5: "
                     f"{'met' if qat - f32 >= -0.005 else 'NOT met'}); post-training int8 {pts(ptq, f32)}.")
        if f"{v}_fp32_os8" in s and ms.get((dec, "fp32", 8)) and ms.get((dec, "fp32", 16)):
            lines.append(f"- {v}, output stride 8 vs 16 (the same weights, float32): "
                         f"{pts(s[f'{v}_fp32_os8']['miou'], f32)} mIOU points for "
                         f"{ms[(dec, 'fp32', 8)] / ms[(dec, 'fp32', 16)]:.2f}x the latency "
                         f"({ms[(dec, 'fp32', 8)]:.1f} vs {ms[(dec, 'fp32', 16)]:.1f} ms).")
    if len(variants) == 2:
        on, off = s["decoder_fp32"], s["nodecoder_fp32"]
        thin = ", ".join(f"{n} {pts(on['iou'][n], off['iou'][n])}" for n in THIN)
        cost = (f" for {ms[(True, 'fp32', 16)] / ms[(False, 'fp32', 16)]:.2f}x the latency "
                f"({ms[(True, 'fp32', 16)]:.1f} vs {ms[(False, 'fp32', 16)]:.1f} ms, float32, OS 16)"
                if ms.get((True, "fp32", 16)) and ms.get((False, "fp32", 16)) else "")
        lines.append(f"- The decoder: {pts(on['miou'], off['miou'])} mIOU points{cost}; thin classes: {thin}.")
    for v, fit in r.get("fit_on_train", {}).items():
        lines.append(f"- {v} on its own training frames: mIOU {100 * fit['miou']:.2f} "
                     f"(val {100 * s[f'{v}_fp32']['miou']:.2f}); Pole {100 * fit['iou']['Pole']:.1f}.")
    if r.get("input_size_check"):
        lines.append("- Input size (no decoder, the same weights, Keras): " + ", ".join(
            f"{size} {100 * m:.2f}" for size, m in r["input_size_check"].items()) + ".")
    return lines


def markdown(r) -> str:
    s = r["scores"]
    names = list(next(iter(s.values()))["iou"])
    rows = [(k, k.replace("_", " ")) for k in s]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        "# Fine-tuning the official VOC DeepLab to CamVid's 11 classes",
        "",
        f"Made by `python benchmarks/finetune_camvid.py` (settings: "
        f"{', '.join(f'{k}={v}' for k, v in r['settings'].items() if k not in ('work_dir', 'report'))}).",
        "Trained on CamVid train/ (367 frames), every score on val/ (101 frames; the test split is held out). "
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['platform']}.",
        "",
        "| model | val mIOU | " + " | ".join(names) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in names) + " |",
        *[f"| {label} | {pct(s[k]['miou'])} | " + " | ".join(pct(s[k]['iou'][n]) for n in names) + " |"
          for k, label in rows],
        "",
        f"Thin classes: {', '.join(THIN)}. `keras osN`: the best float epoch in Keras at output stride N (the same "
        "weights; trained at 16). `fp32`, `int8 ptq`, `int8 qat`: .tflite files at output stride 16 in LiteRT.",
        "",
        *targets(r),
        "",
        "## Every .tflite (WORK/models.json), median latency on 2 threads, interleaved in one run",
        "",
        "| file | output stride | decoder | quantization | val mIOU | ms |",
        "| --- | ---: | --- | --- | ---: | ---: |",
        *[f"| {Path(m['path']).name} | {m['output_stride']} | {'on' if m['decoder'] else 'off'} | "
          f"{m['quantization']} | {pct(m['val_miou'])} | {m.get('median_ms_2_threads') or float('nan'):.1f} |"
          for m in r["models"]],
        "",
        "## Training (val mIOU after every epoch)",
        "",
        *[f"- {v} ({sum(h['seconds'] for h in hist) / 60:.0f} min of training steps, without the per-epoch "
          "validation): " + ", ".join(f"{100 * h['val_miou']:.1f}" for h in hist)
          for v, hist in r["histories"].items()],
        "",
        "## Steps (wall-clock seconds; load average after each step)",
        "",
        "| step | seconds | load | command |",
        "| --- | ---: | ---: | --- |",
        *[f"| {st['step']} | {st['seconds']} | {st['load_avg_1min_after']} | `{st['command']}` |"
          for st in r["steps"]],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
