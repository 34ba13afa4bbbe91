"""The vocabulary: every named choice and shared default of the toolkit, in one TF-free place.

The CLI builds its options from these, the sweep validates its specs with them, and the modules that
implement a choice check against the same tuple, so a name means one thing in every verb and in the API.
"""

# ----------------------------------------------------------------------------------- architecture
BACKBONES = ("mobilenetv2", "xception65", "xception41")
DEPTH_MULTIPLIERS = (0.35, 0.5, 0.75, 1.0)  # MobileNetV2 widths
OUTPUT_STRIDES = (8, 16, 32)  # input size / feature map size of the backbone
# ASPP: "mobile" is DeepLab's MobileNetV2 head (image pooling + one 1x1 branch, the official models);
# "standard" adds the three atrous 3x3 branches; "separable" makes them depthwise separable.
ASPP_KINDS = ("mobile", "standard", "separable")

# ------------------------------------------------------------------------------------------ data
DATASET_FORMATS = ("voc", "cityscapes", "camvid", "folder", "pennfudan")
NAMED_DATASET_FORMATS = ("pennfudan", "voc", "cityscapes", "camvid")  # classes known without --data-classes
CLASS_WEIGHTINGS = ("none", "median-frequency")  # or the path of a file of weights
RESIZE_MODES = ("letterbox", "stretch")  # how an image is fitted into the model input

# ---------------------------------------------------------------------------------------- training
OPTIMIZERS = ("sgd", "adam")
STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")

# ------------------------------------------------------------------------------------- conversion
# One name per quantization, in convert and in sweeps:
#   fp32     float32 weights and activations
#   fp16     float16 weights (the GPU format), float32 compute on CPU
#   dynamic  int8 weights, float activations (no calibration)
#   int8     full integer, activation ranges calibrated on images (post-training)
#   int8_qat full integer of a quantization-aware trained model (its own ranges; sweeps only: convert
#            tells a QAT model by itself and converts it with --quantize int8)
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
SWEEP_QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8", "int8_qat")
IO_TYPES = ("float", "uint8", "int8")  # the .tflite's input (and logits output) type
HEADS = ("logits", "labels")  # [1, H, W, classes] scores, or [1, H, W] class ids (arg-max inside)
DEFAULT_CALIBRATION_IMAGES = 100

# ---------------------------------------------------------------------------------- run and bench
HOST_DELEGATES = ("xnnpack", "cpu")  # or the path of a delegate library
PHONE_DELEGATES = ("xnnpack", "cpu", "gpu", "nnapi")
DEFAULT_BENCH_RUNS = 30
DEFAULT_BENCH_WARMUP = 5

# ------------------------------------------------------------------------------------------ import
# Least share of pixels on which an import must agree with its source: a float source must be
# reproduced almost exactly; an 8-bit source differs from the float function by its quantization.
MIN_AGREEMENT_FLOAT = 0.995
MIN_AGREEMENT_QUANTIZED = 0.97
DEFAULT_VERIFY_IMAGES = 8


def check_choice(what: str, value, allowed):
    """An OptionError naming ``what`` when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        from edge_deeplab.errors import OptionError

        raise OptionError(f"{what} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value
