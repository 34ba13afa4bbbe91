"""The tf.data training input: DeepLab augmentations, normalization, reproducible epochs."""
import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from edge_deeplab.data.datasets import IGNORE_LABEL, open_dataset  # noqa: E402
from edge_deeplab.errors import UserError  # noqa: E402
from edge_deeplab.train.pipeline import Augment, SampleSource, augment, epoch_order, training_dataset  # noqa: E402


def make_folder(root, n=4, h=20, w=24):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = (image[..., 0] > 127).astype(np.uint8)  # the label is a function of the red channel
        cv2.imwrite(str(root / "images" / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{i}.png"), label)
    return open_dataset(root, "folder", num_classes=2)


def _sample(h=20, w=24, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, (image[..., 0] > 127).astype(np.uint8)


def _augment(image, label, seed, aug):
    out_image, out_label = augment(tf.constant(image), tf.constant(label), tf.constant(seed, tf.int64), aug)
    return out_image.numpy(), out_label.numpy()


def test_normalization_and_identity_crop():
    image, label = _sample()
    out_image, out_label = _augment(image, label, [1, 2], Augment((20, 24), None, 1.0, 1.0, flip=False))
    np.testing.assert_allclose(out_image, image / 127.5 - 1, atol=1e-6)
    np.testing.assert_array_equal(out_label, label)
    assert out_image.min() >= -1 and out_image.max() <= 1


def test_small_images_are_padded_with_mean_pixel_and_ignore():
    image, label = _sample(10, 12)
    out_image, out_label = _augment(image, label, [0, 0], Augment((16, 20), None, 1.0, 1.0, flip=False))
    assert out_image.shape == (16, 20, 3) and out_label.shape == (16, 20)
    # padding goes to the bottom / right, so the image sits at the top left
    np.testing.assert_array_equal(out_label[:10, :12], label)
    assert (out_label[10:] == IGNORE_LABEL).all() and (out_label[:, 12:] == IGNORE_LABEL).all()
    assert np.abs(out_image[10:]).max() < 1e-6  # the mean pixel normalizes to 0


def test_augmentation_keeps_image_and_label_aligned():
    image, label = _sample(40, 48)
    for s in range(6):
        out_image, out_label = _augment(image, label, [s, 7], Augment((32, 32), None, 0.5, 2.0, flip=True))
        assert out_image.shape == (32, 32, 3)
        valid = out_label != IGNORE_LABEL
        assert set(np.unique(out_label)) <= {0, 1, IGNORE_LABEL}
        # nearest-resized labels follow the bilinear image: most pixels keep label == (red > 127)
        agree = (out_label == ((out_image[..., 0] + 1) * 127.5 > 127))[valid].mean()
        assert agree > 0.8


def test_augmentation_is_reproducible_from_its_seed():
    image, label = _sample(40, 48)
    aug = Augment((24, 24))
    a = _augment(image, label, [3, 4], aug)
    b = _augment(image, label, [3, 4], aug)
    c = _augment(image, label, [3, 5], aug)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_epochs_are_reproducible_and_differ(tmp_path):
    source = SampleSource(make_folder(tmp_path), num_classes=2, cache=True)
    aug = Augment((16, 16))

    def batches(epoch, seed=0):
        return [(i.numpy(), l.numpy()) for i, l in training_dataset(source, aug, 2, epoch, seed)]

    first, again, second = batches(0), batches(0), batches(1)
    assert len(first) == 2 and first[0][0].shape == (2, 16, 16, 3) and first[0][1].shape == (2, 16, 16)
    assert first[0][1].dtype == np.int32
    for (i1, l1), (i2, l2) in zip(first, again):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(l1, l2)
    assert not np.array_equal(first[0][0], second[0][0])
    assert sorted(epoch_order(4, 0, 0)) == [0, 1, 2, 3]
    assert not np.array_equal(batches(0, seed=1)[0][0], first[0][0])


def test_label_map_and_its_range_check(tmp_path):
    dataset = make_folder(tmp_path, n=2)
    source = SampleSource(dataset, num_classes=21, label_map={1: 15})
    _, label = source[0]
    assert set(np.unique(label)) <= {0, 15} and (label == 15).sum() == (next(iter(dataset)).label == 1).sum()
    with pytest.raises(UserError, match=r"0\.png: label 15 \(after the label map\) is out of range for a 2-class"):
        SampleSource(dataset, num_classes=2, label_map={1: 15})[0]


def test_bad_samples_are_skipped_and_counted(tmp_path):
    dataset = make_folder(tmp_path, n=4)
    (tmp_path / "images" / "1.png").write_bytes(b"broken")
    dataset.skip_bad = True
    cached = SampleSource(dataset, num_classes=2, cache=True)
    assert len(cached) == 3 and len(dataset.skipped) == 1
    streamed = SampleSource(dataset, num_classes=2)
    image, label = streamed[1]  # streamed: an all-ignore placeholder that adds no loss
    assert (label == IGNORE_LABEL).all() and len(dataset.skipped) == 2
    dataset.skip_bad = False
    with pytest.raises(UserError, match=r"1\.png: cannot read image"):
        SampleSource(dataset, num_classes=2, cache=True)


def test_fewer_samples_than_a_batch_is_an_error(tmp_path):
    source = SampleSource(make_folder(tmp_path, n=2), num_classes=2)
    with pytest.raises(UserError, match="2 training samples is fewer than the batch size 4"):
        training_dataset(source, Augment((8, 8)), 4, 0)


def test_max_resize_scales_the_longer_side_first():
    image, label = _sample(40, 48)
    out_image, out_label = _augment(image, label, [0, 1], Augment((30, 30), 24, 1.0, 1.0, flip=False))
    # 40x48 -> 20x24, then padded to the 30x30 crop
    assert (out_label[:20, :24] != IGNORE_LABEL).all()
    assert (out_label[20:] == IGNORE_LABEL).all() and (out_label[:, 24:] == IGNORE_LABEL).all()
    np.testing.assert_array_equal(out_label[:20, :24], label[1::2, 1::2])  # half-pixel nearest
