"""Tiny real .tflite models for tests, written with the TFLite schema that ai-edge-litert ships (no TensorFlow).

Each model has one op, so what the runtime must return is known exactly: the 3 "classes" are the
R, G, B channels of the (normalized) input, so a pure red pixel is class 0 and a pure blue one class 2.
"""
import io
import zipfile

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

DTYPES = {np.float32: fb.TensorType.FLOAT32, np.uint8: fb.TensorType.UINT8, np.int8: fb.TensorType.INT8,
          np.int64: fb.TensorType.INT64, np.int32: fb.TensorType.INT32}


def _tensor(name, shape, dtype, buffer=0, quant=None):
    t = fb.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), DTYPES[dtype], buffer
    if quant:
        q = fb.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(quant[0])], [int(quant[1])]
        t.quantization = q
    return t


def single_op_model(op, in_shape, in_dtype, out_shape, out_dtype, in_quant=None, out_quant=None,
                    options=None, constants=(), metadata: bytes = None) -> bytes:
    """A model: input -> op(input, *constants) -> output. ``constants`` are numpy arrays."""
    buffers = [fb.BufferT()]  # buffer 0 is the empty sentinel
    tensors = [_tensor("input", in_shape, in_dtype, quant=in_quant),
               _tensor("output", out_shape, out_dtype, quant=out_quant)]
    for k, value in enumerate(constants):
        buf = fb.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(value).tobytes(), np.uint8)
        buffers.append(buf)
        tensors.append(_tensor(f"const{k}", value.shape, value.dtype.type, buffer=len(buffers) - 1))
    code = fb.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = op, min(op, 127), 1
    operator = fb.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0] + list(range(2, len(tensors))), [1]
    if options is not None:
        operator.builtinOptionsType, operator.builtinOptions = options
    graph = fb.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [operator]
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], buffers
    if metadata is not None:
        buf = fb.BufferT()
        buf.data = np.frombuffer(metadata, np.uint8)
        buffers.append(buf)
        entry = fb.MetadataT()
        entry.name, entry.buffer = "TFLITE_METADATA", len(buffers) - 1
        model.metadata = [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tanh_logits(h=16, w=16, metadata=None):
    """float [1,h,w,3] -> tanh -> float logits [1,h,w,3] (tanh keeps the channel order)."""
    return single_op_model(fb.BuiltinOperator.TANH, (1, h, w, 3), np.float32, (1, h, w, 3), np.float32,
                           metadata=metadata)


def dequantize_logits(h=16, w=16, dtype=np.int8, scale=1 / 128, zero_point=0):
    """Quantized image input -> dequantize -> float logits: the logits are the input as the model sees it."""
    return single_op_model(fb.BuiltinOperator.DEQUANTIZE, (1, h, w, 3), dtype, (1, h, w, 3), np.float32,
                           in_quant=(scale, zero_point))


def quantized_logits(h=16, w=16, dtype=np.uint8, scale=1 / 128, zero_point=128):
    """float input -> quantize -> uint8 / int8 logits."""
    return single_op_model(fb.BuiltinOperator.QUANTIZE, (1, h, w, 3), np.float32, (1, h, w, 3), dtype,
                           out_quant=(scale, zero_point))


def argmax_labels(h=16, w=16):
    """float input -> ARG_MAX over channels -> int64 class ids [1,h,w] (like the official 513 models)."""
    options = fb.ArgMaxOptionsT()
    options.outputType = fb.TensorType.INT64
    return single_op_model(fb.BuiltinOperator.ARG_MAX, (1, h, w, 3), np.float32, (1, h, w), np.int64,
                           options=(fb.BuiltinOptions.ArgMaxOptions, options),
                           constants=[np.array([3], np.int32)])


def pooled_logits(h=16, w=16):
    """float input -> 2x2 average pool, stride 2 -> logits at half resolution."""
    options = fb.Pool2DOptionsT()
    options.padding, options.strideW, options.strideH, options.filterWidth, options.filterHeight = \
        fb.Padding.VALID, 2, 2, 2, 2
    return single_op_model(fb.BuiltinOperator.AVERAGE_POOL_2D, (1, h, w, 3), np.float32,
                           (1, h // 2, w // 2, 3), np.float32, options=(fb.BuiltinOptions.Pool2DOptions, options))


def not_segmentation():
    """A classifier-shaped model: float [1,6] -> tanh -> [1,6]."""
    return single_op_model(fb.BuiltinOperator.TANH, (1, 6), np.float32, (1, 6), np.float32)


def metadata_flatbuffer(name="tiny", mean=(127.5,), std=(127.5,), label_file="labels.txt"):
    """A TFLITE_METADATA FlatBuffer (metadata_schema.fbs) as the TFLite metadata writers lay it out."""
    b = flatbuffers.Builder(256)

    def vector(offsets):
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def floats(values):
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(v)
        return b.EndVector()

    mean_off, std_off = floats(mean), floats(std)
    b.StartObject(2)  # NormalizationOptions
    b.PrependUOffsetTRelativeSlot(0, mean_off, 0)
    b.PrependUOffsetTRelativeSlot(1, std_off, 0)
    norm = b.EndObject()
    b.StartObject(2)  # ProcessUnit
    b.PrependUint8Slot(0, 1, 0)  # options_type = NormalizationOptions
    b.PrependUOffsetTRelativeSlot(1, norm, 0)
    unit = b.EndObject()
    units = vector([unit])
    b.StartObject(7)  # input TensorMetadata
    b.PrependUOffsetTRelativeSlot(4, units, 0)
    input_meta = b.EndObject()

    file_name = b.CreateString(label_file)
    b.StartObject(4)  # AssociatedFile
    b.PrependUOffsetTRelativeSlot(0, file_name, 0)
    b.PrependInt8Slot(2, 2, 0)  # TENSOR_AXIS_LABELS
    label = b.EndObject()
    files = vector([label])
    b.StartObject(7)  # output TensorMetadata
    b.PrependUOffsetTRelativeSlot(6, files, 0)
    output_meta = b.EndObject()

    inputs, outputs = vector([input_meta]), vector([output_meta])
    b.StartObject(7)  # SubGraphMetadata
    b.PrependUOffsetTRelativeSlot(2, inputs, 0)
    b.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraph = b.EndObject()
    subgraphs, model_name = vector([subgraph]), b.CreateString(name)
    b.StartObject(8)  # ModelMetadata
    b.PrependUOffsetTRelativeSlot(0, model_name, 0)
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    b.Finish(b.EndObject(), file_identifier=b"M001")
    return bytes(b.Output())


def with_associated_files(model: bytes, files: dict) -> bytes:
    """The model with a zip of ``files`` (name -> text) appended, as the metadata populator packs them."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return model + archive.getvalue()


def red_blue_image(h=24, w=32):
    """BGR image: left half pure red (class 0 for the tiny models), right half pure blue (class 2)."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2, 2] = 255
    image[:, w // 2:, 0] = 255
    return image


def red_blue_labels(h=24, w=32):
    labels = np.zeros((h, w), np.uint8)
    labels[:, w // 2:] = 2
    return labels
