import json
import shutil

import cv2
import numpy as np
import pytest

import tiny_tflite
from edge_deeplab.cli import main
from edge_deeplab.runtime.predict import collect_images, output_stems, predict_images
from edge_deeplab.runtime.interpreter import SegmentationModel
from edge_deeplab.runtime.visualize import PALETTE_RGB, class_shares, overlay, palette_png

Image = pytest.importorskip("PIL.Image")  # reads palette PNGs back as class ids (OpenCV gives colours)


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite.tanh_logits(16, 16))
    return path


def test_palette_png_keeps_class_ids_and_voc_colours(tmp_path):
    mask = np.random.default_rng(0).integers(0, 21, (7, 9), dtype=np.uint8)
    (tmp_path / "m.png").write_bytes(palette_png(mask))
    image = Image.open(tmp_path / "m.png")
    assert image.mode == "P"
    np.testing.assert_array_equal(np.array(image), mask)
    palette = np.array(image.getpalette()[:768]).reshape(256, 3)
    assert palette[15].tolist() == [192, 128, 128]  # VOC 'person'
    np.testing.assert_array_equal(palette, PALETTE_RGB)


def test_overlay_leaves_background_alone():
    image = np.full((4, 4, 3), 100, np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 15
    out = overlay(image, mask, alpha=0.5)
    np.testing.assert_array_equal(out[2:], image[2:])
    expected = np.round(0.5 * 100 + 0.5 * PALETTE_RGB[15][::-1]).astype(np.uint8)
    np.testing.assert_array_equal(out[0, 0], expected)


def test_class_shares_sum_to_one():
    mask = np.array([[0, 0, 15, 15], [15, 15, 15, 7]], np.uint8)
    assert class_shares(mask) == {15: 5 / 8, 0: 2 / 8, 7: 1 / 8}


def test_collect_images_and_unique_stems(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    images, missing = collect_images([tmp_path / "a", tmp_path / "b" / "x.png", tmp_path / "gone.jpg"])
    assert images == [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    assert missing == [(str(tmp_path / "gone.jpg"), "no such file or folder")]
    assert output_stems(images) == ["x", "x_1"]
    assert output_stems([tmp_path / "x_1.png", tmp_path / "x.png", tmp_path / "c" / "x.png"]) == ["x_1", "x", "x_2"]


def test_predict_images_writes_masks_overlays_and_json_and_survives_bad_files(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "redblue.png"), tiny_tflite.red_blue_image(24, 32))
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    model = SegmentationModel(tiny_model, num_threads=1)
    errors = []
    summary = predict_images(model, [inputs, tmp_path / "missing.png"], out, json_files=True, progress=False,
                             report=errors.append)
    assert [r["image"] for r in summary.done] == [str(inputs / "redblue.png")]
    assert sorted(f for f, _ in summary.failed) == sorted([str(inputs / "broken.jpg"), str(tmp_path / "missing.png")])
    assert len(errors) == 2 and all("\n" not in e and e.startswith("error: ") for e in errors)

    mask = np.array(Image.open(out / "redblue_mask.png"))
    np.testing.assert_array_equal(mask, tiny_tflite.red_blue_labels(24, 32))
    assert cv2.imread(str(out / "redblue_overlay.jpg")).shape == (24, 32, 3)
    record = json.loads((out / "redblue.json").read_text())
    assert record["classes"] == {"class 0": 0.5, "class 2": 0.5}
    assert record["latency_ms"]["total"] > 0 and (record["height"], record["width"]) == (24, 32)
    assert not (out / "broken_mask.png").exists()


def test_predict_with_the_official_model_finds_the_person(shared, tmp_path):
    golden = shared("data", "golden", "segmentation_input_rotation0.jpg")
    model = SegmentationModel(shared("models", "official", "deeplabv3_257_mv_gpu_metadata.tflite"), num_threads=2)
    summary = predict_images(model, [golden], tmp_path, json_files=True, progress=False)
    assert [r["image"] for r in summary.done] == [str(golden)]
    record = json.loads((tmp_path / "segmentation_input_rotation0.json").read_text())
    assert {"person", "horse"} <= set(record["classes"])


def test_cli_predict_exit_status(tmp_path, tiny_model, capsys):
    image = tmp_path / "ok.png"
    cv2.imwrite(str(image), tiny_tflite.red_blue_image())
    main(["predict", "-m", str(tiny_model), "--threads", "1", str(image), "-o", str(tmp_path / "o")])
    assert "segmented 1 of 1 images" in capsys.readouterr().out
    assert (tmp_path / "o" / "ok_mask.png").exists()

    shutil.copy(image, tmp_path / "ok2.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "-m", str(tiny_model), str(tmp_path / "ok2.png"), str(tmp_path / "bad.png"),
              "-o", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "bad.png: cannot read image" in captured.err
    assert (tmp_path / "o" / "ok2_mask.png").exists()


def test_cli_predict_with_a_corrupt_model_is_one_line(tmp_path, capsys):
    model = tmp_path / "half.tflite"
    model.write_bytes(tiny_tflite.tanh_logits()[:300])
    image = tmp_path / "ok.png"
    cv2.imwrite(str(image), tiny_tflite.red_blue_image())
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "-m", str(model), str(image), "-o", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "half.tflite" in err[-1]


def test_json_prints_and_json_files_write(tmp_path, tiny_model, capsys):
    """--json means "print JSON on stdout" in every verb; predict's per-image files are --json-files."""
    image = tmp_path / "ok.png"
    cv2.imwrite(str(image), tiny_tflite.red_blue_image())
    capsys.readouterr()
    main(["predict", "-m", str(tiny_model), "--threads", "1", str(image), "-o", str(tmp_path / "o"), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in printed["images"]] == [str(image)] and printed["failed"] == []
    assert printed["images"][0]["classes"] == {"class 0": 0.5, "class 2": 0.5}
    assert not (tmp_path / "o" / "ok.json").exists()
    main(["predict", "-m", str(tiny_model), "--threads", "1", str(image), "--output", str(tmp_path / "o"),
          "--json-files"])
    assert json.loads((tmp_path / "o" / "ok.json").read_text())["classes"] == printed["images"][0]["classes"]
