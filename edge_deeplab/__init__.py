"""edge-deeplab: DeepLab semantic segmentation from Keras to phones and edge boxes.

Importing this package is cheap and never imports TensorFlow: the inference path (runtime, predict,
webcam, bench) must run where only numpy, opencv and ai-edge-litert are installed. The Keras model
API is reached lazily, e.g. ``edge_deeplab.build_deeplab(...)``.
"""
import os

# tfmot only works with Keras 2 (tf_keras). TensorFlow binds `tf.keras` the first time it is touched,
# so this must be set before any TensorFlow import anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access.
_LAZY = {
    "DeepLabConfig": "edge_deeplab.config",
    "build_deeplab": "edge_deeplab.model.deeplab",
    "rebuild": "edge_deeplab.model.deeplab",
    "save_model": "edge_deeplab.model.deeplab",
    "load_model": "edge_deeplab.model.deeplab",
    "model_complexity": "edge_deeplab.model.complexity",
    "import_official": "edge_deeplab.model.importer",
    "convert": "edge_deeplab.export.convert",
    "ConvertOptions": "edge_deeplab.export.convert",
    "SegmentationModel": "edge_deeplab.runtime.interpreter",
    "benchmark": "edge_deeplab.bench.run",
    "get_preset": "edge_deeplab.presets",
    "list_presets": "edge_deeplab.presets",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edge_deeplab' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
