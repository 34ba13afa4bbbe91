"""Keras DeepLab models as evaluation predictors (TensorFlow), and open_predictor for any model file.

A Keras model sees an image exactly as a .tflite one does in edge_deeplab.runtime.evaluate (the same
Placement, normalization, arg-max and resize), so their mIOUs compare.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge_deeplab.errors import ModelFileError, OptionError
from edge_deeplab.io_utils import require_file
from edge_deeplab.runtime.evaluate import Predictor, tflite_predictor
from edge_deeplab.runtime.interpreter import normalized_input


def keras_predictor(model, output_stride=None, resize="letterbox") -> Predictor:
    """A Keras DeepLab model (a model, or the path of a float or QAT .keras file); ``output_stride``
    rebuilds a float model at another output stride (same weights)."""
    import tensorflow as tf

    from edge_deeplab.model.deeplab import is_qat_model, rebuild

    name = getattr(model, "name", "model")
    if not hasattr(model, "predict"):
        from edge_deeplab.train.qat import load_any_model

        name, model = str(model), load_any_model(model)
    if output_stride and is_qat_model(model):
        from edge_deeplab.train.qat import rebuild_qat

        model = rebuild_qat(model, output_stride=int(output_stride))
    elif output_stride:
        model = rebuild(model, output_stride=int(output_stride))
    if len(model.input_shape) != 4 or len(model.output_shape) != 4:
        raise ModelFileError(f"{name}: not a segmentation model (input {model.input_shape}, output {model.output_shape}; "
                        "expected [1, H, W, 3] images in and [1, H, W, classes] scores out)")
    _, H, W, _ = model.input_shape
    run = tf.function(lambda x: model(x, training=False))

    def predict(rgb):
        x, p = normalized_input(rgb, (H, W), resize)
        logits = run(tf.constant(x))[0].numpy()
        labels = logits[p.top:p.top + p.height, p.left:p.left + p.width].argmax(-1).astype(np.uint8)
        return cv2.resize(labels, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)

    return Predictor(predict, int(model.output_shape[-1]), model.name)


def open_predictor(path, num_threads=None, resize="letterbox", output_stride=None) -> Predictor:
    """A predictor for a .tflite (runtime, no TensorFlow) or a .keras / .h5 model (TensorFlow)."""
    path = require_file(path)
    if path.suffix == ".tflite":
        if output_stride:
            raise OptionError(f"{path}: a .tflite model's output stride is fixed; --output-stride is for Keras models")
        return tflite_predictor(path, num_threads=num_threads, resize=resize)
    return keras_predictor(path, output_stride=output_stride, resize=resize)
