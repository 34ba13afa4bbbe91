"""tf.data training input: DeepLab augmentations, DeepLab normalization, reproducible per epoch.

Each epoch is its own dataset: the order is a permutation drawn from (seed, epoch) and every sample's
augmentation (scale 0.5-2.0, crop with ignore padding, flip) uses stateless random ops seeded by
(seed, epoch, position). Epoch e is therefore the same whether training ran straight through or was
resumed, and nothing but the seed needs checkpointing.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from edge_deeplab.data.datasets import IGNORE_LABEL, SegmentationDataset, class_map_lut
from edge_deeplab.data.images import list_images, read_image
from edge_deeplab.errors import DataError, OptionError, UserError

MEAN_PIXEL = 127.5  # images are padded with the mean pixel (0 after normalization), labels with ignore


@dataclasses.dataclass(frozen=True)
class Augment:
    crop_size: tuple  # (height, width) of the training crops
    max_resize: int | None = None  # first scale each image so that its longer side is this (DeepLab's
    # max_resize_value): with the model's input size, training sees objects at the size inference does
    min_scale: float = 0.5
    max_scale: float = 2.0
    flip: bool = True


def normalize(image):
    """DeepLab's input normalization: uint8 RGB [0, 255] -> float [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


class SampleSource:
    """Random access to (image, label) arrays of a dataset, labels mapped to the model's classes.

    ``label_map`` ({dataset id: model id}) maps dataset classes to the model's (unmapped ids keep their
    value); labels are checked against ``num_classes``. ``cache`` keeps the decoded samples in memory
    (read once, up front: fine for a few thousand small images). A bad sample raises UserError, or with
    the dataset's ``skip_bad`` is left out (cached) or becomes an all-ignore sample (streamed), and is
    counted in ``dataset.skipped``. ``unlabelled`` images follow the dataset's samples, every pixel
    labelled ``unlabelled_label`` (for distillation: no cross entropy, the teacher's targets only).
    """

    def __init__(self, dataset: SegmentationDataset, num_classes: int, label_map=None, cache=False,
                 unlabelled=(), unlabelled_label=None):
        self.dataset = dataset
        self.num_classes = int(num_classes)
        self.lut = class_map_lut(label_map or {}, dataset.num_classes).astype(np.uint8)
        self.pairs = list(dataset.pairs) + [(Path(image), None) for image in unlabelled]
        self.unlabelled_label = unlabelled_label
        self.cached = None
        if cache:
            self.cached = [s for s in (self._load_or_skip(i) for i in range(len(self.pairs))) if s is not None]
            if not self.cached:
                raise DataError(f"{dataset.name}: every sample was skipped as bad ({len(dataset.skipped)})")

    def __len__(self):
        return len(self.cached) if self.cached is not None else len(self.pairs)

    def load(self, index: int):
        image_path, label_path = self.pairs[index]
        if label_path is None:  # an unlabelled image
            image = read_image(image_path, rgb=True)
            return image, np.full(image.shape[:2], self.unlabelled_label, np.uint8)
        sample = self.dataset.load(image_path, label_path)
        label = self.lut[sample.label]
        bad = label[label != IGNORE_LABEL]
        if bad.size and bad.max() >= self.num_classes:
            raise DataError(f"{label_path}: label {int(bad.max())} (after the label map) is out of range for a "
                            f"{self.num_classes}-class model")
        return sample.image, label

    def _load_or_skip(self, index):
        try:
            return self.load(index)
        except UserError as e:
            if not self.dataset.skip_bad:
                raise
            self.dataset.skipped.append((str(self.pairs[index][0]), str(e)))
            return None

    def __getitem__(self, index):
        if self.cached is not None:
            return self.cached[index]
        sample = self._load_or_skip(index)
        if sample is None:  # streamed: a 1x1 all-ignore sample that contributes no loss
            return np.zeros((1, 1, 3), np.uint8), np.full((1, 1), IGNORE_LABEL, np.uint8)
        return sample


def augment(image, label, seed, aug: Augment):
    """DeepLab training augmentation of one uint8 image and label (stateless: ``seed`` fixes it)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.random.stateless_uniform([], seeds[0], aug.min_scale, aug.max_scale)
    if aug.max_resize:
        scale *= aug.max_resize / tf.reduce_max(shape)
    size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    label = tf.image.resize(label[..., None], size, method="nearest")
    crop_h, crop_w = aug.crop_size
    pad_h, pad_w = tf.maximum(crop_h - size[0], 0), tf.maximum(crop_w - size[1], 0)
    # pad bottom/right as DeepLab does: the image with the mean pixel, the label with ignore
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]], constant_values=MEAN_PIXEL)
    label = tf.pad(tf.cast(label, tf.float32), [[0, pad_h], [0, pad_w], [0, 0]], constant_values=IGNORE_LABEL)
    both = tf.image.stateless_random_crop(tf.concat([image, label], -1), [crop_h, crop_w, 4], seeds[1])
    if aug.flip:
        both = tf.image.stateless_random_flip_left_right(both, seeds[2])
    return normalize(both[..., :3]), tf.cast(both[..., 3], tf.int32)


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def training_dataset(source: SampleSource, aug: Augment, batch_size: int, epoch: int, seed: int = 0,
                     input_context=None):
    """One epoch of augmented, normalized batches ((B, H, W, 3) float32, (B, H, W) int32; 255 = ignore).

    Incomplete last batches are dropped so that every step sees ``batch_size`` crops. With
    ``input_context`` (a tf.distribute.InputContext: one worker's input pipeline) ``batch_size`` is the
    global batch and the batches are this worker's replicas' slices of each global batch, one replica's
    after another: the workers together see exactly the samples and augmentations of a single process.
    """
    n = len(source)
    if n < batch_size:
        raise DataError(f"{source.dataset.name}: {n} training samples is fewer than the batch size {batch_size}")
    order = epoch_order(n, seed, epoch)
    positions = np.arange(n, dtype=np.int64) + np.int64(epoch) * n
    if input_context is not None and input_context.num_replicas_in_sync > 1:
        keep, batch_size = replica_share(n, batch_size, input_context.num_replicas_in_sync,
                                         input_context.input_pipeline_id, input_context.num_input_pipelines)
        order, positions = order[keep], positions[keep]

    def read(index, position):
        image, label = tf.numpy_function(lambda i: source[int(i)], [index], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape([None, None, 3])
        label.set_shape([None, None])
        return image, label, tf.stack([tf.constant(seed, tf.int64), position])

    ds = tf.data.Dataset.from_tensor_slices((order.astype(np.int64), positions))
    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda image, label, s: augment(image, label, s, aug), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def replica_share(num_samples: int, global_batch: int, replicas: int, pipeline: int, pipelines: int):
    """(positions in an epoch's order, per-replica batch) of input pipeline ``pipeline`` of ``pipelines``:
    for every global batch, the slices of its local replicas (replicas / pipelines of them), in order."""
    per_replica, local = per_replica_batch(global_batch, replicas), replicas // pipelines
    steps = num_samples // global_batch
    slots = np.arange(steps * global_batch).reshape(steps, replicas, per_replica)
    return slots[:, pipeline * local:(pipeline + 1) * local].reshape(-1), per_replica


def per_replica_batch(global_batch: int, replicas: int) -> int:
    if global_batch % replicas:
        raise OptionError(f"the batch size {global_batch} (the global batch) must be a multiple of the "
                        f"{replicas} replicas it is split across")
    return global_batch // replicas


def unlabelled_images(folders) -> list:
    """The images of ``folders`` (one level each), in order; a folder without images is an error."""
    images = []
    for folder in folders:
        found = list_images(folder)
        if not found:
            raise DataError(f"{folder}: no images for --unlabelled")
        images += found
    return images
