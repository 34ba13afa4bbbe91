"""Dataset readers on tiny generated datasets in each format, and their errors."""
import cv2
import numpy as np
import pytest

from edge_deeplab.data.datasets import (IGNORE_LABEL, class_map_lut, open_dataset, parse_class_map, voc_palette)
from edge_deeplab.errors import UserError

H, W = 12, 16


def _image(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _label(seed, num_classes):
    label = np.random.default_rng(seed + 100).integers(0, num_classes, (H, W)).astype(np.uint8)
    label[0, :3] = IGNORE_LABEL
    return label


def _write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_index(path, index):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), index)


def make_folder(root, n=3, num_classes=3):
    labels = {}
    for i in range(n):
        _write_rgb(root / "images" / f"img{i}.png", _image(i))
        labels[f"img{i}"] = _label(i, num_classes)
        _write_index(root / "masks" / f"img{i}.png", labels[f"img{i}"])
    return labels


def make_voc(root, ids=("2007_000001", "2007_000002"), split="val"):
    Image = pytest.importorskip("PIL.Image")
    voc = root / "VOC2012"
    labels = {}
    for i, name in enumerate(ids):
        voc.joinpath("JPEGImages").mkdir(parents=True, exist_ok=True)
        _write_rgb(voc / "JPEGImages" / f"{name}.jpg", _image(i))
        label = _label(i, 21)
        png = Image.fromarray(label, mode="P")
        png.putpalette(voc_palette().flatten().tolist())
        voc.joinpath("SegmentationClass").mkdir(exist_ok=True)
        png.save(voc / "SegmentationClass" / f"{name}.png")
        labels[name] = label
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return labels


def test_folder_reads_images_rgb_and_index_masks(tmp_path):
    labels = make_folder(tmp_path)
    ds = open_dataset(tmp_path, "folder", num_classes=3)
    samples = list(ds)
    assert len(ds) == len(samples) == 3 and ds.num_classes == 3
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(s.image, _image(i))  # RGB, not BGR
        np.testing.assert_array_equal(s.label, labels[s.image_path.stem])


def test_folder_needs_its_classes(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(UserError, match="class names or number of classes"):
        open_dataset(tmp_path, "folder")
    assert open_dataset(tmp_path, "folder", class_names=["bg", "a", "b"]).class_names == ["bg", "a", "b"]


def test_voc_palette_pngs_become_class_indices(tmp_path):
    labels = make_voc(tmp_path)
    ds = open_dataset(tmp_path, "voc", split="val")  # the parent of VOC2012/ is accepted too
    assert ds.num_classes == 21 and ds.class_names[15] == "person"
    for s in ds:
        np.testing.assert_array_equal(s.label, labels[s.image_path.stem])
        assert s.image.shape == (H, W, 3)


def test_voc_colour_png_written_by_opencv_reads_the_same(tmp_path):
    labels = make_voc(tmp_path)
    name = next(iter(labels))
    colour = voc_palette()[labels[name]]
    _write_rgb(tmp_path / "VOC2012" / "SegmentationClass" / f"{name}.png", colour)
    sample = next(iter(open_dataset(tmp_path / "VOC2012", "voc")))
    np.testing.assert_array_equal(sample.label, labels[name])


def test_voc_sbd_list_reads_index_masks_from_segmentation_class_aug(tmp_path):
    make_voc(tmp_path)
    voc = tmp_path / "VOC2012"
    aug = _label(7, 21)
    _write_index(voc / "SegmentationClassAug" / "2007_000002.png", aug)
    (tmp_path / "train_aug.txt").write_text("2007_000002\n")
    samples = list(open_dataset(voc, "voc", split=str(tmp_path / "train_aug.txt")))
    assert len(samples) == 1
    np.testing.assert_array_equal(samples[0].label, aug)


def test_voc_unknown_colour_and_missing_split_are_errors(tmp_path):
    labels = make_voc(tmp_path)
    name = next(iter(labels))
    _write_rgb(tmp_path / "VOC2012" / "SegmentationClass" / f"{name}.png", np.full((H, W, 3), 7, np.uint8))
    with pytest.raises(UserError, match=f"{name}.png: colour #070707 is not in the VOC palette"):
        list(open_dataset(tmp_path, "voc"))
    with pytest.raises(UserError, match="split list 'train' not found"):
        open_dataset(tmp_path, "voc", split="train")


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    img = tmp_path / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    _write_rgb(img, _image(0))
    ids = np.zeros((H, W), np.uint8)
    ids[:, :4] = 7  # road -> 0
    ids[:, 4:8] = 26  # car -> 13
    ids[:, 8:12] = 33  # bicycle -> 18
    ids[:, 12:] = 4  # static -> ignore
    _write_index(tmp_path / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", ids)
    ds = open_dataset(tmp_path, "cityscapes", split="val")
    assert ds.num_classes == 19
    label = next(iter(ds)).label
    assert label[0, 0] == 0 and label[0, 5] == 13 and label[0, 9] == 18 and label[0, 13] == IGNORE_LABEL


def test_pennfudan_instances_become_person(tmp_path):
    root = tmp_path / "PennFudanPed"
    _write_rgb(root / "PNGImages" / "FudanPed00001.png", _image(0))
    mask = np.zeros((H, W), np.uint8)
    mask[2:6, 2:6] = 1
    mask[6:10, 8:12] = 2  # a second pedestrian
    _write_index(root / "PedMasks" / "FudanPed00001_mask.png", mask)
    ds = open_dataset(tmp_path, "pennfudan")
    assert ds.class_names == ["background", "person"]
    np.testing.assert_array_equal(next(iter(ds)).label, (mask > 0).astype(np.uint8))


def test_pennfudan_real_images_read(shared):
    ds = open_dataset(shared("data", "pennfudan", "PennFudanPed"), "pennfudan")
    assert len(ds) == 119
    sample = next(iter(ds))
    assert sample.image.shape[:2] == sample.label.shape and set(np.unique(sample.label)) <= {0, 1}


def test_mask_of_another_size_names_the_file(tmp_path):
    make_folder(tmp_path)
    _write_index(tmp_path / "masks" / "img1.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(UserError, match=r"img1\.png: mask is 16x13 but its image img1\.png is 16x12"):
        list(open_dataset(tmp_path, "folder", num_classes=3))


def test_label_out_of_range_names_the_file(tmp_path):
    make_folder(tmp_path)
    _write_index(tmp_path / "masks" / "img2.png", np.full((H, W), 9, np.uint8))
    with pytest.raises(UserError, match=r"img2\.png: label value 9 is out of range for 3 classes"):
        list(open_dataset(tmp_path, "folder", num_classes=3))


def test_unreadable_image_and_missing_mask_name_the_file(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "images" / "img0.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"img0\.png: cannot read image"):
        list(open_dataset(tmp_path, "folder", num_classes=3))
    make_folder(tmp_path)
    (tmp_path / "masks" / "img2.png").unlink()
    with pytest.raises(UserError, match=r"img2\.png: cannot read mask"):
        list(open_dataset(tmp_path, "folder", num_classes=3))


def test_colour_mask_in_an_index_dataset_is_an_error(tmp_path):
    make_folder(tmp_path)
    _write_rgb(tmp_path / "masks" / "img0.png", _image(5))
    with pytest.raises(UserError, match=r"img0\.png: mask has 3 channels"):
        list(open_dataset(tmp_path, "folder", num_classes=3))


def test_skip_bad_skips_and_counts(tmp_path):
    make_folder(tmp_path, n=4)
    (tmp_path / "images" / "img0.png").write_bytes(b"")
    _write_index(tmp_path / "masks" / "img2.png", np.full((H, W), 9, np.uint8))
    ds = open_dataset(tmp_path, "folder", num_classes=3, skip_bad=True)
    good = [s.image_path.stem for s in ds]
    assert good == ["img1", "img3"]
    assert len(ds.skipped) == 2
    assert "img0.png" in ds.skipped[0][0] and "cannot read image" in ds.skipped[0][1]
    assert "out of range" in ds.skipped[1][1]


@pytest.mark.parametrize("fmt", ["folder", "pennfudan", "cityscapes", "voc"])
def test_empty_or_missing_dataset_is_an_error(tmp_path, fmt):
    with pytest.raises(UserError, match="not found"):
        open_dataset(tmp_path / "nowhere", fmt)
    for sub in ("images", "PNGImages", "leftImg8bit/val"):
        (tmp_path / sub).mkdir(parents=True)
    with pytest.raises(UserError, match="no .* found|not found"):
        open_dataset(tmp_path, fmt, num_classes=2) if fmt == "folder" else open_dataset(tmp_path, fmt)


def test_unknown_format(tmp_path):
    with pytest.raises(UserError, match="unknown dataset format 'coco'"):
        open_dataset(tmp_path, "coco")


def test_subset_slices_and_lists(tmp_path):
    make_folder(tmp_path, n=5)
    ds = open_dataset(tmp_path, "folder", num_classes=3)
    even, odd = ds.subset("0::2"), ds.subset("1::2")
    assert [p[0].stem for p in even.pairs] == ["img0", "img2", "img4"]
    assert [p[0].stem for p in odd.pairs] == ["img1", "img3"]
    assert len(ds.subset("3:")) == 2 and ds.subset(None) is ds
    (tmp_path / "list.txt").write_text("img4\nimg1\n")
    assert [p[0].stem for p in ds.subset(str(tmp_path / "list.txt")).pairs] == ["img1", "img4"]
    with pytest.raises(UserError, match="is empty"):
        ds.subset("7:")
    with pytest.raises(UserError, match="start:stop"):
        ds.subset("every other")


def test_class_maps():
    assert parse_class_map(["15:1", "0:0,3:2"]) == {15: 1, 0: 0, 3: 2}
    with pytest.raises(UserError, match="SRC:DST"):
        parse_class_map(["15-1"])
    lut = class_map_lut({15: 1}, 21, default=0)
    assert lut[15] == 1 and lut[3] == 0 and lut[0] == 0 and lut[IGNORE_LABEL] == IGNORE_LABEL
    keep = class_map_lut({1: 15}, 2)
    assert keep[1] == 15 and keep[0] == 0 and keep[IGNORE_LABEL] == IGNORE_LABEL


# ------------------------------------------------------------------------------------------------ CamVid
def make_camvid(root, splits=(("train", 3), ("val", 2)), names=True):
    """SegNet's layout: <split>/X.png with <split>annot/X.png holding 0-10, 11 = Unlabelled."""
    from edge_deeplab.data.datasets import CAMVID_CLASSES

    labels = {}
    for split, n in splits:
        for i in range(n):
            _write_rgb(root / split / f"f{split}{i}.png", _image(i))
            label = np.random.default_rng(i).integers(0, 11, (H, W)).astype(np.uint8)
            label[0, :4] = 11
            _write_index(root / f"{split}annot" / f"f{split}{i}.png", label)
            labels[f"f{split}{i}"] = label
    if names:
        (root / "classes.txt").write_text("\n".join(CAMVID_CLASSES) + "\n")
    return labels


def test_camvid_reads_splits_ignores_unlabelled_and_names_its_classes(tmp_path):
    from edge_deeplab.data.datasets import CAMVID_CLASSES

    labels = make_camvid(tmp_path / "camvid")
    train = open_dataset(tmp_path / "camvid", "camvid", "train")
    val = open_dataset(tmp_path, "camvid", "val")  # the parent folder is found too
    assert (len(train), len(val)) == (3, 2)
    assert train.class_names == CAMVID_CLASSES and train.num_classes == 11
    for sample in train:
        want = labels[sample.image_path.stem].copy()
        assert (sample.label[0, :4] == IGNORE_LABEL).all()
        want[want == 11] = IGNORE_LABEL
        np.testing.assert_array_equal(sample.label, want)


def test_camvid_errors_name_the_file(tmp_path):
    make_camvid(tmp_path)
    with pytest.raises(UserError, match="test folder not found"):
        open_dataset(tmp_path, "camvid", "test")
    (tmp_path / "classes.txt").write_text("Sky\nRoad\n")
    with pytest.raises(UserError, match="classes.txt: 2 class names"):
        open_dataset(tmp_path, "camvid", "train")
    (tmp_path / "classes.txt").unlink()
    _write_index(tmp_path / "trainannot" / "ftrain0.png", np.full((H, W), 12, np.uint8))
    with pytest.raises(UserError, match="ftrain0.png: label value 12 is out of range for 11 classes"):
        list(open_dataset(tmp_path, "camvid", "train"))


def test_median_frequency_weights_by_hand(tmp_path):
    from edge_deeplab.data.datasets import class_weights

    root = tmp_path / "d"
    # image a: class 0 on 3/4, class 1 on 1/4; image b: class 0 everywhere, class 2 absent
    a = np.zeros((4, 4), np.uint8)
    a[:1] = 1
    for name, label in (("a", a), ("b", np.zeros((4, 4), np.uint8))):
        _write_rgb(root / "images" / f"{name}.png", np.zeros((4, 4, 3), np.uint8))
        _write_index(root / "masks" / f"{name}.png", label)
    data = open_dataset(root, "folder", num_classes=3)
    # freq(0) = 28 / 32, freq(1) = 4 / 16 (only image a has it); median of the two = 0.5625
    np.testing.assert_allclose(class_weights("median-frequency", data, 3), [0.5625 / 0.875, 0.5625 / 0.25, 0.0])
    # through a label map: dataset class 1 -> model class 2
    np.testing.assert_allclose(class_weights("median-frequency", data, 3, {1: 2}),
                               [0.5625 / 0.875, 0.0, 0.5625 / 0.25])
    (tmp_path / "w.txt").write_text("1, 2.5\n0\n")
    np.testing.assert_allclose(class_weights(str(tmp_path / "w.txt"), data, 3), [1, 2.5, 0])
    assert class_weights("none", data, 3) is None
    for text, message in (("1 2", "expected 3"), ("1 x 2", "cannot read"), ("1 -1 2", "non-negative")):
        (tmp_path / "bad.txt").write_text(text)
        with pytest.raises(UserError, match=message):
            class_weights(str(tmp_path / "bad.txt"), data, 3)
    with pytest.raises(UserError, match="median-frequency or a file"):
        class_weights("inverse", data, 3)


def test_real_camvid_val_frames(shared):
    """Four real val frames, read in place: 480x360, 11 = Unlabelled read as ignore, the thin classes present."""
    from edge_deeplab.data.datasets import class_weights

    root = shared("data", "camvid")
    val = open_dataset(root, "camvid", "val").subset("0:4")
    samples = list(val)
    assert [s.image.shape for s in samples] == [(360, 480, 3)] * 4
    raw = cv2.imread(str(samples[0].label_path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(samples[0].label == IGNORE_LABEL, raw == 11)
    present = set(np.unique(np.concatenate([s.label.ravel() for s in samples])))
    assert {0, 2, 3, 8} <= present and max(present - {IGNORE_LABEL}) <= 10  # sky, pole, road, car
    # median-frequency weights of these frames: the thin classes (pole) weigh more than road and sky
    weights = class_weights("median-frequency", val, 11)
    assert weights[2] > 1 > weights[3] and weights[2] > weights[0]
