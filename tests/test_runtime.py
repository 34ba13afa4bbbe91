import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import tiny_tflite
from edge_deeplab.errors import UserError
from edge_deeplab.runtime.interpreter import ModelInfo, Placement, SegmentationModel, argmax_channels

OFFICIAL = ("models", "official")
INFO_FIELDS = ["input_height", "input_width", "input_dtype", "input_scale", "input_zero_point", "norm_mean",
               "norm_std", "output_kind", "output_dtype", "output_scale", "output_zero_point", "num_classes",
               "labels", "name"]


def write_model(tmp_path, content, name="m.tflite"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def load(tmp_path, content, **kwargs):
    return SegmentationModel(write_model(tmp_path, content), num_threads=1, **kwargs)


def deeplab_normalized_rgb(image_bgr):
    return (image_bgr[..., ::-1].astype(np.float64) - 127.5) / 127.5


# ------------------------------------------------------------------------------------------ official models
def test_info_of_the_official_float_model(shared):
    model = SegmentationModel(shared(*OFFICIAL, "deeplabv3_257_mv_gpu_metadata.tflite"), num_threads=2)
    info = model.info.to_dict()
    assert set(INFO_FIELDS) <= set(info)
    json.dumps(info)  # JSON-able for the Android export
    assert (info["input_height"], info["input_width"], info["input_dtype"]) == (257, 257, "float32")
    assert (info["output_kind"], info["output_dtype"], info["num_classes"]) == ("logits", "float32", 21)
    assert info["norm_mean"] == [127.5] * 3 and info["norm_std"] == [127.5] * 3
    assert info["normalization_source"] == "metadata"
    assert info["labels"][15] == "person" and info["name"] == "DeepLabV3"


def test_info_of_the_official_uint8_model(shared):
    model = SegmentationModel(shared(*OFFICIAL, "deeplabv3_mnv2_pascal_quant.tflite"), num_threads=2)
    info = model.info
    assert (info.input_height, info.input_width, info.input_dtype) == (513, 513, "uint8")
    assert (info.input_scale, info.input_zero_point) == (1 / 128, 128)
    assert (info.output_kind, info.output_dtype) == ("labels", "int64")
    assert info.num_classes == 21  # the depth of the tensor its ARG_MAX reads
    assert info.labels is None and info.normalization_source == "default"


@pytest.mark.parametrize("file", ["deeplabv3_257_mv_gpu.tflite", "deeplabv3_257_mv_gpu_metadata.tflite"])
@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_official_257_model_reproduces_the_golden_mask(shared, file, resize):
    image = cv2.imread(str(shared("data", "golden", "segmentation_input_rotation0.jpg")))
    golden = cv2.imread(str(shared("data", "golden", "segmentation_golden_rotation0.png")), cv2.IMREAD_GRAYSCALE)
    model = SegmentationModel(shared(*OFFICIAL, file), num_threads=2, resize=resize)
    mask = model.predict_labels(image)
    # the golden PNG stores class * 10 (as in tflite-support's test data)
    agreement = np.mean(mask.astype(np.int32) * 10 == golden)
    assert agreement >= 0.995, f"{agreement:.4%} of pixels agree with the golden mask"


def test_uint8_input_is_deeplab_normalization_quantized(shared):
    """q = real / scale + zero_point; for the official models that is the raw pixel within one step."""
    model = SegmentationModel(shared(*OFFICIAL, "deeplabv3_mnv2_pascal_quant.tflite"), num_threads=2)
    ramp = np.tile(np.arange(256, dtype=np.uint8), (513, 3)).reshape(513, 768)[:, :513]
    image = np.repeat(ramp[..., None], 3, axis=2)
    tensor, placement = model.preprocess(image)
    assert placement == Placement(0, 0, 513, 513)
    real = (image[..., ::-1].astype(np.float64) - 127.5) / 127.5
    expected = np.clip(np.round(real * 128 + 128), 0, 255)
    np.testing.assert_array_equal(tensor[0], expected)
    assert np.abs(tensor[0].astype(int) - image).max() <= 1


def test_cpu_delegate_gives_the_same_mask_as_xnnpack(shared):
    image = cv2.imread(str(shared("data", "golden", "segmentation_input_rotation0.jpg")))
    path = shared(*OFFICIAL, "deeplabv3_257_mv_gpu.tflite")
    xnnpack = SegmentationModel(path, num_threads=2).predict_labels(image)
    plain = SegmentationModel(path, num_threads=2, delegate="cpu").predict_labels(image)
    assert np.mean(xnnpack == plain) > 0.999


# ----------------------------------------------------------------------------------- tiny models, every kind
@pytest.mark.parametrize("make", [
    tiny_tflite.tanh_logits,
    lambda: tiny_tflite.dequantize_logits(dtype=np.int8, zero_point=0),
    lambda: tiny_tflite.dequantize_logits(dtype=np.uint8, zero_point=128),
    lambda: tiny_tflite.quantized_logits(dtype=np.uint8, zero_point=128),
    lambda: tiny_tflite.quantized_logits(dtype=np.int8, zero_point=0),
    tiny_tflite.argmax_labels,
    tiny_tflite.pooled_logits,
], ids=["float", "int8-in", "uint8-in", "uint8-logits", "int8-logits", "labels", "half-res-logits"])
@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_mask_is_right_at_the_image_size_for_every_model_kind(tmp_path, make, resize):
    model = load(tmp_path, make(), resize=resize)
    image = tiny_tflite.red_blue_image(24, 32)
    result = model.segment(image)
    np.testing.assert_array_equal(result.mask, tiny_tflite.red_blue_labels(24, 32))
    assert result.mask.dtype == np.uint8
    assert result.latency_ms == pytest.approx(result.preprocess_ms + result.invoke_ms + result.postprocess_ms)


def test_label_model_reports_kind_and_classes(tmp_path):
    info = load(tmp_path, tiny_tflite.argmax_labels()).info
    assert (info.output_kind, info.output_dtype, info.num_classes) == ("labels", "int64", 3)


def test_float_input_is_rgb_normalized_and_letterbox_padding_is_zero(tmp_path):
    model = load(tmp_path, tiny_tflite.tanh_logits(16, 16))
    image = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    tensor, placement = model.preprocess(image)
    assert placement == Placement(4, 0, 8, 16)  # centred: 4 padded rows above and below
    np.testing.assert_allclose(tensor[0, 4:12], deeplab_normalized_rgb(image), atol=1e-6)
    assert not tensor[0, :4].any() and not tensor[0, 12:].any()


def test_int8_input_uses_the_tensor_quantization(tmp_path):
    scale, zero_point = 0.02, -10
    model = load(tmp_path, tiny_tflite.dequantize_logits(16, 16, np.int8, scale, zero_point))
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    tensor, _ = model.preprocess(image)
    expected = np.clip(np.round(deeplab_normalized_rgb(image) / scale + zero_point), -128, 127)
    np.testing.assert_array_equal(tensor[0], expected)
    assert model.info.input_dtype == "int8" and model.info.input_zero_point == zero_point


def test_metadata_normalization_and_labels_are_used(tmp_path):
    meta = tiny_tflite.metadata_flatbuffer(name="tiny", mean=(0.0, 10.0, 20.0), std=(255.0, 128.0, 64.0))
    content = tiny_tflite.with_associated_files(tiny_tflite.tanh_logits(16, 16, metadata=meta),
                                                {"labels.txt": "red\ngreen\nblue\n"})
    model = load(tmp_path, content)
    assert model.info.labels == ["red", "green", "blue"] and model.info.name == "tiny"
    assert model.info.normalization_source == "metadata"
    image = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    tensor, _ = model.preprocess(image)
    expected = (image[..., ::-1] - np.array([0.0, 10.0, 20.0])) / np.array([255.0, 128.0, 64.0])
    np.testing.assert_allclose(tensor[0], expected, atol=1e-6)


def test_labels_given_by_the_user(tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\nb\nc\n\nnote\n")
    assert load(tmp_path, tiny_tflite.tanh_logits(), labels=labels_file).info.labels == ["a", "b", "c"]
    with pytest.raises(UserError, match="2 labels for a model with 3 classes"):
        load(tmp_path, tiny_tflite.tanh_logits(), labels=["a", "b"])


def test_grayscale_and_bgra_images_are_accepted(tmp_path):
    model = load(tmp_path, tiny_tflite.tanh_logits())
    assert model.predict_labels(np.full((10, 12), 200, np.uint8)).shape == (10, 12)
    assert model.predict_labels(np.full((10, 12, 4), 200, np.uint8)).shape == (10, 12)
    with pytest.raises(UserError, match="uint8"):
        model.predict_labels(np.zeros((10, 12, 3), np.float32))


def test_raw_invoke_and_output(tmp_path):
    model = load(tmp_path, tiny_tflite.tanh_logits(16, 16))
    image = tiny_tflite.red_blue_image(16, 16)
    tensor, _ = model.preprocess(image)
    assert model.invoke(tensor) >= 0
    np.testing.assert_allclose(model.raw_output()[0], np.tanh(deeplab_normalized_rgb(image)), atol=1e-5)


@pytest.mark.parametrize("fit, expected", [
    (((100, 200), (50, 50), "letterbox"), Placement(12, 0, 25, 50)),
    (((200, 100), (50, 50), "letterbox"), Placement(0, 12, 50, 25)),
    (((10, 10), (50, 50), "letterbox"), Placement(0, 0, 50, 50)),
    (((100, 200), (50, 50), "stretch"), Placement(0, 0, 50, 50)),
])
def test_placement_fit(fit, expected):
    assert Placement.fit(*fit) == expected


def test_placement_scaled_to_a_smaller_output():
    assert Placement(4, 0, 8, 16).scaled((16, 16), (8, 8)) == Placement(2, 0, 4, 8)
    assert Placement(4, 0, 8, 16).scaled((16, 16), (16, 16)) == Placement(4, 0, 8, 16)


# ------------------------------------------------------------------------------------------- bad input
def test_truncated_model_is_a_one_line_error(tmp_path):
    path = write_model(tmp_path, tiny_tflite.tanh_logits()[:200], "cut.tflite")
    with pytest.raises(UserError, match="cut.tflite: not a loadable TFLite model") as e:
        SegmentationModel(path, num_threads=1)
    assert "\n" not in str(e.value)


def test_text_file_and_missing_file_are_errors(tmp_path):
    with pytest.raises(UserError, match=r"notes.tflite: not a TFLite model \(no TFL3 identifier\)"):
        SegmentationModel(write_model(tmp_path, b"just text\n", "notes.tflite"), num_threads=1)
    with pytest.raises(UserError, match="absent.tflite: model file not found"):
        SegmentationModel(tmp_path / "absent.tflite", num_threads=1)
    with pytest.raises(UserError, match="empty.tflite: empty file, not a TFLite model"):
        SegmentationModel(write_model(tmp_path, b"", "empty.tflite"), num_threads=1)
    with pytest.raises(UserError, match="folder.tflite: is a folder, not a model file"):
        SegmentationModel(tmp_path.joinpath("folder.tflite").mkdir() or tmp_path / "folder.tflite", num_threads=1)
    # a valid identifier on a broken FlatBuffer: the interpreter's refusal, in one line
    with pytest.raises(UserError, match="broken.tflite: not a loadable TFLite model"):
        SegmentationModel(write_model(tmp_path, b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40, "broken.tflite"),
                          num_threads=1)


def test_a_classifier_is_not_a_segmentation_model(tmp_path):
    with pytest.raises(UserError, match="not a segmentation model"):
        load(tmp_path, tiny_tflite.not_segmentation())


def test_bad_delegates_are_errors(tmp_path):
    path = write_model(tmp_path, tiny_tflite.tanh_logits())
    with pytest.raises(UserError, match="delegate must be"):
        SegmentationModel(path, delegate=str(tmp_path / "libnothere.so"))
    not_a_library = tmp_path / "libfake_delegate.so"
    not_a_library.write_bytes(b"not a shared library")
    with pytest.raises(UserError, match="cannot load delegate"):
        SegmentationModel(path, delegate=str(not_a_library))
    libraries = sorted(Path(np.__file__).parent.rglob("*.so"))  # a real shared library, not a delegate
    if libraries:
        with pytest.raises(UserError, match="not a TFLite delegate library"):
            SegmentationModel(path, delegate=str(libraries[0]))
    with pytest.raises(UserError, match="resize must be"):
        SegmentationModel(path, resize="crop")


def test_model_info_round_trips_through_json(tmp_path):
    info = load(tmp_path, tiny_tflite.quantized_logits()).info
    assert ModelInfo(**json.loads(json.dumps(info.to_dict()))) == info


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8])
def test_argmax_channels_matches_numpy(dtype):
    rng = np.random.default_rng(3)
    if dtype == np.float32:
        logits = rng.normal(size=(9, 11, 21)).astype(dtype)
    else:
        logits = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (9, 11, 21), endpoint=True).astype(dtype)
        logits[0, 0] = logits[0, 0, 4]  # ties go to the first channel, as numpy's argmax does
    crop = logits[1:8, 2:10]  # not contiguous
    np.testing.assert_array_equal(argmax_channels(crop), crop.argmax(-1))
