"""The one .tflite reader: identifier, tensors, constants (inline, at a buffer offset, quantized), walks."""
import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb

import tiny_tflite
from edge_deeplab.errors import ModelFileError
from edge_deeplab.tflite.graph import TFLiteGraph, check_identifier, metadata_entries, read_model_file


def _packed(model) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_quantized_weights_are_dequantized_with_their_scale(shared):
    path = shared("models", "official", "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    graph = TFLiteGraph.read(path)
    weights = graph.ops[0]["inputs"][1]  # MobilenetV2/Conv weights, uint8
    scale, zero_point, _ = graph.quantization(weights)
    assert graph.tensors[weights]["dtype"] == "uint8" and graph.tensors[weights]["constant"]
    raw = np.frombuffer(graph._buffer(graph.tensors[weights]["buffer"]), np.uint8)
    expected = (raw.astype(np.float64) - zero_point[0]) * scale[0]
    np.testing.assert_allclose(graph.values(weights).ravel(), expected, rtol=1e-6)


def test_per_channel_quantized_constants(tmp_path):
    values = np.array([[1, -2], [3, 4], [-5, 6]], np.int8)  # 3 output channels
    model = fb.ModelT.InitFromPackedBuf(tiny_tflite.single_op_model(
        fb.BuiltinOperator.ADD, (1, 2), np.float32, (1, 2), np.float32, constants=[values]), 0)
    q = fb.QuantizationParametersT()
    q.scale, q.zeroPoint, q.quantizedDimension = [0.5, 0.25, 2.0], [0, 0, 1], 0
    model.subgraphs[0].tensors[2].quantization = q
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "per_channel.tflite"
    path.write_bytes(bytes(builder.Output()))
    got = TFLiteGraph.read(path).values(2)
    np.testing.assert_allclose(got, [[0.5, -1.0], [0.75, 1.0], [-12.0, 10.0]])


def test_a_constant_stored_after_the_flatbuffer_is_a_constant():
    """Large models keep constants after the FlatBuffer (offset + size); both the report's 'constant'
    flag and the values must see them (the report's reader once missed them)."""
    values = np.array([[1.5, -2.0], [3.0, 4.25]], np.float32)
    model = fb.ModelT.InitFromPackedBuf(tiny_tflite.single_op_model(
        fb.BuiltinOperator.ADD, (2, 2), np.float32, (2, 2), np.float32, constants=[values]), 0)
    flat = _packed(_without_inline_data(model, 1, 1, 1))  # nonzero: stored, as the real ones
    padding = (-len(flat)) % 16
    model = _without_inline_data(model, 1, len(flat) + padding, values.nbytes)
    content = _packed(model)
    assert len(content) == len(flat)  # the offset and size fields are there in both
    content += b"\0" * padding + values.tobytes()
    graph = TFLiteGraph(content, "offset.tflite")
    assert graph.tensors[2]["constant"] and not graph.tensors[0]["constant"]
    np.testing.assert_array_equal(graph.values(2), values)
    with pytest.raises(ModelFileError, match="offset.tflite: truncated TFLite model"):
        TFLiteGraph(content[:-4], "offset.tflite")


def _without_inline_data(model, buffer, offset, size):
    buf = model.buffers[buffer]
    buf.data, buf.offset, buf.size = None, offset, size
    return model


def test_not_a_model_is_one_line(tmp_path):
    with pytest.raises(ModelFileError, match="x.tflite: not a TFLite model"):
        check_identifier(b"PK\x03\x04 not a flatbuffer", "x.tflite")
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty file"):
        read_model_file(tmp_path / "empty.tflite")
    with pytest.raises(ModelFileError, match="is a folder"):
        TFLiteGraph.read(tmp_path)
    broken = tiny_tflite.tanh_logits()[:40]
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        TFLiteGraph(broken, "broken.tflite")


def test_ops_walks_and_metadata_entries():
    content = tiny_tflite.tanh_logits(metadata=b"M001-not-parsed-here")
    graph = TFLiteGraph(content)
    assert graph.op_types == ["TANH"] and graph.op_counts() == {"TANH": 1}
    assert graph.producer == {1: 0} and graph.consumers == {0: [0]}
    assert graph.source_op(1) == 0 and graph.source_op(0) is None and graph.ancestors(1) == {0}
    assert graph.io(graph.inputs) == [{"name": "input", "shape": [1, 16, 16, 3], "dtype": "float32"}]
    assert graph.image_quantization() is None and not graph.is_quantized()
    assert metadata_entries(content) == {"TFLITE_METADATA": b"M001-not-parsed-here"}
    quantized = TFLiteGraph(tiny_tflite.dequantize_logits(dtype=np.int8, scale=0.5, zero_point=3))
    assert quantized.image_quantization() == (0.5, 3) and quantized.is_quantized()
