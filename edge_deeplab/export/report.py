"""The report of a converted .tflite (see edge_deeplab.tflite.report), built at conversion: it adds what
needs TensorFlow to what the TF-free report measures, TFLite's GPU compatibility check (TF's model
analyzer) and the agreement of the .tflite with the Keras model it came from.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np

from edge_deeplab.tflite.graph import TFLiteGraph, read_model_file
from edge_deeplab.tflite.quantization import dequantize_detail, quantize_detail
from edge_deeplab.tflite.report import nnapi_fallback, xnnpack_fallback


def build_report(model_path, keras_model=None, sample_inputs=(), sample_source=None, num_threads=2,
                 conversion=None, content: bytes | None = None) -> dict:
    """The report of the .tflite at ``model_path`` (see the module docstring); of ``content`` when given
    (the model about to be written there). It records the model's SHA-256, so that a report can tell
    whether it still describes the file beside it."""
    path = Path(model_path)
    content = read_model_file(path) if content is None else content
    graph = TFLiteGraph(content, path)
    boundary, inner = graph.float_ops()
    quantized = graph.is_quantized()
    image_q = graph.image_quantization()
    report = {
        "model": path.name,
        "size_bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "conversion": conversion,
        "ops": graph.op_counts(),
        "op_total": len(graph.ops),
        "inputs": graph.io(graph.inputs),
        "outputs": graph.io(graph.outputs),
        "image_quantization": None if image_q is None else {"scale": image_q[0], "zero_point": image_q[1]},
        "space_to_batch": any(op["op"] in ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND") for op in graph.ops),
        "float_ops": {"boundary": boundary, "inner": inner} if quantized else None,
        "gpu": gpu_compatibility(content),
        "xnnpack": xnnpack_fallback(content, graph, num_threads),
        "nnapi": nnapi_fallback(graph),
        "agreement": agreement(content, keras_model, sample_inputs, num_threads),
    }
    if report["agreement"] is not None:
        report["agreement"]["sample_source"] = sample_source
    return report


def gpu_compatibility(content: bytes) -> dict:
    """TFLite's GPU delegate compatibility check (the model analyzer prints it; captured here)."""
    import tensorflow as tf

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    lines = out.getvalue().splitlines()
    warnings = [line.split("GPU COMPATIBILITY WARNING:", 1)[1].strip() for line in lines
                if "GPU COMPATIBILITY WARNING" in line]
    compatible = any("looks compatible with GPU delegate" in line for line in lines)
    return {"compatible": compatible and not warnings, "warnings": warnings,
            "note": "the GPU delegate runs int8 models in float: fp16 is the GPU format"}


def agreement(content: bytes, keras_model, sample_inputs, num_threads=2) -> dict | None:
    """The .tflite against the Keras export graph on the same normalized inputs ([1, H, W, 3] float32).

    ``label_agreement``: share of pixels with the same class; for logits outputs also the largest and the
    mean absolute logit difference (quantized outputs dequantized).
    """
    if keras_model is None or not sample_inputs:
        return None
    from edge_deeplab.runtime.interpreter import make_interpreter

    interpreter = make_interpreter(content, num_threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    same = total = 0
    max_err, abs_sum, values = 0.0, 0.0, 0
    for x in sample_inputs:
        interpreter.set_tensor(inp["index"], quantize_detail(x, inp))
        interpreter.invoke()
        got = interpreter.get_tensor(out["index"])
        want = keras_model(x, training=False).numpy()
        if got.ndim == 4:  # logits
            real = dequantize_detail(got, out)
            diff = np.abs(real - want)
            max_err, abs_sum, values = max(max_err, float(diff.max())), abs_sum + float(diff.sum()), values + diff.size
            got, want = real.argmax(-1), want.argmax(-1)
        same += int((got == want).sum())
        total += got.size
    result = {"images": len(sample_inputs), "label_agreement": same / total}
    if values:
        result.update(logits_max_abs_error=max_err, logits_mean_abs_error=abs_sum / values)
    return result
