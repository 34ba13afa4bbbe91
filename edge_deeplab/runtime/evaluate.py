"""Evaluation: streaming confusion-matrix mIOU and per-class IoU of a Keras or .tflite model.

A model becomes a Predictor (RGB uint8 image -> HxW class ids at the image's size) and one loop scores
any predictor. Both kinds of model see an image the same way: fitted into the model input by
runtime.Placement (letterbox or stretch), DeepLab-normalized, arg-maxed on the image's region of the
output and resized (nearest) to the image. The .tflite path uses edge_deeplab.runtime.interpreter only and never
imports TensorFlow; the Keras path imports it when asked for.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from edge_deeplab.data.datasets import IGNORE_LABEL, SegmentationDataset, class_map_lut
from edge_deeplab.errors import DataError, ModelFileError, OptionError
from edge_deeplab.runtime.metrics import ConfusionMatrix


@dataclasses.dataclass
class Predictor:
    predict: Callable[[np.ndarray], np.ndarray]  # RGB uint8 HxWx3 -> HxW class ids (model classes)
    num_classes: int
    name: str


@dataclasses.dataclass
class EvalResult:
    model: str
    dataset: str
    class_names: list
    matrix: ConfusionMatrix
    images: int
    skipped: list  # (image path, reason)
    seconds: float

    def to_dict(self) -> dict:
        return {"model": self.model, "dataset": self.dataset, "images": self.images,
                **self.matrix.to_dict(self.class_names), "confusion_matrix": self.matrix.matrix.tolist(),
                "skipped": len(self.skipped),
                "skipped_files": [{"file": f, "reason": r} for f, r in self.skipped],
                "seconds": round(self.seconds, 2)}

    def table(self) -> str:
        width = max(len(n) for n in self.class_names)
        lines = [f"{name:{width}s}  {'-' if np.isnan(v) else f'{100 * v:6.2f}'}"
                 for name, v in zip(self.class_names, self.matrix.iou())]
        lines.append(f"{'mIOU':{width}s}  {100 * self.matrix.miou():6.2f}")
        lines.append(f"{self.images} images of {self.dataset} ({len(self.skipped)} skipped), "
                     f"pixel accuracy {100 * self.matrix.pixel_accuracy():.2f}%, {self.seconds:.1f} s")
        return "\n".join(lines)


def tflite_predictor(path, num_threads=None, resize="letterbox", delegate="xnnpack") -> Predictor:
    """A .tflite model run by edge_deeplab.runtime.interpreter (no TensorFlow)."""
    from edge_deeplab.runtime.interpreter import SegmentationModel

    model = SegmentationModel(path, num_threads=num_threads, resize=resize, delegate=delegate)
    if not model.info.num_classes:
        raise ModelFileError(f"{path}: the number of classes of this label-output model is unknown")
    return Predictor(lambda rgb: model.predict_labels(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)),
                     model.info.num_classes, Path(path).name)


def prediction_lut(num_model_classes, num_dataset_classes, class_map=None, default_class=None) -> np.ndarray:
    """Model class id -> dataset class id. Without a map the two must have the same classes."""
    if not class_map and default_class is None:
        if num_model_classes != num_dataset_classes:
            raise OptionError(f"the model has {num_model_classes} classes and the dataset {num_dataset_classes}: "
                            "map them with a class map (e.g. --class-map 15:1 --default-class 0)")
    if default_class is not None and not 0 <= default_class < num_dataset_classes:
        raise OptionError(f"default class {default_class} is not a class of the {num_dataset_classes}-class dataset "
                        f"(0..{num_dataset_classes - 1})")
    unknown = sorted(c for c in (class_map or {}) if not 0 <= c < num_model_classes)
    if unknown:
        raise OptionError(f"class map: the model has {num_model_classes} classes (0..{num_model_classes - 1}), "
                        f"so model class {unknown[0]} maps nothing")
    lut = class_map_lut(class_map or {}, num_model_classes, default_class)
    bad = [i for i in range(num_model_classes) if lut[i] >= num_dataset_classes]
    if bad:
        raise OptionError(f"model classes {bad[:8]} map to no class of the {num_dataset_classes}-class dataset "
                        "(add them to the class map or give a default class)")
    return lut.astype(np.uint8)


def evaluate(predictor: Predictor, dataset: SegmentationDataset, class_map=None, default_class=None,
             progress=True) -> EvalResult:
    """Score ``predictor`` on ``dataset``. ``class_map`` {model class: dataset class} and ``default_class``
    (for model classes not in the map) translate predictions into the dataset's classes."""
    lut = prediction_lut(predictor.num_classes, dataset.num_classes, class_map, default_class)
    matrix = ConfusionMatrix(dataset.num_classes, IGNORE_LABEL)
    dataset.skipped.clear()
    started, images = time.perf_counter(), 0
    for sample in tqdm(dataset, total=len(dataset), desc="eval", unit="img", disable=not progress, leave=False):
        labels = predictor.predict(sample.image)
        if labels.max(initial=0) >= predictor.num_classes:
            raise DataError(f"{predictor.name} predicted class {int(labels.max())} but has "
                            f"{predictor.num_classes} classes")
        matrix.update(lut[labels], sample.label)
        images += 1
    if not images:
        raise DataError(f"{dataset.name}: no image could be evaluated ({len(dataset.skipped)} skipped as bad)")
    return EvalResult(predictor.name, dataset.name, list(dataset.class_names), matrix, images,
                      list(dataset.skipped), time.perf_counter() - started)
