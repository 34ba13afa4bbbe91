"""What a converted .tflite is: ops, size, I/O quantization, delegate compatibility, agreement with Keras.

edge_deeplab.export.report.build_report gathers it (at conversion: the GPU check and the agreement need
TensorFlow) as a JSON-able dict that ``save_report`` writes beside the model (``<name>.report.json``),
``read_report`` reads back and ``format_report`` prints. The parts measured here need no TensorFlow:

- op counts, file size, inputs / outputs with their quantization (scale, zero point);
- float ops left inside an int8 model (the float I/O boundary, QUANTIZE / DEQUANTIZE, listed apart);
- GPU delegate compatibility from TFLite's model analyzer (TF's tf.lite.experimental.Analyzer);
- the ops that run outside XNNPACK, found by loading the model into the runtime (ai-edge-litert): ops
  the delegate took have no tensors of their own; each fall-off gets the reason;
- the ops that would fall off NNAPI, from the rules of TFLite's NNAPI delegate, with the Android
  versions concerned;
- agreement with the Keras model on sample images (argmax pixel agreement, logit errors).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from edge_deeplab.errors import ModelFileError
from edge_deeplab.io_utils import write_json_atomic
from edge_deeplab.tflite.graph import TFLiteGraph

# The image as the int8 graph sees it: DeepLab inputs span [-1, 1], so about 2 / 255. A QAT model whose
# input quantizer never saw data gets ~4e-9 (ENGINEERING_NOTES).
EXPECTED_INPUT_SCALE = 2 / 255

_XNNPACK_REASONS = {
    "ARG_MAX": "XNNPACK has no arg-max operator (the TFLite kernel runs it)",
    "GATHER": "XNNPACK has no gather (the TFLite kernel upsamples the class ids)",
    "RESIZE_NEAREST_NEIGHBOR": "the XNNPACK delegate has no nearest-neighbour resize",
    "QUANTIZE": "XNNPACK converts float to 8-bit and requantizes within one 8-bit type, not uint8 <-> int8",
    "SPACE_TO_BATCH_ND": "not supported by the XNNPACK delegate",
    "BATCH_TO_SPACE_ND": "not supported by the XNNPACK delegate",
}
ANDROID_10, ANDROID_11 = 29, 30  # API levels of NNAPI 1.2 and 1.3


def _options(op) -> dict:
    """The few builtin options the rules below look at (op["options"] is the schema's options object)."""
    o = op["options"]
    if o is None:
        return {}
    if hasattr(o, "alignCorners"):  # ResizeBilinearOptionsT, ResizeNearestNeighborOptionsT
        return {"align_corners": bool(o.alignCorners), "half_pixel_centers": bool(o.halfPixelCenters)}
    if hasattr(o, "dilationHFactor"):  # Conv2DOptionsT, DepthwiseConv2DOptionsT
        return {"dilation": max(o.dilationHFactor, o.dilationWFactor)}
    return {}


# ---------------------------------------------------------------------------------------- delegates
def xnnpack_fallback(content: bytes, graph: TFLiteGraph, num_threads=1) -> dict:
    """Which ops the runtime's XNNPACK delegate leaves to the TFLite kernels, measured by loading the model.

    A delegated op's outputs either leave its partition (they are outputs of a DELEGATE node) or are
    internal to it, and then the runtime allocates no memory for them.
    """
    from edge_deeplab.runtime.interpreter import make_interpreter

    interpreter = make_interpreter(content, num_threads)
    nodes = interpreter._get_ops_details()  # original ops, then the delegate nodes that replaced them
    partition_outputs = {t for n in nodes if n["op_name"] == "DELEGATE" for t in n["outputs"]}
    partitions = sum(n["op_name"] == "DELEGATE" for n in nodes)

    def unallocated(tensor):
        try:
            interpreter.get_tensor(tensor)
            return False
        except ValueError:  # "Tensor data is null": XNNPACK keeps it inside its own graph
            return True

    fallback = Counter()
    for node, op in zip(nodes, graph.ops):  # the runtime numbers nodes in the model's op order
        outputs = list(node["outputs"])
        if set(outputs) & partition_outputs or all(unallocated(t) for t in outputs):
            continue
        dtypes = "->".join(dict.fromkeys(graph.tensors[i]["dtype"] for i in op["inputs"][:1] + op["outputs"]))
        fallback[(op["op"], dtypes)] += 1
    return {
        "delegated_ops": len(graph.ops) - sum(fallback.values()), "ops": len(graph.ops), "partitions": partitions,
        "fallback": [{"op": name, "types": types, "count": n,
                      "reason": _XNNPACK_REASONS.get(name, f"not taken by the XNNPACK delegate ({types})")}
                     for (name, types), n in sorted(fallback.items())],
    }


def nnapi_fallback(graph: TFLiteGraph) -> dict:
    """Ops that TFLite's NNAPI delegate would not take (its validation rules), and on which Android versions."""
    found = Counter()
    for op in graph.ops:
        for reason, needs_api in _nnapi_rules(graph, op):
            found[(op["op"], reason, needs_api)] += 1
    issues = [{"op": name, "count": n, "reason": reason,
               "android": "every version" if api is None else f"API < {api} (Android {api - 20} and older)"}
              for (name, reason, api), n in sorted(found.items(), key=lambda kv: str(kv[0]))]
    needs = [api for (_, _, api) in found]
    full = ("no Android version" if None in needs else
            f"API >= {max(needs)} (Android {max(needs) - 19}+)" if needs else "every NNAPI version")
    return {"fall_off": issues, "full_delegation": full,
            "note": "NNAPI is deprecated from Android 15; LiteRT's GPU / NPU acceleration replaces it"}


def _nnapi_rules(graph, op):
    """(reason, the API level that takes it, or None when no Android version does) for one op."""
    name, opts = op["op"], _options(op)
    in_type = graph.tensors[op["inputs"][0]]["dtype"] if op["inputs"] else None
    out_type = graph.tensors[op["outputs"][0]]["dtype"] if op["outputs"] else None
    eight_bit_or_float = ("float32", "float16", "uint8", "int8")
    if name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        if in_type not in eight_bit_or_float:
            yield f"{in_type} input (NNAPI resizes float and 8-bit tensors)", None
        if opts.get("align_corners") or opts.get("half_pixel_centers"):
            yield "align_corners / half_pixel_centers need NNAPI 1.3", ANDROID_11
    elif name == "ARG_MAX":
        if out_type != "int32":
            yield f"{out_type} output (NNAPI's arg-max gives int32)", None
        else:
            yield "arg-max arrived in NNAPI 1.2", ANDROID_10
    elif name == "GATHER":
        yield "gather arrived in NNAPI 1.2", ANDROID_10
    elif name == "RESHAPE" and in_type not in eight_bit_or_float:
        yield f"{in_type} reshape (NNAPI reshapes float and 8-bit tensors)", None
    elif name == "CAST" and "int8" in (in_type, out_type):
        yield "int8 cast needs NNAPI 1.3", ANDROID_11
    elif name == "QUANTIZE" and out_type == "int8":
        yield "int8 output needs NNAPI 1.3", ANDROID_11
    elif name in ("CONV_2D", "DEPTHWISE_CONV_2D") and opts.get("dilation", 1) > 1:
        yield "dilated convolution arrived in NNAPI 1.2", ANDROID_10
    elif name not in _NNAPI_MAPPED:
        yield "not mapped by the NNAPI delegate", None


_NNAPI_MAPPED = {"ADD", "ARG_MAX", "AVERAGE_POOL_2D", "CAST", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
                 "DEQUANTIZE", "GATHER", "MEAN", "MUL", "QUANTIZE", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
                 "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "PAD",
                 "MAX_POOL_2D", "LOGISTIC", "TANH", "SUB", "STRIDED_SLICE", "TRANSPOSE", "SQUEEZE"}


# ------------------------------------------------------------------------------------------ the report
def check_input_scale(graph: TFLiteGraph, source="model"):
    """UserError when a quantized graph's input scale is far from what [-1, 1] inputs give (the sign of a
    QAT model whose quantizers were never trained)."""
    q = graph.image_quantization()
    if q is not None and not EXPECTED_INPUT_SCALE / 4 < q[0] < EXPECTED_INPUT_SCALE * 4:
        raise ModelFileError(f"{source}: input scale {q[0]:.3g} is not near {EXPECTED_INPUT_SCALE:.4f} (inputs in "
                        "[-1, 1]); was the QAT model trained? Fine-tune it (`edge-deeplab train --qat`) first")


def report_path_for(model_path) -> Path:
    path = Path(model_path)
    return path.with_name(path.stem + ".report.json")


def save_report(report: dict, model_path) -> Path:
    target = report_path_for(model_path)
    write_json_atomic(target, report)
    return target


def read_report(model_path) -> dict:
    """The report beside ``model_path``, checked to describe that very file (its SHA-256): a conversion
    killed between writing the report and the model leaves a report of a model that is not there."""
    path, target = Path(model_path), report_path_for(model_path)
    try:
        report = json.loads(target.read_text())
        content = path.read_bytes()
    except FileNotFoundError as e:
        raise ModelFileError(f"{e.filename}: not found") from None
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{target}: cannot read the report ({e})") from None
    if not isinstance(report, dict) or report.get("sha256") != hashlib.sha256(content).hexdigest():
        raise ModelFileError(f"{target}: describes another version of {path.name} (its SHA-256 differs): the "
                        "conversion was interrupted; convert again")
    return report


def format_report(report: dict) -> str:
    """A few lines for the terminal."""
    def io_line(entries):
        return ", ".join(f"{e['dtype']}{e['shape']}" + (f" (scale {e['scale']:.4g}, zero point {e['zero_point']})"
                                                        if e.get("scale") is not None else "") for e in entries)

    ops = ", ".join(f"{name} {n}" for name, n in sorted(report["ops"].items(), key=lambda kv: -kv[1]))
    lines = [f"{report['model']}: {report['size_bytes'] / 1e6:.2f} MB, {report['op_total']} ops ({ops})",
             f"  input  {io_line(report['inputs'])}", f"  output {io_line(report['outputs'])}"]
    if report["float_ops"] is not None:
        inner = report["float_ops"]["inner"]
        lines.append(f"  float ops inside the quantized graph: {', '.join(inner) if inner else 'none'}"
                     + (f" (float I/O boundary: {', '.join(report['float_ops']['boundary'])})"
                        if report["float_ops"]["boundary"] else ""))
    gpu = report["gpu"]
    lines.append("  GPU delegate: " + ("compatible" if gpu["compatible"] else
                                       "; ".join(gpu["warnings"]) or "not reported compatible"))
    x = report["xnnpack"]
    off = "; ".join(f"{f['op']} {f['types']} x{f['count']} ({f['reason']})" for f in x["fallback"]) or "none"
    lines.append(f"  XNNPACK: {x['delegated_ops']}/{x['ops']} ops in {x['partitions']} partition(s); off: {off}")
    n = report["nnapi"]
    off = "; ".join(f"{f['op']} ({f['reason']}; {f['android']})" for f in n["fall_off"]) or "none"
    lines.append(f"  NNAPI: fully delegated on {n['full_delegation']}; off: {off}")
    a = report["agreement"]
    if a is not None:
        extra = (f", logits max |diff| {a['logits_max_abs_error']:.3g}, mean {a['logits_mean_abs_error']:.3g}"
                 if "logits_max_abs_error" in a else "")
        lines.append(f"  agreement with Keras on {a['images']} {a['sample_source']} image(s): "
                     f"{100 * a['label_agreement']:.2f}% of pixels{extra}")
    return "\n".join(lines)
