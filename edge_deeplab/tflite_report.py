"""What a converted .tflite is: ops, size, I/O quantization, delegate compatibility, agreement with Keras.

``build_report`` gathers it as a JSON-able dict that ``save_report`` writes beside the model
(``<name>.report.json``) and ``format_report`` prints:

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

import contextlib
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from edge_deeplab.errors import UserError
from edge_deeplab.io_utils import write_json_atomic

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


# --------------------------------------------------------------------------------------- the graph
def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _names(enum_class):
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


class Graph:
    """The first subgraph of a .tflite: ops (name, inputs, outputs, options) and tensors, without TensorFlow."""

    def __init__(self, content: bytes, source="model"):
        fb = _schema()
        if len(content) < 8 or bytes(content[4:8]) != b"TFL3":
            raise UserError(f"{source}: not a TFLite model (no TFL3 identifier)")
        try:
            model = fb.Model.GetRootAs(content, 0)
            graph = model.Subgraphs(0)
            op_names, type_names = _names(fb.BuiltinOperator), _names(fb.TensorType)
            codes = [max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) for c in
                     (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))]
            self.tensors = [self._tensor(model, graph.Tensors(i), type_names) for i in range(graph.TensorsLength())]
            self.ops = []
            for i in range(graph.OperatorsLength()):
                op = graph.Operators(i)
                self.ops.append({
                    "op": op_names.get(codes[op.OpcodeIndex()], f"CUSTOM_{codes[op.OpcodeIndex()]}"),
                    "inputs": [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else [],
                    "outputs": [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else [],
                    "options": _options(fb, op),
                })
            self.inputs = [int(t) for t in graph.InputsAsNumpy()]
            self.outputs = [int(t) for t in graph.OutputsAsNumpy()]
        except (IndexError, ValueError, TypeError) as e:  # struct errors of a damaged FlatBuffer
            raise UserError(f"{source}: corrupt TFLite model ({e})") from None

    @staticmethod
    def _tensor(model, t, type_names):
        q = t.Quantization()
        scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
        zeros = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
        return {
            "name": t.Name().decode("utf-8", "replace"),
            "shape": [int(s) for s in t.ShapeAsNumpy()] if t.ShapeLength() else [],
            "dtype": type_names.get(t.Type(), str(t.Type())).lower(),
            "scale": float(scales[0]) if scales is not None and len(scales) == 1 else None,
            "zero_point": int(zeros[0]) if zeros is not None and len(zeros) == 1 else None,
            "per_channel": scales is not None and len(scales) > 1,
            "constant": model.Buffers(t.Buffer()).DataLength() > 0,
        }

    def op_counts(self) -> dict:
        return dict(sorted(Counter(op["op"] for op in self.ops).items()))

    def io(self, indices):
        out = []
        for i in indices:
            t = self.tensors[i]
            entry = {"name": t["name"], "shape": t["shape"], "dtype": t["dtype"]}
            if t["scale"] is not None:
                entry.update(scale=t["scale"], zero_point=t["zero_point"])
            out.append(entry)
        return out

    def image_quantization(self):
        """(scale, zero point) of the image as the quantized graph sees it: the input tensor, or the output of
        the QUANTIZE that reads a float input. None for a float graph."""
        t = self.tensors[self.inputs[0]]
        if t["scale"] is not None:
            return t["scale"], t["zero_point"]
        for op in self.ops:
            if op["op"] == "QUANTIZE" and op["inputs"][0] == self.inputs[0]:
                out = self.tensors[op["outputs"][0]]
                return out["scale"], out["zero_point"]
        return None

    def float_ops(self):
        """Ops computing on float32 activations, as (boundary, inner) lists of op names. Boundary ops are the
        QUANTIZE of a float model input and the DEQUANTIZE of a float model output (float I/O)."""
        boundary, inner = [], []
        for op in self.ops:
            tensors = [self.tensors[i] for i in op["inputs"] + op["outputs"] if i >= 0]
            if not any(t["dtype"] == "float32" and not t["constant"] for t in tensors):
                continue
            is_boundary = (op["op"] == "QUANTIZE" and op["inputs"][0] in self.inputs) or \
                          (op["op"] == "DEQUANTIZE" and op["outputs"][0] in self.outputs)
            (boundary if is_boundary else inner).append(op["op"])
        return boundary, inner


def _options(fb, op):
    """The few builtin options the rules below look at."""
    kind = op.BuiltinOptionsType()
    table = op.BuiltinOptions()
    if table is None:
        return {}
    if kind == fb.BuiltinOptions.ResizeBilinearOptions:
        o = fb.ResizeBilinearOptions()
        o.Init(table.Bytes, table.Pos)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    if kind == fb.BuiltinOptions.ResizeNearestNeighborOptions:
        o = fb.ResizeNearestNeighborOptions()
        o.Init(table.Bytes, table.Pos)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    if kind in (fb.BuiltinOptions.Conv2DOptions, fb.BuiltinOptions.DepthwiseConv2DOptions):
        o = fb.Conv2DOptions() if kind == fb.BuiltinOptions.Conv2DOptions else fb.DepthwiseConv2DOptions()
        o.Init(table.Bytes, table.Pos)
        return {"dilation": max(o.DilationHFactor(), o.DilationWFactor())}
    return {}


# ---------------------------------------------------------------------------------------- delegates
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


def xnnpack_fallback(content: bytes, graph: Graph, num_threads=1) -> dict:
    """Which ops the runtime's XNNPACK delegate leaves to the TFLite kernels, measured by loading the model.

    A delegated op's outputs either leave its partition (they are outputs of a DELEGATE node) or are
    internal to it, and then the runtime allocates no memory for them.
    """
    from edge_deeplab.runtime import make_interpreter

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


def nnapi_fallback(graph: Graph) -> dict:
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
    name, opts = op["op"], op["options"]
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


# --------------------------------------------------------------------------------------- agreement
def agreement(content: bytes, keras_model, sample_inputs, num_threads=2) -> dict | None:
    """The .tflite against the Keras export graph on the same normalized inputs ([1, H, W, 3] float32).

    ``label_agreement``: share of pixels with the same class; for logits outputs also the largest and the
    mean absolute logit difference (quantized outputs dequantized).
    """
    if keras_model is None or not sample_inputs:
        return None
    from edge_deeplab.runtime import make_interpreter

    interpreter = make_interpreter(content, num_threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    same = total = 0
    max_err, abs_sum, values = 0.0, 0.0, 0
    for x in sample_inputs:
        interpreter.set_tensor(inp["index"], _quantize(x, inp))
        interpreter.invoke()
        got = interpreter.get_tensor(out["index"])
        want = keras_model(x, training=False).numpy()
        if got.ndim == 4:  # logits
            real = _dequantize(got, out)
            diff = np.abs(real - want)
            max_err, abs_sum, values = max(max_err, float(diff.max())), abs_sum + float(diff.sum()), values + diff.size
            got, want = real.argmax(-1), want.argmax(-1)
        same += int((got == want).sum())
        total += got.size
    result = {"images": len(sample_inputs), "label_agreement": same / total}
    if values:
        result.update(logits_max_abs_error=max_err, logits_mean_abs_error=abs_sum / values)
    return result


def _quantize(x, detail):
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), limits.min, limits.max).astype(detail["dtype"])


def _dequantize(y, detail):
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


# ------------------------------------------------------------------------------------------ the report
def check_input_scale(graph: Graph, source="model"):
    """UserError when a quantized graph's input scale is far from what [-1, 1] inputs give (the sign of a
    QAT model whose quantizers were never trained)."""
    q = graph.image_quantization()
    if q is not None and not EXPECTED_INPUT_SCALE / 4 < q[0] < EXPECTED_INPUT_SCALE * 4:
        raise UserError(f"{source}: input scale {q[0]:.3g} is not near {EXPECTED_INPUT_SCALE:.4f} (inputs in "
                        "[-1, 1]); was the QAT model trained? Fine-tune it (`edge-deeplab train --qat`) first")


def build_report(model_path, keras_model=None, sample_inputs=(), sample_source=None, num_threads=2,
                 conversion=None, content: bytes | None = None) -> dict:
    """The report of the .tflite at ``model_path`` (see the module docstring); of ``content`` when given
    (the model about to be written there). It records the model's SHA-256, so that a report can tell
    whether it still describes the file beside it."""
    path = Path(model_path)
    if content is None:
        try:
            content = path.read_bytes()
        except OSError as e:
            raise UserError(f"{path}: cannot read model ({e.strerror or e})") from None
    graph = Graph(content, path)
    boundary, inner = graph.float_ops()
    quantized = any(t["scale"] is not None and not t["constant"] for t in graph.tensors)
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
        raise UserError(f"{e.filename}: not found") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{target}: cannot read the report ({e})") from None
    if not isinstance(report, dict) or report.get("sha256") != hashlib.sha256(content).hexdigest():
        raise UserError(f"{target}: describes another version of {path.name} (its SHA-256 differs): the "
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
