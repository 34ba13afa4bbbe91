"""Streaming segmentation metrics: a confusion matrix accumulated image by image (numpy only)."""
from __future__ import annotations

import numpy as np

IGNORE_LABEL = 255


class ConfusionMatrix:
    """Rows: ground truth, columns: prediction. Pixels labelled ``ignore_label`` are not counted."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL):
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, label):
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
        valid = label != self.ignore_label
        gt = label[valid].astype(np.int64)
        pr = pred[valid].astype(np.int64)
        if gt.size and (gt.max() >= self.num_classes or gt.min() < 0):
            raise ValueError(f"label value {int(gt.max())} is out of range for {self.num_classes} classes")
        if pr.size and (pr.max() >= self.num_classes or pr.min() < 0):
            raise ValueError(f"predicted class {int(pr.max())} is out of range for {self.num_classes} classes")
        self.matrix += np.bincount(gt * self.num_classes + pr, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)
        return self

    def merge(self, other: "ConfusionMatrix"):
        self.matrix += other.matrix
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both ground truth and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def to_dict(self, class_names=None) -> dict:
        names = class_names or [str(i) for i in range(self.num_classes)]
        iou = self.iou()
        return {
            "miou": self.miou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
            "pixels": int(self.matrix.sum()),
        }
