"""Knowledge distillation: a teacher's soft predictions as a second training target (TensorFlow).

The student learns from ``(1 - w) * cross entropy(labels) + w * T^2 * KL(teacher_T || student_T)``, with
``T`` the temperature that softens both softmaxes (Hinton et al.), per pixel, on the same augmented crop
the student sees. Images without labels (``--unlabelled DIR``: video frames, any photos) carry only the
distillation term: their pixels have the label data.datasets.UNLABELLED, which the cross entropy ignores. Crop padding
(label 255) is left out of both terms.

The teacher is a Keras model (.keras / QAT .h5, rebuilt at the crop size and optionally at another output
stride, run inside the training step) or a .tflite with a logits output (run by LiteRT on each crop, resized
to the teacher's input and back). The student is float or quantization-aware (``--qat``: the float model
keeps teaching its quantized self).
A teacher with other classes than the student's maps them with ``class_map`` ({teacher: student}); the
probabilities of unmapped teacher classes go to ``default_class``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from edge_deeplab.data.datasets import IGNORE_LABEL
from edge_deeplab.errors import ModelFileError, OptionError


def class_matrix(teacher_classes: int, student_classes: int, class_map=None, default_class=0) -> np.ndarray:
    """[teacher classes, student classes] 0/1 matrix that sums teacher probabilities into student classes."""
    if not class_map:
        if teacher_classes != student_classes:
            raise OptionError(f"the teacher has {teacher_classes} classes and the student {student_classes}: map "
                              "them with --distill-class-map TEACHER:STUDENT (e.g. 15:1 for VOC person)")
        return np.eye(teacher_classes, dtype=np.float32)
    matrix = np.zeros((teacher_classes, student_classes), np.float32)
    for t, s in class_map.items():
        if not (0 <= t < teacher_classes and 0 <= s < student_classes):
            raise OptionError(f"distill class map {t}:{s} does not fit a {teacher_classes}-class teacher and a "
                              f"{student_classes}-class student")
        matrix[t, s] = 1.0
    unmapped = matrix.sum(1) == 0
    if not 0 <= default_class < student_classes:
        raise OptionError(f"distill default class {default_class} is not a class of the student")
    matrix[unmapped, default_class] = 1.0
    return matrix


def distillation_loss(labels, student_logits, teacher_logits, matrix, temperature: float):
    """Mean over the image pixels (not the crop padding) of T^2 * KL(teacher_T || student_T)."""
    valid = tf.cast(tf.not_equal(labels, IGNORE_LABEL), tf.float32)
    target = tf.einsum("bhwt,ts->bhws", tf.nn.softmax(teacher_logits / temperature), tf.constant(matrix))
    log_student = tf.nn.log_softmax(student_logits / temperature)
    kl = tf.reduce_sum(target * (tf.math.log(tf.maximum(target, 1e-12)) - log_student), axis=-1)
    return temperature ** 2 * tf.reduce_sum(kl * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


class KerasTeacher:
    """A Keras DeepLab model (float or QAT), rebuilt at the training crop size (and ``output_stride``:
    the same weights at OS 8 are a better teacher than at OS 16), never trained."""

    def __init__(self, path, crop_size, output_stride=None):
        from edge_deeplab.model.deeplab import is_qat_model, rebuild
        from edge_deeplab.train.qat import load_any_model, rebuild_qat

        model = load_any_model(path)
        resize = rebuild_qat if is_qat_model(model) else rebuild
        changes = {"input_size": tuple(crop_size)}
        if output_stride:
            changes["output_stride"] = int(output_stride)
        self.model = resize(model, **changes)
        self.model.trainable = False
        self.num_classes = int(self.model.output_shape[-1])

    def logits(self, images):
        return self.model(images, training=False)


class TFLiteTeacher:
    """A .tflite with a [1, H, W, classes] logits output, run by LiteRT on each crop (its own input size)."""

    def __init__(self, path, crop_size):
        from edge_deeplab.runtime.interpreter import SegmentationModel

        self.model = SegmentationModel(path, num_threads=1)
        info = self.model.info
        if info.output_kind != "logits":
            raise ModelFileError(f"{path}: a teacher needs per-class scores; this model outputs class ids "
                                 "(convert it with --head logits, or import it to Keras)")
        self.num_classes, self.crop_size = int(info.num_classes), tuple(crop_size)
        self.mean, self.std = np.array(info.norm_mean, np.float32), np.array(info.norm_std, np.float32)

    def _run(self, images: np.ndarray) -> np.ndarray:
        from edge_deeplab.tflite.quantization import dequantize, quantize

        info = self.model.info
        h, w = self.crop_size
        result = np.empty((len(images), h, w, self.num_classes), np.float32)
        for i, image in enumerate(images):
            pixels = (image + 1.0) * 127.5  # the student's [-1, 1] input as RGB pixels
            pixels = cv2.resize(pixels, (info.input_width, info.input_height), interpolation=cv2.INTER_LINEAR)
            real = ((pixels - self.mean) / self.std)[None].astype(np.float32)
            if info.input_dtype != "float32":
                real = quantize(real, info.input_scale, info.input_zero_point, info.input_dtype)
            self.model.invoke(real)
            logits = self.model.raw_output()[0]
            if info.output_dtype != "float32":
                logits = dequantize(logits, info.output_scale, info.output_zero_point)
            result[i] = cv2.resize(logits.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        return result

    def logits(self, images):
        out = tf.numpy_function(self._run, [images], tf.float32, stateful=False)
        return tf.ensure_shape(out, [None, *self.crop_size, self.num_classes])


def load_teacher(path, crop_size, output_stride=None):
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: teacher model not found")
    if path.suffix == ".tflite":
        if output_stride:
            raise OptionError(f"{path}: --distill-output-stride rebuilds a Keras teacher; a .tflite runs as "
                              "converted (convert it with --output-stride instead)")
        return TFLiteTeacher(path, crop_size)
    if path.suffix in (".keras", ".h5"):
        return KerasTeacher(path, crop_size, output_stride)
    raise ModelFileError(f"{path}: a teacher is a .keras, .h5 or .tflite model")
