"""Quantization-aware training stage (tfmot): make a DeepLab model fake-quantized, set its ranges (calibrated,
or an official model's), save / load it. Its int8 export is convert.convert (no calibration set).

tfmot's registry knows every layer the builder uses except BilinearResize (our corner-aligned resize);
it is annotated here with an output-only 8-bit config, like the one tfmot uses for its own resizes.
QAT fine-tuning itself is train.train(..., TrainConfig(qat=True)).

QAT models are saved as .h5: tfmot 0.8.1's QuantizeLayer does not load back from the .keras format under
tf_keras 2.21 (it creates its variables twice and the weights no longer match).
"""
import json
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from edge_deeplab.config import DeepLabConfig
from edge_deeplab.errors import ModelFileError
from edge_deeplab.io_utils import atomic_path
from edge_deeplab.model.deeplab import load_model
from edge_deeplab.model.layers import CUSTOM_OBJECTS, BilinearResize

CONFIG_ATTR = "edge_deeplab_config"  # the DeepLabConfig, as JSON, in the .h5 file's attributes

quant_keras = tfmot.quantization.keras


class OutputQuantizeConfig(quant_keras.QuantizeConfig):
    """No weights; quantize the output with an 8-bit asymmetric moving-average quantizer."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quant_keras.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                              narrow_range=False)]

    def get_config(self):
        return {}


def quantize_scope():
    """The scope that loading or cloning a QAT DeepLab model needs."""
    return quant_keras.quantize_scope({**CUSTOM_OBJECTS, "OutputQuantizeConfig": OutputQuantizeConfig})


def annotate(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with the layers tfmot does not know annotated with our QuantizeConfigs."""

    def clone(layer):
        if isinstance(layer, BilinearResize):
            return quant_keras.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()),
                                                       OutputQuantizeConfig())
        return layer.__class__.from_config(layer.get_config())

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated


def quantize_deeplab(model: keras.Model) -> keras.Model:
    """The fake-quantized (QAT) version of a float DeepLab model, weights carried over."""
    with quantize_scope():
        qat_model = quant_keras.quantize_model(annotate(model))
    config = getattr(model, "deeplab_config", None)
    if config is not None:
        qat_model.deeplab_config = config
    return qat_model


def rebuild_qat(qat_model: keras.Model, **changes) -> keras.Model:
    """The same QAT weights and ranges in another variant, e.g. ``rebuild_qat(m, output_stride=8)``: output
    stride and input size change no weight or range shape (the ranges were learnt at the trained output
    stride, which other strides' activations may not fit: measure)."""
    from edge_deeplab.model.deeplab import build_deeplab, model_config

    config = model_config(qat_model).replace(**changes)
    new = quantize_deeplab(build_deeplab(config))
    new.set_weights(qat_model.get_weights())
    return new


def _range_variables(qat_model: keras.Model, input_name: str) -> dict:
    """float layer name -> (min variable, max variable) of every activation range of a QAT model (the
    input quantizer under ``input_name``)."""
    targets = {}
    for layer in qat_model.layers:
        if isinstance(layer, quant_keras.QuantizeWrapper):
            ranges = [w for w in layer.non_trainable_weights if w.name.endswith(("output_min:0", "activation_min:0"))]
            for low in ranges:
                high = next(w for w in layer.non_trainable_weights if w.name == low.name.replace("_min:", "_max:"))
                targets[layer.layer.name] = (low, high)
        elif type(layer).__name__ == "QuantizeLayer":  # the input quantizer: the input's range
            low, high = (next(w for w in layer.weights if w.name.endswith(f"_{end}:0")) for end in ("min", "max"))
            targets[input_name] = (low, high)
    return targets


def calibrate_ranges(qat_model: keras.Model, float_model: keras.Model, batches) -> int:
    """Start the activation ranges of a fresh QAT model at what ``float_model`` (the model it was made
    from) produces on ``batches`` of normalized images, and its weight ranges at tfmot's own rule.
    Returns the number of activation ranges set.

    tfmot starts every moving-average range at [-6, 6] and moves it with decay 0.999, so a short QAT
    fine-tuning keeps clipping wider tensors: logits clipped at 6 tie, and the arg-max falls to class 0.
    """
    targets = _range_variables(qat_model, float_model.layers[0].name)
    names = list(targets)
    probe = keras.Model(float_model.input, [float_model.get_layer(n).output for n in names])
    lows, highs = np.full(len(names), np.inf), np.full(len(names), -np.inf)
    for images in batches:
        for i, out in enumerate(probe(images, training=False)):
            lows[i] = min(lows[i], float(tf.reduce_min(out)))
            highs[i] = max(highs[i], float(tf.reduce_max(out)))
    for name, low, high in zip(names, lows, highs):
        low = min(low, 0.0)  # a range must hold 0 (as tfmot's nudging assumes), and not be empty
        targets[name][0].assign(low)
        targets[name][1].assign(max(high, low + 1e-3))
    _fit_weight_ranges(qat_model)
    return len(names)


def _weight_quantizers(qat_model: keras.Model):
    """(wrapper, weight, quantizer, range variables) of every quantized weight of a QAT model.

    Until its first training step a weight's range is tfmot's initial [-6, 6], far too coarse for
    kernels: whoever sets ranges without training sets these too."""
    for layer in qat_model.layers:
        if isinstance(layer, quant_keras.QuantizeWrapper):
            for weight, quantizer, variables in layer._weight_vars:
                yield layer, weight, quantizer, variables


def _fit_weight_ranges(qat_model: keras.Model):
    """Set every weight range by tfmot's own rule (the kernel's min / max), as its first training step would."""
    for _, weight, quantizer, variables in _weight_quantizers(qat_model):
        quantizer(weight, training=True, weights=variables)


class _FixedRangeQuantizer:
    """A weight quantizer that fake-quantizes with its stored range in training too (tfmot's refits the
    range to the kernel at every training step)."""

    def __init__(self, quantizer):
        self.quantizer = quantizer

    def __call__(self, inputs, training, weights, **kwargs):
        return self.quantizer(inputs, False, weights=weights, **kwargs)


def freeze_weight_ranges(qat_model: keras.Model) -> int:
    """Keep the weight ranges a QAT model has now through its training (e.g. an official model's weight
    grids from apply_source_quantization); the weights train under that fixed grid. Call before the
    training step is traced. Saved models are unaffected: their ranges are in the range variables.
    Returns the number of weights frozen."""
    frozen = 0
    for layer in qat_model.layers:
        if isinstance(layer, quant_keras.QuantizeWrapper):
            layer._weight_vars = [(w, q if isinstance(q, _FixedRangeQuantizer) else _FixedRangeQuantizer(q), v)
                                  for w, q, v in layer._weight_vars]
            frozen += len(layer._weight_vars)
    return frozen


def apply_source_quantization(qat_model: keras.Model, quantization, keep_others=False) -> int:
    """Give a fresh QAT model (of weights imported from an official quantization-aware trained model) the
    quantization that model runs with (importer.read_quantization): its activation ranges, and its weight
    scales, so that the int8 export computes what the official model computes. Returns the ranges set.

    The official weights lie on a per-tensor uint8 grid (q - zero_point) * scale. TFLite int8 weights are
    symmetric (zero point 0), so the grid is kept with the range +-127 * scale: exact for every weight
    within 127 steps of the zero point. Per-channel kernels give a channel holding a weight beyond that its
    own range; a depthwise kernel (one range in tfmot) clips those few weights (at most 3 per tensor in the
    official models) instead, as re-gridding the whole tensor costs ~7 points of person IoU at 513.
    Ranges-preserving layers between the matched ones (pooling, resizes) take their input's range.
    ``keep_others``: layers the official model lacks (a new classifier) keep the ranges they have (e.g.
    calibrated), where otherwise they are an error.
    """
    input_name = qat_model.input.name.split(":")[0]
    targets = _range_variables(qat_model, input_name)
    ranges = {input_name: (-1.0, 1.0), **quantization.activation_ranges}  # DeepLab inputs: [-1, 1]
    missing = []
    for name, (low, high) in targets.items():
        known = ranges.get(name)
        if known is None:  # a range-preserving layer: its input's range
            wrapper = qat_model.get_layer(f"quant_{name}")
            inbound = wrapper.inbound_nodes[0].inbound_layers
            inner = getattr(inbound, "layer", inbound)
            known = ranges.get(inner.name)
        if known is None:
            missing.append(name)
            continue
        low.assign(known[0])
        high.assign(known[1])
    if missing and not keep_others:
        hint = (" (a new classifier: quantization-aware training with --quantization-from calibrates it)"
                if quantization.new_layers else "")
        raise ModelFileError(f"{quantization.path}: no quantization range for the model's {', '.join(missing)}{hint}")
    _fit_weight_ranges(qat_model)
    for layer, _, _, variables in _weight_quantizers(qat_model):
        scale = quantization.weight_scales.get(layer.layer.name)
        if scale is None:
            continue
        fitted = variables["max_var"].numpy()
        grid = np.maximum(fitted, 127 * scale) if fitted.size > 1 else np.full_like(fitted, 127 * scale)
        variables["max_var"].assign(grid)
        variables["min_var"].assign(-grid)
    return len(targets)


def save_qat_model(model: keras.Model, path) -> Path:
    """Save a QAT model (atomically) as .h5, with its DeepLab config."""
    path = Path(path)
    if path.suffix != ".h5":
        raise ModelFileError(f"{path}: QAT models are saved as .h5 files (tfmot's layers do not load back from .keras)")
    with atomic_path(path) as tmp:
        model.save(tmp, save_format="h5")
        config = getattr(model, "deeplab_config", None)
        if config is not None:
            with h5py.File(tmp, "a") as f:
                f.attrs[CONFIG_ATTR] = config.to_json()
    return path


def load_any_model(path) -> keras.Model:
    """Load a float (.keras) or QAT (.h5) DeepLab model (QAT models need tfmot's classes in scope)."""
    with quantize_scope():
        model = load_model(path)
    if getattr(model, "deeplab_config", None) is None and Path(path).suffix == ".h5":
        with h5py.File(path, "r") as f:
            if CONFIG_ATTR in f.attrs:
                model.deeplab_config = DeepLabConfig.from_dict(json.loads(f.attrs[CONFIG_ATTR]))
    return model
