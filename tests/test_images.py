"""The one image reader: truncated files are bad input, tiny images are valid."""
import cv2
import numpy as np
import pytest

from edge_deeplab.errors import UserError
from edge_deeplab.data.images import jpeg_is_complete, list_images, read_image, read_images


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (9, 9), 3)


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]],
                         ids=["baseline", "progressive", "restart-markers"])
def test_every_truncation_of_a_jpeg_is_refused(photo, params, tmp_path):
    ok, data = cv2.imencode(".jpg", photo, params)
    data = data.tobytes()
    assert ok and jpeg_is_complete(data) and jpeg_is_complete(data + b"trailing bytes")
    assert not any(jpeg_is_complete(data[:n]) for n in range(2, len(data) - 1, 37))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    # OpenCV alone would decode it (libjpeg fills the rest with grey and only warns)
    assert cv2.imread(str(tmp_path / "cut.jpg")) is not None
    with pytest.raises(UserError, match="cut.jpg: truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_truncated_png_empty_and_missing_files(photo, tmp_path):
    ok, data = cv2.imencode(".png", photo)
    (tmp_path / "cut.png").write_bytes(data.tobytes()[:500])
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("cut.png", "empty.png", "absent.png"):
        with pytest.raises(UserError, match=f"{name}: cannot read image"):
            read_image(tmp_path / name)


def test_tiny_images_and_rgb_order(tmp_path):
    pixel = np.array([[[10, 20, 30]]], np.uint8)  # BGR
    cv2.imwrite(str(tmp_path / "one.png"), pixel)
    np.testing.assert_array_equal(read_image(tmp_path / "one.png"), pixel)
    np.testing.assert_array_equal(read_image(tmp_path / "one.png", rgb=True), pixel[..., ::-1])


def test_listing_takes_every_image_suffix(photo, tmp_path):
    for name in ("a.jpg", "b.PNG", "c.tif", "d.tiff", "e.bmp", "f.webp"):
        cv2.imwrite(str(tmp_path / name.lower()), photo)
        (tmp_path / name.lower()).rename(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tif", "d.tiff", "e.bmp", "f.webp"]
    assert len(read_images(tmp_path, limit=3)) == 3  # a TIFF calibration folder has images
    with pytest.raises(UserError, match="no images .* to calibrate"):
        read_images(tmp_path / "none", purpose="to calibrate") if (tmp_path / "none").mkdir() is None else None
