"""A picture of CamVid val frames: input, ground truth, and the predictions of the recipe's models.

    python benchmarks/camvid_frames.py                      # writes benchmarks/camvid_val_frames.png

Reads WORK/models.json of benchmarks/finetune_camvid.py and shows, for a few val frames, the frame, its
labels (Unlabelled in black) and the float32 .tflite of each float model (decoder off, decoder on), in
CamVid's colours, run by the TensorFlow-free runtime.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np

from edge_deeplab.data.datasets import IGNORE_LABEL, open_dataset
from edge_deeplab.runtime.evaluate import tflite_predictor
from edge_deeplab.runtime.visualize import palette_for

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_DEEPLAB_SHARED", REPO.parent / "shared"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", type=Path, default=REPO / "runs" / "finetune_camvid")
    p.add_argument("--frames", default="5,30,55,80", help="Positions in the sorted val frames.")
    p.add_argument("--quantization", default="fp32", help="Which .tflite of each model (fp32, int8_ptq, int8_qat).")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "camvid_val_frames.png")
    a = p.parse_args()
    models = [m for m in json.loads((a.work_dir / "models.json").read_text())["models"]
              if m["quantization"] == a.quantization and m["output_stride"] == 16]
    models.sort(key=lambda m: m["decoder"])
    val = open_dataset(SHARED / "data" / "camvid", "camvid", "val")
    palette = palette_for(val.class_names).rgb.copy()
    palette[IGNORE_LABEL] = 0
    predictors = [(f"decoder {'on' if m['decoder'] else 'off'} (val mIOU {100 * m['val_miou']:.1f})",
                   tflite_predictor(m["path"], num_threads=2)) for m in models]
    rows = []
    for index in (int(i) for i in a.frames.split(",")):
        sample = val.load(*val.pairs[index])
        cells = [("frame " + sample.image_path.stem, sample.image), ("ground truth", palette[sample.label])]
        cells += [(name, palette[pred.predict(sample.image)]) for name, pred in predictors]
        rows.append(np.hstack([_captioned(image, text) for text, image in cells]))
    legend = _legend(val.class_names, palette, rows[0].shape[1])
    picture = np.vstack([*rows, legend])
    cv2.imwrite(str(a.output), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"wrote {a.output}")


def _captioned(image_rgb, text, width=320):
    h = image_rgb.shape[0] * width // image_rgb.shape[1]
    image = cv2.resize(image_rgb, (width, h), interpolation=cv2.INTER_NEAREST)
    bar = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, image, np.full((4, width, 3), 255, np.uint8)])


def _legend(names, palette, width):
    bar = np.full((30, width, 3), 255, np.uint8)
    x = 6
    for i, name in enumerate(names):
        cv2.rectangle(bar, (x, 8), (x + 14, 22), tuple(int(c) for c in palette[i]), -1)
        cv2.putText(bar, name, (x + 18, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        x += 24 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)[0][0]
    return bar


if __name__ == "__main__":
    main()
