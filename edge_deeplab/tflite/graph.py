"""The one reader of .tflite files: the FlatBuffer (schema.fbs, identifier "TFL3") read with the schema that
ai-edge-litert ships, no TensorFlow.

``TFLiteGraph`` is the first subgraph: ops (name, inputs, outputs, options), tensors (name, shape, type,
quantization, constant or not), constants as float arrays (dequantized), producers and consumers. The
importer walks it to find the official DeepLab layers, the report counts and classifies its ops, the
converter finds the stem it keeps in float. ``model_object`` / ``metadata_entries`` serve the metadata
writer and reader.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from edge_deeplab.errors import ModelFileError

IDENTIFIER = b"TFL3"
NUMPY_TYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
               "int64": np.int64, "int16": np.int16, "int8": np.int8}
# Ops that hand a value on unchanged for a graph walk: requantization, broadcasting pooled features.
PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _names(enum_class) -> dict:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def check_identifier(content: bytes, source="model"):
    """Refuse bytes that are not a TFLite FlatBuffer (one line, naming ``source``)."""
    if len(content) < 8 or bytes(content[4:8]) != IDENTIFIER:
        raise ModelFileError(f"{source}: not a TFLite model (no TFL3 identifier)")


def read_model_file(path) -> bytes:
    """The bytes of a .tflite file; one line naming it when it is a folder, missing, empty or not a TFLite
    model."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read model ({e.strerror or e})") from None
    if not content:
        raise ModelFileError(f"{path}: empty file, not a TFLite model")
    check_identifier(content, path)
    return content


def model_object(content: bytes, source="model"):
    """The whole model as the schema's object API (ModelT), for reading or for writing back."""
    check_identifier(content, source)
    try:
        return _schema().ModelT.InitFromPackedBuf(content, 0)
    except Exception:  # flatbuffers reports a damaged file with struct / index / unicode errors
        raise ModelFileError(f"{source}: corrupt or truncated TFLite model ({len(content)} bytes whose "
                             "FlatBuffer cannot be parsed)") from None


def metadata_entries(content: bytes) -> dict:
    """{name: bytes} of the model's ``metadata`` list, read lazily (the tensors and ops are not unpacked).
    The TFL3 identifier is optional in .tflite files, so it is not required here."""
    fb = _schema()
    model = fb.Model.GetRootAs(content, 0)
    entries = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        data = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
        if not data and buffer.Size():  # models over 2 GB keep buffers after the FlatBuffer
            data = bytes(content[buffer.Offset():buffer.Offset() + buffer.Size()])
        entries[(entry.Name() or b"").decode("utf-8")] = data
    return entries


class TFLiteGraph:
    """The first subgraph of a .tflite model given as bytes (``source`` names it in errors)."""

    def __init__(self, content: bytes, source="model"):
        self.source, self.data = source, bytes(content)
        self._model = model_object(self.data, source)
        try:
            graph = self._model.subgraphs[0]
            op_names, type_names = _names(_schema().BuiltinOperator), _names(_schema().TensorType)
            self.ops = [self._op(op, op_names) for op in graph.operators or []]
            self.tensors = [self._tensor(t, type_names) for t in graph.tensors or []]
            self.inputs = [int(t) for t in graph.inputs]
            self.outputs = [int(t) for t in graph.outputs]
        except (IndexError, TypeError, AttributeError) as e:
            raise ModelFileError(f"{source}: corrupt TFLite model ({e})") from None
        self.op_types = [op["op"] for op in self.ops]
        self.producer, self.consumers = {}, {}
        for i, op in enumerate(self.ops):
            for t in op["outputs"]:
                self.producer[t] = i
            for t in op["inputs"]:
                if t >= 0:
                    self.consumers.setdefault(t, []).append(i)

    @classmethod
    def read(cls, path) -> "TFLiteGraph":
        return cls(read_model_file(path), Path(path))

    def _op(self, op, op_names) -> dict:
        code = self._model.operatorCodes[op.opcodeIndex]
        number = max(code.builtinCode, code.deprecatedBuiltinCode)
        return {"op": op_names.get(number, f"CUSTOM_{number}"),
                "inputs": [int(t) for t in (op.inputs if op.inputs is not None else [])],
                "outputs": [int(t) for t in (op.outputs if op.outputs is not None else [])],
                "options": op.builtinOptions}  # the schema's options object (e.g. Conv2DOptionsT), or None

    def _tensor(self, t, type_names) -> dict:
        q = t.quantization
        scales = q.scale if q is not None and q.scale is not None and len(q.scale) else None
        zeros = q.zeroPoint if scales is not None and q.zeroPoint is not None else None
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "")
        return {
            "name": name,
            "shape": [int(s) for s in (t.shape if t.shape is not None else [])],
            "dtype": type_names.get(t.type, str(t.type)).lower(),
            "scale": float(scales[0]) if scales is not None and len(scales) == 1 else None,
            "zero_point": int(zeros[0]) if zeros is not None and len(zeros) == 1 else None,
            "per_channel": scales is not None and len(scales) > 1,
            "constant": self._buffer(t.buffer) is not None,
            "buffer": int(t.buffer),
        }

    # ------------------------------------------------------------------------------- tensors
    def name(self, tensor: int) -> str:
        """The tensor's name up to the first ';' (converters append the names of fused ops)."""
        return self.tensors[tensor]["name"].split(";")[0]

    def shape(self, tensor: int) -> tuple:
        return tuple(self.tensors[tensor]["shape"])

    def numpy_type(self, tensor: int):
        return NUMPY_TYPES.get(self.tensors[tensor]["dtype"])

    def quantization(self, tensor: int):
        """(scales, zero points, axis) of a quantized tensor as arrays, or None."""
        tensor_t = self._model.subgraphs[0].tensors[tensor]
        q = tensor_t.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        return np.asarray(q.scale, np.float64), np.asarray(q.zeroPoint, np.float64), int(q.quantizedDimension)

    def values(self, tensor: int) -> np.ndarray:
        """A constant tensor as float32, dequantized (also through a DEQUANTIZE op, as fp16 models have)."""
        raw = self._buffer(self.tensors[tensor]["buffer"])
        if raw is None:
            op = self.producer.get(tensor)
            if op is not None and self.op_types[op] == "DEQUANTIZE":
                return self.values(self.ops[op]["inputs"][0])
            raise ModelFileError(f"{self.source}: tensor {self.name(tensor)} is not a constant")
        dtype, shape = self.numpy_type(tensor), self.shape(tensor)
        if dtype is None or len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
            raise ModelFileError(f"{self.source}: constant {self.name(tensor)} is damaged or of an unsupported type")
        values = np.frombuffer(raw, dtype).reshape(shape)
        quant = self.quantization(tensor)
        if quant is None or np.issubdtype(dtype, np.floating):
            return values.astype(np.float32)
        scale, zero_point, axis = quant
        if len(scale) > 1:  # per-channel: one scale per slice along the quantized dimension
            scale = scale.reshape([-1 if d == axis else 1 for d in range(values.ndim)])
            zero_point = zero_point.reshape(scale.shape) if len(zero_point) > 1 else zero_point
        return ((values.astype(np.float64) - zero_point) * scale).astype(np.float32)

    def _buffer(self, index) -> bytes | None:
        buf = self._model.buffers[index]
        if buf.data is not None and len(buf.data):
            return np.asarray(buf.data, np.uint8).tobytes()
        if buf.offset and buf.size:  # large models keep constants after the FlatBuffer
            if buf.offset + buf.size > len(self.data):
                raise ModelFileError(f"{self.source}: truncated TFLite model (a constant lies past the end of the file)")
            return self.data[buf.offset:buf.offset + buf.size]
        return None

    # ------------------------------------------------------------------------------- walking
    def source_op(self, tensor: int, through=PASS_THROUGH):
        """The op that computes ``tensor``, looking through ``through`` ops; None for a graph input."""
        op = self.producer.get(tensor)
        while op is not None and self.op_types[op] in through:
            op = self.producer.get(self.ops[op]["inputs"][0])
        return op

    def next_ops(self, tensor: int, through=PASS_THROUGH) -> list:
        """The ops that consume ``tensor``, looking through ``through`` ops."""
        found = []
        for op in self.consumers.get(tensor, []):
            if self.op_types[op] in through:
                found += self.next_ops(self.ops[op]["outputs"][0], through)
            else:
                found.append(op)
        return found

    def ancestors(self, tensor: int) -> set:
        """Every op the value of ``tensor`` depends on."""
        seen, stack = set(), [tensor]
        while stack:
            op = self.producer.get(stack.pop())
            if op is not None and op not in seen:
                seen.add(op)
                stack += [t for t in self.ops[op]["inputs"] if t >= 0]
        return seen

    # ------------------------------------------------------------------------------- summaries
    def op_counts(self) -> dict:
        return dict(sorted(Counter(self.op_types).items()))

    def io(self, indices) -> list:
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

    def is_quantized(self) -> bool:
        return any(t["scale"] is not None and not t["constant"] for t in self.tensors)
