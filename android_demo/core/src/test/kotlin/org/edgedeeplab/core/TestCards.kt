package org.edgedeeplab.core

/** Model card JSON for tests, in the shape `edge-deeplab export-android` writes. */
fun cardJson(
    inputType: String = "float32",
    inputScale: Double = 0.0,
    inputZeroPoint: Int = 0,
    mean: String = "[127.5, 127.5, 127.5]",
    std: String = "[127.5, 127.5, 127.5]",
    size: Int = 257,
    kind: String = "logits",
    outputType: String = "float32",
    numClasses: Int = 21,
    outputSize: Int = size,
    labels: String = "null",
    background: String = "0",
    version: Int = 1
): String = """
{
  "format": "edge-deeplab-model-card",
  "version": $version,
  "name": "test model",
  "model_file": "model.tflite",
  "model_bytes": 2780176,
  "model_sha256": "00",
  "input": {"height": $size, "width": $size, "channels": 3, "type": "$inputType",
            "scale": $inputScale, "zero_point": $inputZeroPoint, "mean": $mean, "std": $std},
  "output": {"kind": "$kind", "type": "$outputType", "height": $outputSize, "width": $outputSize,
             "num_classes": $numClasses, "scale": 0.0, "zero_point": 0},
  "labels": $labels,
  "background_class": $background
}
"""

fun card(json: String = cardJson()): ModelCard = ModelCard.parse(json)
