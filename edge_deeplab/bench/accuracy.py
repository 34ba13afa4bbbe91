"""mIOU beside latency: a .tflite scored on a dataset with edge_deeplab.runtime.evaluate (no TensorFlow).

A PASCAL VOC model (21 classes) scored on a two-class person dataset (Penn-Fudan: background,
person) has its predictions mapped 15 (person) -> 1 and everything else -> 0 unless a class map is
given.
"""
from __future__ import annotations

from edge_deeplab.data.datasets import VOC_PERSON, open_dataset
from edge_deeplab.errors import OptionError


def default_class_map(num_model_classes: int, dataset_classes: list):
    """(class_map, default_class) that relate a model's classes to the dataset's, or (None, None)."""
    if num_model_classes == len(dataset_classes):
        return None, None
    if num_model_classes == 21 and [c.lower() for c in dataset_classes] == ["background", "person"]:
        return {VOC_PERSON: 1}, 0
    raise OptionError(f"the model has {num_model_classes} classes and the dataset {len(dataset_classes)} "
                    f"({', '.join(dataset_classes[:5])}...): give a class map (e.g. --class-map 15:1 "
                    "--default-class 0)")


def measure_miou(model_path, data, data_format, threads=2, class_map=None, default_class=None, max_images=None,
                 subset=None, resize="letterbox", progress=True) -> dict:
    """{'miou', 'iou' (class name -> IoU), 'images'} of ``model_path`` on the dataset at ``data``
    (its ``subset``, e.g. held-out images '1::2', then at most ``max_images`` of them)."""
    from edge_deeplab.runtime.evaluate import evaluate, tflite_predictor

    dataset = open_dataset(data, data_format).subset(subset)
    if max_images:
        dataset.pairs = dataset.pairs[:max_images]
    predictor = tflite_predictor(model_path, num_threads=threads, resize=resize)
    if class_map is None and default_class is None:
        class_map, default_class = default_class_map(predictor.num_classes, dataset.class_names)
    result = evaluate(predictor, dataset, class_map=class_map, default_class=default_class, progress=progress)
    scores = result.matrix.to_dict(result.class_names)
    return {"miou": scores["miou"], "iou": scores["iou"], "images": result.images}
