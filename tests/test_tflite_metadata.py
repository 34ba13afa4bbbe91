"""TFLite metadata, read and written: the official models' metadata, the official layout of ours, the
round trip, and MediaPipe's ImageSegmenter running the models as they are."""
import io
import zipfile

import cv2
import numpy as np
import pytest

import tiny_tflite
from edge_deeplab.errors import UserError
from edge_deeplab.tflite.metadata import (LABEL_FILE, SegmenterMetadata, add_metadata, build_metadata,
                                          metadata_buffer, parse_labels, read_metadata, with_segmenter_metadata)

OFFICIAL = ("models", "official")


def test_reads_official_metadata(shared):
    model = shared(*OFFICIAL, "deeplabv3_257_mv_gpu_metadata.tflite").read_bytes()
    voc = parse_labels(shared(*OFFICIAL, "pascal_voc_segmentation_labels.txt").read_text())
    meta = read_metadata(model)
    assert meta.name == "DeepLabV3"
    assert meta.norm_mean == [127.5] and meta.norm_std == [127.5]
    assert meta.label_file == "labelmap.txt"
    assert len(meta.labels) == len(voc) == 21
    assert meta.labels[0] == "background" and meta.labels[15] == "person"


def test_model_without_metadata_has_none(shared):
    assert read_metadata(shared(*OFFICIAL, "deeplabv3_257_mv_gpu.tflite").read_bytes()) is None
    assert read_metadata(tiny_tflite.tanh_logits()) is None


def test_reads_metadata_written_by_hand():
    labels = ["sky", "road", "car"]
    meta_fb = tiny_tflite.metadata_flatbuffer(name="tiny seg", mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0))
    model = tiny_tflite.with_associated_files(tiny_tflite.tanh_logits(metadata=meta_fb),
                                              {"labels.txt": "\n".join(labels) + "\n"})
    assert metadata_buffer(model) == meta_fb
    meta = read_metadata(model)
    assert meta.name == "tiny seg"
    assert meta.norm_mean == [1.0, 2.0, 3.0] and meta.norm_std == [4.0, 5.0, 6.0]
    assert meta.labels == labels


def test_label_file_missing_from_the_model_is_a_clear_error():
    model = tiny_tflite.tanh_logits(metadata=tiny_tflite.metadata_flatbuffer(label_file="labels.txt"))
    with pytest.raises(UserError, match="labels.txt"):
        read_metadata(model, source="m.tflite")


def test_corrupt_metadata_is_a_clear_error():
    garbage = b"\xff\xff\xff\x7fM001" + bytes(8)  # right identifier, root offset far past the end
    with pytest.raises(UserError, match="m.tflite: corrupt TFLite metadata"):
        read_metadata(tiny_tflite.tanh_logits(metadata=garbage), source="m.tflite")


def test_parse_labels_stops_at_the_first_blank_line():
    assert parse_labels("\nbackground\n person \n\nnotes about the file\n") == ["background", "person"]


def test_damaged_metadata_gives_a_result_or_a_user_error_never_a_crash():
    meta_fb = tiny_tflite.metadata_flatbuffer()
    model = tiny_tflite.with_associated_files(tiny_tflite.tanh_logits(metadata=meta_fb), {"labels.txt": "a\nb\nc\n"})
    start = model.index(meta_fb)
    rng = np.random.default_rng(0)
    for i in range(400):  # damage the metadata FlatBuffer, or anywhere (the appended zip too)
        low, high = (start, start + len(meta_fb)) if i % 2 else (0, len(model))
        damaged = bytearray(model)
        for pos in rng.integers(low, high, size=rng.integers(1, 6)):
            damaged[pos] = rng.integers(0, 256)
        try:
            read_metadata(bytes(damaged), source="m.tflite")
        except UserError as e:
            assert str(e).startswith("m.tflite: ")


# ----------------------------------------------------------------------------------------- writing
RGB = ["red", "green", "blue"]  # the tiny tanh model's classes are the normalized R, G, B channels


def _schema():
    return pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated",
                               reason="mediapipe is not installed (its generated metadata schema decodes the buffer)")


def _decode(buffer):
    schema = _schema()
    return schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAsModelMetadata(buffer, 0))


def _tanh_model_with_metadata(**fields):
    meta = SegmenterMetadata(name="tiny rgb", labels=RGB, version="7", **fields)
    return with_segmenter_metadata(tiny_tflite.tanh_logits(16, 16), meta)


def test_buffer_has_the_fields_of_the_official_metadata(shared):
    official_model = shared("models", "official", "deeplabv3_257_mv_gpu_metadata.tflite").read_bytes()
    official = _decode(metadata_buffer(official_model))
    ours = _decode(build_metadata(SegmenterMetadata(name="deeplab", labels=RGB, version="1", description="d")))
    assert build_metadata(SegmenterMetadata(name="x", labels=RGB))[4:8] == b"M001"
    assert (ours.name, ours.version, ours.description) == (b"deeplab", b"1", b"d")
    assert len(ours.subgraphMetadata) == len(official.subgraphMetadata) == 1
    (o_in,), (o_out,) = (official.subgraphMetadata[0].inputTensorMetadata,
                         official.subgraphMetadata[0].outputTensorMetadata)
    (in_,), (out,) = ours.subgraphMetadata[0].inputTensorMetadata, ours.subgraphMetadata[0].outputTensorMetadata
    # input: an RGB image, normalized by (x - 127.5) / 127.5, values in [-1, 1]
    assert in_.content.contentPropertiesType == o_in.content.contentPropertiesType
    assert in_.content.contentProperties.colorSpace == o_in.content.contentProperties.colorSpace
    (unit,), (o_unit,) = in_.processUnits, o_in.processUnits
    assert unit.optionsType == o_unit.optionsType
    np.testing.assert_array_equal(unit.options.mean, o_unit.options.mean)
    np.testing.assert_array_equal(unit.options.std, o_unit.options.std)
    np.testing.assert_array_equal(in_.stats.min, o_in.stats.min)
    np.testing.assert_array_equal(in_.stats.max, o_in.stats.max)
    # output: grayscale masks over dimensions 1..2, with the class names as axis labels
    assert out.content.contentPropertiesType == o_out.content.contentPropertiesType
    assert out.content.contentProperties.colorSpace == o_out.content.contentProperties.colorSpace
    assert (out.content.range.min, out.content.range.max) == (o_out.content.range.min, o_out.content.range.max)
    (label_file,), (o_label_file,) = out.associatedFiles, o_out.associatedFiles
    assert label_file.type == o_label_file.type and label_file.name == LABEL_FILE.encode()
    assert ours.minParserVersion == b"1.5.0"  # custom metadata (MediaPipe's segmenter options) is 1.5.0


def test_segmenter_options_and_label_kinds():
    seg_schema = pytest.importorskip("mediapipe.tasks.metadata.image_segmenter_metadata_schema_py_generated",
                                     reason="mediapipe is not installed")
    logits = _decode(build_metadata(SegmenterMetadata(name="m", labels=RGB)))
    (custom,) = logits.subgraphMetadata[0].customMetadata
    assert custom.name == b"SEGMENTER_METADATA"
    options = seg_schema.ImageSegmenterOptions.GetRootAs(bytes(custom.data), 0)
    assert options.Activation() == seg_schema.Activation.SOFTMAX
    labels = _decode(build_metadata(SegmenterMetadata(name="m", labels=RGB, output_kind="labels")))
    (out,) = labels.subgraphMetadata[0].outputTensorMetadata
    assert out.associatedFiles[0].type == 3  # TENSOR_VALUE_LABELS: the output's values index the labels
    assert labels.subgraphMetadata[0].customMetadata is None and labels.minParserVersion == b"1.0.0"
    uint8_input = _decode(build_metadata(SegmenterMetadata(name="m", labels=RGB, input_dtype="uint8")))
    stats = uint8_input.subgraphMetadata[0].inputTensorMetadata[0].stats
    assert (list(stats.min), list(stats.max)) == ([0.0], [255.0])


def test_our_reader_reads_what_the_writer_wrote():
    model = _tanh_model_with_metadata(norm_mean=[120.0, 110.0, 100.0], norm_std=[60.0, 50.0, 40.0])
    meta = read_metadata(model, source="tiny")
    assert meta.name == "tiny rgb"
    assert meta.labels == RGB and meta.label_file == LABEL_FILE
    assert meta.norm_mean == [120.0, 110.0, 100.0] and meta.norm_std == [60.0, 50.0, 40.0]
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        info = archive.getinfo(LABEL_FILE)
        assert info.compress_type == zipfile.ZIP_STORED  # MediaPipe reads associated files in place
        assert archive.read(LABEL_FILE).decode().splitlines() == RGB


def test_writing_again_replaces_the_metadata_and_the_files_and_keeps_the_model():
    from ai_edge_litert.interpreter import Interpreter

    old = tiny_tflite.with_associated_files(
        tiny_tflite.tanh_logits(16, 16, metadata=tiny_tflite.metadata_flatbuffer(name="old")), {"old.txt": "x\n"})
    new = with_segmenter_metadata(old, SegmenterMetadata(name="new", labels=RGB))
    assert read_metadata(new).name == "new" and read_metadata(new).labels == RGB
    with zipfile.ZipFile(io.BytesIO(new)) as archive:
        assert archive.namelist() == [LABEL_FILE]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    outputs = []
    for model in (old, new):
        interpreter = Interpreter(model_content=model, num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError, match="not a TFLite model"):
        add_metadata(b"0123456789abcdef", b"", {})
    with pytest.raises(UserError, match="class names"):
        with_segmenter_metadata(tiny_tflite.tanh_logits(), SegmenterMetadata(name="m", labels=[]))
    with pytest.raises(UserError, match="single lines"):
        with_segmenter_metadata(tiny_tflite.tanh_logits(), SegmenterMetadata(name="m", labels=["a\nb"]))


# ------------------------------------------------------------------------------------------ MediaPipe
def _segment_with_mediapipe(model_path, image_rgb):
    mp = pytest.importorskip("mediapipe", reason="mediapipe is not installed: the ImageSegmenter check is skipped")
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                           output_category_mask=True, output_confidence_masks=True)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb)))
        labels = list(segmenter.labels)
        return (result.category_mask.numpy_view()[..., 0].copy(),
                np.stack([m.numpy_view()[..., 0] for m in result.confidence_masks], -1), labels)


def test_mediapipe_segments_with_our_metadata(tmp_path):
    path = tmp_path / "rgb.tflite"
    path.write_bytes(_tanh_model_with_metadata())
    rgb = cv2.cvtColor(tiny_tflite.red_blue_image(16, 16), cv2.COLOR_BGR2RGB)
    category, confidence, labels = _segment_with_mediapipe(path, rgb)
    assert labels == RGB
    np.testing.assert_array_equal(category, tiny_tflite.red_blue_labels(16, 16))
    # The softmax of SEGMENTER_METADATA over the logits of a correctly normalized input.
    logits = np.tanh(rgb.astype(np.float64) / 127.5 - 1)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(confidence, expected, atol=1e-5)


@pytest.mark.slow  # converts
def test_mediapipe_runs_a_converted_deeplab(tmp_path):
    pytest.importorskip("tensorflow")
    from edge_deeplab.export.convert import convert
    from edge_deeplab.model.deeplab import build_deeplab
    from edge_deeplab.runtime.interpreter import SegmentationModel

    import tf_keras as keras

    labels = ["background", "thing", "stuff", "other"]
    keras.utils.set_random_seed(1)  # the same network every run
    model = build_deeplab(depth_multiplier=0.35, input_size=65, num_classes=4)
    result = convert(model, tmp_path / "tiny.tflite", labels=labels, name="tiny deeplab", version="3",
                     progress=False)
    image = cv2.resize(cv2.cvtColor(tiny_tflite.red_blue_image(), cv2.COLOR_BGR2RGB), (65, 65))
    image = cv2.GaussianBlur(image, (0, 0), 3)  # a smooth image: no class ties on a random network
    category, confidence, mp_labels = _segment_with_mediapipe(result.path, image)
    assert mp_labels == labels and confidence.shape == (65, 65, 4)
    np.testing.assert_allclose(confidence.sum(-1), 1, atol=1e-4)
    ours = SegmentationModel(result.path, num_threads=1).predict_labels(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert (category == ours).mean() > 0.99
