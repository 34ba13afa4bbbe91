#!/usr/bin/env bash
# The two models of benchmarks/study_finetuned.md: the official depth-0.5 VOC weights fine-tuned to
# Penn-Fudan persons (kept as VOC class 15) on the even-numbered photos, without and with the decoder,
# by the same recipe. About 6 and 11 minutes on the 2-core reference machine.
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data/pennfudan/PennFudanPed
edge-deeplab import ../shared/models/official/deeplabv3_257_mv_gpu.tflite -o runs/study/voc257.keras --no-verify
for dec in no-decoder decoder; do
  edge-deeplab train --init runs/study/voc257.keras --$dec --data "$D" --format pennfudan --subset 0::2 \
    --label-map 1:15 --batch-size 8 --crop-size 257 --max-resize 257 --min-scale 0.75 --max-scale 1.5 \
    --freeze-bn --train-output-stride 16 --optimizer adam --lr 0.0003 --cache --no-progress --epochs 60 \
    --run-dir runs/study/$dec
done
