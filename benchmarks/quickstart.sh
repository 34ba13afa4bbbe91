#!/usr/bin/env bash
# The main job end to end on built-in defaults (run by `make demo`):
#   build (or import the official weights) -> convert to float32 and full int8 -> benchmark -> table.
# Nothing is downloaded. With ../shared beside the repository the official DeepLabv3 MobileNetV2
# weights are imported and int8 is calibrated on real photos; without it the built (untrained)
# network is used with synthetic calibration, which measures latency but not accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-models/artifacts/quickstart}
SHARED=${SHARED:-../shared}
OFFICIAL=$SHARED/models/official/deeplabv3_mnv2_pascal_quant.tflite
PHOTOS=$SHARED/data/pennfudan/PennFudanPed/PNGImages
mkdir -p "$OUT"

if [ -f "$OFFICIAL" ]; then
  echo "== import the official DeepLabv3 MobileNetV2 (depth 1.0, OS 16, 513) weights"
  edge-deeplab import "$OFFICIAL" -o "$OUT/deeplab.keras" --verify-images "$PHOTOS" --max-verify-images 4
  CALIBRATION=(--calibration "$PHOTOS" --num-calibration 32)
  BASELINE=(--baseline "$OFFICIAL")
else
  echo "== build DeepLabv3 MobileNetV2 (depth 1.0, OS 16, 513) with untrained weights (no ../shared here)"
  edge-deeplab build --preset mobilenetv2_dm1_os16_513 -o "$OUT/deeplab.keras"
  CALIBRATION=(--synthetic-calibration)
  BASELINE=()
fi

echo "== convert: float32 logits, and full int8 with the fast labels head"
edge-deeplab convert "$OUT/deeplab.keras" --quantize none -o "$OUT/deeplab_fp32.tflite"
edge-deeplab convert "$OUT/deeplab.keras" --quantize int8 --io uint8 --output labels --argmax-stride 4 \
  "${CALIBRATION[@]}" -o "$OUT/deeplab_int8.tflite"

echo "== benchmark (interleaved, medians)"
edge-deeplab bench "$OUT/deeplab_fp32.tflite" "$OUT/deeplab_int8.tflite" "${BASELINE[@]}" \
  --threads 2 --runs 20 --warmup 3 --no-memory --markdown "$OUT/bench.md"
