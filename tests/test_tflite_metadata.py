import numpy as np
import pytest

import tiny_tflite
from edge_deeplab.errors import UserError
from edge_deeplab.tflite_metadata import metadata_buffer, parse_labels, read_metadata

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
