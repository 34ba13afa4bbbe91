#!/usr/bin/env bash
# The main job end to end on built-in defaults (run by `make demo`):
#   import the official weights (or build) -> convert to float32 and full int8 -> benchmark -> table.
# The official DeepLabv3 MobileNetV2 weights come from the preset's URL (SHA-256 checked, cached), else
# from ../shared when it is beside the clone, else the untrained network is built; one line says which
# and what that means for the numbers printed below.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-models/artifacts/quickstart}
SHARED=${SHARED:-../shared}
PRESET=mobilenetv2_dm1_os16_513
OFFICIAL=$SHARED/models/official/deeplabv3_mnv2_pascal_quant.tflite
PHOTOS=$SHARED/data/pennfudan/PennFudanPed/PNGImages
mkdir -p "$OUT"
[ -d "$SHARED/models/official" ] && export EDGE_DEEPLAB_OFFICIAL_DIR=${EDGE_DEEPLAB_OFFICIAL_DIR:-$SHARED/models/official}
VERIFY=()
[ -d "$PHOTOS" ] && VERIFY=(--verify-images "$PHOTOS" --max-verify-images 4)

echo "== import the official DeepLabv3 MobileNetV2 (depth 1.0, OS 16, 513) weights"
if edge-deeplab import "$PRESET" -o "$OUT/deeplab.keras" "${VERIFY[@]}" > "$OUT/import.txt" 2> "$OUT/import.err"; then
  cat "$OUT/import.txt"
  echo "== weights: official ($(head -1 "$OUT/import.txt" | sed 's/^official weights from //')): the accuracy and" \
       "agreement figures below are those of the real model"
  if [ -d "$PHOTOS" ]; then CALIBRATION=(--calibration "$PHOTOS" --num-calibration 32); else CALIBRATION=(--synthetic-calibration); fi
  BASELINE=()
  [ -f "$OFFICIAL" ] && BASELINE=(--baseline "$OFFICIAL")
else
  echo "== weights: none to be had ($(tail -1 "$OUT/import.err")); building the untrained network instead:" \
       "its latencies are real, but its accuracy is nil and its int8 'agreement with Keras' a few percent (random" \
       "weights give almost tied class scores, which int8 rounding reorders), so read only the latencies"
  edge-deeplab build --preset "$PRESET" -o "$OUT/deeplab.keras"
  CALIBRATION=(--synthetic-calibration)
  BASELINE=()
fi

echo "== convert: float32 logits, and full int8 with the fast labels head"
edge-deeplab convert "$OUT/deeplab.keras" --quantize fp32 -o "$OUT/deeplab_fp32.tflite"
edge-deeplab convert "$OUT/deeplab.keras" --quantize int8 --io uint8 --head labels --argmax-stride 4 \
  "${CALIBRATION[@]}" -o "$OUT/deeplab_int8.tflite"

echo "== benchmark (interleaved, medians)"
edge-deeplab bench "$OUT/deeplab_fp32.tflite" "$OUT/deeplab_int8.tflite" "${BASELINE[@]}" \
  --threads 2 --runs 20 --warmup 3 --no-memory --markdown "$OUT/bench.md"
