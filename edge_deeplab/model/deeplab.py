"""build_deeplab: the one entry point that turns a DeepLabConfig into a flat functional tf_keras model.

Flat means no nested sub-models and no Lambda layers, so tfmot can quantize it, and the input batch is
fixed at 1 so that the TFLite converter keeps dilated convolutions as dilated CONV_2D / DEPTHWISE_CONV_2D
instead of SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import tf_keras as keras

from edge_deeplab.config import DeepLabConfig
from edge_deeplab.errors import ModelFileError, OptionError
from edge_deeplab.io_utils import atomic_path, require_file
from edge_deeplab.model import heads, mobilenet_v2, xception
from edge_deeplab.model.layers import CUSTOM_OBJECTS

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
CONFIG_ENTRY = "edge_deeplab_config.json"  # stored inside the .keras zip beside Keras' own files


def build_deeplab(config: DeepLabConfig | None = None, weights: str | None = "none", batch_size: int | None = 1,
                  **overrides) -> keras.Model:
    """Build a DeepLab model.

    ``config`` fixes the architecture (keyword overrides are applied to it, e.g.
    ``build_deeplab(backbone="xception65", output_stride=8)``). ``weights``: "none", "imagenet" (the
    Keras MobileNetV2 ImageNet backbone, downloaded once) or a local .h5 weights file loaded by name.
    ``batch_size`` 1 is what the converter wants; None (any batch) is for training.
    """
    config = (config or DeepLabConfig()).replace(**overrides) if overrides else (config or DeepLabConfig())
    weights = weights or "none"
    if weights == "imagenet" and config.backbone == "mobilenetv2" and config.depth_multiplier != 1.0:
        # ImageNet weights exist only with keras' widths; at depth 1.0 both rules agree.
        config = config.replace(width_rounding="keras")

    h, w = config.input_size
    inputs = keras.Input(shape=(h, w, 3), batch_size=batch_size, name="image")
    if config.backbone == "mobilenetv2":
        features = mobilenet_v2.mobilenet_v2_features(inputs, config.depth_multiplier, config.output_stride,
                                                      config.width_rounding)
        low_level_name = mobilenet_v2.LOW_LEVEL_LAYER
    else:
        features = xception.xception_features(inputs, config.backbone, config.output_stride)
        low_level_name = xception.LOW_LEVEL_LAYER
    x = heads.aspp(features, config.aspp_channels, config.atrous_rates, separable=config.aspp == "separable",
                   dropout=config.dropout)
    if config.decoder:
        # Features of the backbone by layer name: the graph stays one flat functional model.
        low_level = _layer_output(inputs, features, low_level_name)
        x = heads.decoder(x, low_level, config.decoder_channels, config.low_level_channels,
                          separable=config.decoder_separable)
    outputs = heads.logits(x, config.num_classes, (h, w))
    model = keras.Model(inputs, outputs, name=config.name or config.default_name)
    model.deeplab_config = config
    _load_backbone_weights(model, config, weights)
    return model


def _layer_output(inputs, features, name):
    return keras.Model(inputs, features).get_layer(name).output


def rebuild(model: keras.Model, **changes) -> keras.Model:
    """The same weights in another variant, e.g. ``rebuild(model, output_stride=8, input_size=(769, 769))``.

    Output stride and input size change only dilation rates and shapes, never weight shapes.
    """
    config = model_config(model).replace(**changes)
    new = build_deeplab(config)
    new.set_weights(model.get_weights())
    return new


def copy_weights_by_name(source: keras.Model, target: keras.Model) -> list:
    """Copy into ``target`` every layer's weights that ``source`` has under the same name and shapes.

    Returns the names of the target's layers left as built (e.g. a new decoder, or logits for another
    number of classes).
    """
    have = {layer.name: layer for layer in source.layers}
    fresh = []
    for layer in target.layers:
        if not layer.weights:
            continue
        src = have.get(layer.name)
        if src is not None and [w.shape for w in src.weights] == [w.shape for w in layer.weights]:
            layer.set_weights(src.get_weights())
        else:
            fresh.append(layer.name)
    return fresh


def adapt(model: keras.Model, **changes) -> tuple:
    """``model``'s weights in another head: e.g. ``adapt(model, num_classes=2, decoder=True)``.

    Returns (new model, names of the layers that start untrained).
    """
    new = build_deeplab(model_config(model).replace(**changes))
    return new, copy_weights_by_name(model, new)


def model_config(model: keras.Model) -> DeepLabConfig:
    config = getattr(model, "deeplab_config", None)
    if config is None:
        raise ModelFileError(f"model {model.name!r} carries no DeepLab config (was it built by edge-deeplab?)")
    return config


# ------------------------------------------------------------------------------------------ weights
def _load_backbone_weights(model, config, weights):
    if weights == "none":
        return
    if weights == "imagenet":
        if config.backbone != "mobilenetv2":
            raise ModelFileError(
                f"no ImageNet weights of the DeepLab {config.backbone} are published in Keras format "
                "(keras.applications.Xception is a different network); pass a local weights file")
        path = imagenet_weights_file(config.depth_multiplier)
    else:
        path = Path(weights)
        if not path.is_file():
            raise ModelFileError(f"{weights}: weights file not found (expected none, imagenet or a .h5 file)")
    if not str(path).endswith(".h5"):
        raise ModelFileError(f"{path}: backbone weights must be a Keras .h5 weights file")
    try:
        model.load_weights(str(path), by_name=True)
    except (ValueError, OSError) as e:
        raise ModelFileError(f"{path}: cannot load weights into {model.name} ({str(e).splitlines()[0]})") from None


def imagenet_weights_file(depth_multiplier: float, cache_dir: str | None = None) -> Path:
    """The keras.applications MobileNetV2 ImageNet (no top) weights, through Keras' own download cache."""
    if depth_multiplier not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        raise ModelFileError(f"no ImageNet MobileNetV2 weights for depth multiplier {depth_multiplier}")
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(depth_multiplier)}_224_no_top.h5"
    try:
        return Path(keras.utils.get_file(fname, KERAS_WEIGHTS_URL + fname, cache_subdir="models",
                                         cache_dir=cache_dir))
    except Exception as e:  # get_file wraps network failures in plain Exceptions
        raise OptionError(f"cannot download ImageNet weights {fname} ({str(e).splitlines()[0][:160]}); "
                        f"put the file in ~/.keras/models/ or pass --weights FILE") from None


# ------------------------------------------------------------------------------------ save / load
def save_model(model: keras.Model, path) -> Path:
    """Save as .keras (atomically), with the DeepLab config stored in the same archive."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: models are saved as .keras files")
    with atomic_path(path) as tmp:
        model.save(tmp)
        config = getattr(model, "deeplab_config", None)
        if config is not None:
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(CONFIG_ENTRY, config.to_json())
    return path


def is_qat_model(model: keras.Model) -> bool:
    """Whether ``model`` is fake-quantized by tfmot (its layers wrapped for quantization-aware training).
    Told by class name, so that asking needs no tfmot import."""
    return any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
               for layer in model.layers)


def load_model(path, compile=False) -> keras.Model:
    """Load a model saved by save_model (or any .keras / .h5 model using this project's layers)."""
    path = require_file(path)
    try:
        model = keras.models.load_model(str(path), custom_objects=CUSTOM_OBJECTS, compile=compile)
    except Exception as e:
        raise ModelFileError(f"{path}: not a loadable Keras model ({str(e).splitlines()[0][:200]})") from None
    config = read_config(path)
    if config is not None:
        model.deeplab_config = config
    return model


def read_config(path) -> DeepLabConfig | None:
    try:
        with zipfile.ZipFile(path) as z:
            return DeepLabConfig.from_dict(json.loads(z.read(CONFIG_ENTRY)))
    except (KeyError, zipfile.BadZipFile):
        return None
