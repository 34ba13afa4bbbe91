"""Convert stage: a Keras DeepLab model -> .tflite (float32, fp16, dynamic range or full int8).

The export graph is the model up to its 1x1 ``logits`` conv (output-stride resolution) plus the head the
application needs:

- ``logits``: per-class scores at input size (corner-aligned bilinear), [1, H, W, C]. MediaPipe and the
  Task Library need this one.
- ``labels``: int32 class ids at input size, [1, H, W], for apps that only draw a mask. ``argmax_stride``
  s > 1 takes the argmax at 1/s of the input resolution (bilinear logits to that grid, argmax, then
  corner-aligned nearest upsampling of the class ids), so boundaries move by at most s/2 pixels. At 513
  the full-size resize and 21-channel argmax take ~6 ms of a ~90 ms float32 invoke (1 thread; the
  ARG_MAX is not run by XNNPACK), s=4 ~1.5 ms; person IoU drops by <0.1 point at s=2 and ~0.4 at s=4
  (benchmarks/convert_speed.md).

int8 is full-integer: post-training with a representative set of real images, from a trained QAT
model without one, or, for weights imported from an official quantization-aware trained model, with that
model's own activation ranges and weight scales (``quantization_from``; no calibration set either).
``float_stem`` keeps the 3-channel stem conv in float32, for x86 CPUs without VNNI.
Every conversion is checked (no SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND), gets TFLite metadata (labels,
normalization, name, version) and a report saved beside it (export.report). Importing this module
imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edge_deeplab.choices import (
    DEFAULT_CALIBRATION_IMAGES,
    HEADS,
    IO_TYPES,
    OUTPUT_STRIDES,
    QUANTIZATIONS,
    check_choice,
)
from edge_deeplab.errors import DataError, ModelFileError, OptionError, UserError
from edge_deeplab.io_utils import require_file
from edge_deeplab.log import note, warn
from edge_deeplab.model.deeplab import is_qat_model

FORBIDDEN_OPS = ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND")


@dataclasses.dataclass
class ConvertOptions:
    quantize: str = "fp32"  # one of choices.QUANTIZATIONS
    io: str = "float"  # input (and quantized logits output) type of an int8 model
    head: str = "logits"  # logits: [1, H, W, classes] scores; labels: [1, H, W] class ids
    argmax_stride: int = 1  # labels only: take the argmax at 1/argmax_stride of the input resolution
    output_stride: int | None = None  # rebuild the Keras model (float or QAT) at this output stride first
    calibration: str | None = None  # folder of images for int8 post-training quantization
    quantization_from: str | None = None  # official QAT .tflite whose ranges / weight scales int8 takes
    num_calibration: int = DEFAULT_CALIBRATION_IMAGES
    synthetic_calibration: bool = False  # smooth random images: for speed measurements only
    float_stem: bool = False  # int8 except the 3-channel stem conv (faster on x86 without VNNI; float input)
    resize: str = "letterbox"  # how calibration / sample images are fitted to the input (as the runtime)
    labels: list | None = None  # class names (default: the model's, else PASCAL VOC for 21 classes, else class_<i>)
    name: str | None = None
    version: str = "1"
    metadata: bool = True
    samples: str | None = None  # images to compare the .tflite with Keras on (default: the calibration ones)
    num_samples: int = 4
    num_threads: int = 2

    def validate(self):
        """Checks that need no model (run before loading one)."""
        check_choice("quantize", self.quantize, QUANTIZATIONS)
        check_choice("io", self.io, IO_TYPES)
        check_choice("head", self.head, HEADS)
        if self.argmax_stride < 1:
            raise OptionError(f"argmax stride must be >= 1, got {self.argmax_stride}")
        if self.output_stride is not None:
            check_choice("output stride", self.output_stride, OUTPUT_STRIDES)
        if self.argmax_stride > 1 and self.head != "labels":
            raise OptionError("--argmax-stride applies to --head labels only")
        if self.io != "float" and self.quantize != "int8":
            raise OptionError(f"--io {self.io} needs --quantize int8 (only a full-integer model has integer I/O)")
        if self.float_stem and (self.quantize != "int8" or self.io != "float"):
            raise OptionError("--float-stem goes with --quantize int8 --io float (the stem conv reads the float image)")
        if self.calibration and self.synthetic_calibration:
            raise OptionError("give either --calibration DIR or --synthetic-calibration, not both")
        if self.quantization_from:
            if self.quantize != "int8":
                raise OptionError("--quantization-from goes with --quantize int8")
            if self.calibration or self.synthetic_calibration or self.float_stem:
                raise OptionError("--quantization-from takes the official model's ranges: no calibration images, "
                                "no --float-stem")
            if not Path(self.quantization_from).is_file():
                raise ModelFileError(f"{self.quantization_from}: model file not found")
        for folder in (self.calibration, self.samples):
            if folder and not Path(folder).is_dir():
                raise DataError(f"{folder}: image folder not found")

    def validate_for(self, qat: bool):
        """Checks that depend on the model: a QAT model has its ranges, a float one needs calibration."""
        if qat and self.quantize != "int8":
            raise OptionError("a quantization-aware (QAT) model converts with --quantize int8 only")
        if qat and self.quantization_from:
            raise OptionError("a QAT model carries its own quantization; --quantization-from is for float models")
        if qat and self.float_stem:
            raise OptionError("--float-stem is for post-training int8; a QAT model converts as trained")
        if qat and (self.calibration or self.synthetic_calibration):
            note("a QAT model carries its quantization ranges; the calibration images are not used")
        if self.quantize == "int8" and not qat and not (self.calibration or self.synthetic_calibration
                                                         or self.quantization_from):
            raise OptionError("--quantize int8 of a float model needs calibration images: --calibration DIR, or "
                            "--quantization-from OFFICIAL.tflite for weights imported from an official quantized "
                            "model (or --synthetic-calibration for speed measurements only)")


@dataclasses.dataclass
class ConversionResult:
    path: Path
    report_path: Path
    report: dict


# ---------------------------------------------------------------------------------------- the model
def load_source(source):
    """A Keras model from a model object, a .keras / .h5 file (float or QAT) or a preset name.

    A preset is what preset_model gives (official weights where it has them, else random ones).
    """
    if hasattr(source, "layers"):
        return source
    path = Path(source)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if path.suffix in (".keras", ".h5"):
        require_file(path)
        from edge_deeplab.train.qat import load_any_model

        return load_any_model(path)
    if path.suffix == ".tflite":
        raise ModelFileError(f"{path}: already a .tflite; convert a Keras model (`edge-deeplab import` reads "
                        "official .tflite models into one)")
    if path.exists() or path.suffix:
        raise ModelFileError(f"{path}: not a .keras / .h5 model")
    return preset_model(str(source))[0]


def preset_model(name):
    """(the preset's Keras model, whether it is trained): imported from its official TFLite file where
    the preset has official weights, else built with random weights (a warning says so: such a model is
    good for speed measurements only)."""
    from edge_deeplab.model.deeplab import build_deeplab, rebuild
    from edge_deeplab.presets import get_preset, official_weights_file

    preset = get_preset(name)  # UserError for an unknown name
    config = preset["config"]
    if not preset["weights"]:
        warn(f"preset {name} has no official weights; converting random weights (good for speed measurements only)")
        return build_deeplab(config), False
    from edge_deeplab.model.importer import import_official

    model = import_official(official_weights_file(name), verification=False).model
    if model.deeplab_config.input_size != config.input_size or \
            model.deeplab_config.output_stride != config.output_stride:
        model = rebuild(model, input_size=config.input_size, output_stride=config.output_stride)
    return model, True


def with_source_quantization(model, official_path):
    """The QAT version of ``model`` (weights imported from the official quantized model at
    ``official_path``) carrying that model's activation ranges and weight scales: ready for int8 export."""
    from edge_deeplab.model.importer import read_quantization
    from edge_deeplab.train.qat import apply_source_quantization, quantize_deeplab

    quantization = read_quantization(model, official_path)
    qat_model = quantize_deeplab(model)
    apply_source_quantization(qat_model, quantization)
    return qat_model


def at_output_stride(model, output_stride: int):
    """The same weights (and, for a QAT model, ranges) rebuilt at another output stride."""
    from edge_deeplab.model.deeplab import rebuild

    if is_qat_model(model):
        from edge_deeplab.train.qat import rebuild_qat

        return rebuild_qat(model, output_stride=int(output_stride))
    return rebuild(model, output_stride=int(output_stride))


def logits_layer(model, source=None):
    """The 1x1 logits conv (output-stride resolution); in a QAT model it is wrapped as quant_logits."""
    for name in ("logits", "quant_logits"):
        try:
            return model.get_layer(name)
        except ValueError:
            continue
    raise ModelFileError(f"{source or f'model {model.name!r}'}: no 'logits' layer (was it built by edge-deeplab?)")


def argmax_size(input_size, stride):
    """The grid the argmax runs on: corner-aligned with the input, about 1/stride of its resolution."""
    return tuple((s - 1 + stride - 1) // stride + 1 for s in input_size)


def export_model(model, head="logits", argmax_stride=1):
    """``model`` up to its logits layer, followed by the chosen head (a new Keras model, same weights)."""
    check_choice("head", head, HEADS)
    h, w = model.input_shape[1:3]
    logits = logits_layer(model).output
    head = SegmentationHead(head, (h, w), argmax_size((h, w), argmax_stride), name=f"{head}_head")
    return keras.Model(model.input, head(logits), name=model.name)


class SegmentationHead(keras.layers.Layer):
    """Logits at output stride -> logits at input size, or int32 class ids at input size.

    Export only: the argmax and the integer resize are neither trainable nor quantization-aware.
    """

    def __init__(self, output, size, argmax_size, **kwargs):
        super().__init__(**kwargs)
        self.output_kind, self.size, self.argmax_size = output, tuple(size), tuple(argmax_size)

    @tf.autograph.experimental.do_not_convert  # plain Python on static shapes: nothing to convert
    def call(self, logits, training=None):
        if self.output_kind == "logits":
            return _resize_bilinear(logits, self.size)
        low = tuple(logits.shape[1:3])
        # Bilinear up to the argmax grid only when it is finer than the logits (argmax stride below the
        # output stride); otherwise the argmax runs on the logits themselves.
        grid = self.argmax_size if all(a > s for a, s in zip(self.argmax_size, low)) else low
        x = logits if grid == low else _resize_bilinear(logits, grid)
        labels = tf.argmax(x, axis=-1, output_type=tf.int32)
        if grid == self.size:
            return labels
        # Nearest upsampling of the class ids as two GATHERs with constant indices: TFLite has no integer
        # RESIZE_NEAREST_NEIGHBOR, and gathering works for any pair of sizes.
        rows, cols = (nearest_indices(g, s) for g, s in zip(grid, self.size))
        return tf.gather(tf.gather(labels, rows, axis=1), cols, axis=2)

    def get_config(self):
        return {**super().get_config(), "output": self.output_kind, "size": list(self.size),
                "argmax_size": list(self.argmax_size)}


def nearest_indices(low, high):
    """For each of ``high`` corner-aligned positions, the nearest of ``low`` grid positions (int32)."""
    scale = (low - 1) / (high - 1) if high > 1 else 0.0
    return np.minimum(np.floor(np.arange(high) * scale + 0.5), low - 1).astype(np.int32)


def _resize_bilinear(x, size):
    return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True, half_pixel_centers=False)


# ------------------------------------------------------------------------------------- images
def model_input(image_rgb, input_size, resize="letterbox"):
    """An RGB uint8 image fitted to the model input as the runtime does it, normalized: [1, H, W, 3] float32."""
    from edge_deeplab.runtime.interpreter import normalized_input

    return normalized_input(image_rgb, input_size, resize)[0]


def calibration_images(options: ConvertOptions, input_size):
    """RGB images for post-training calibration: real ones from a folder, or explicit synthetic ones."""
    from edge_deeplab.data.images import read_images
    from edge_deeplab.model.importer import synthetic_images

    if options.synthetic_calibration:
        return synthetic_images(options.num_calibration, input_size), "synthetic"
    return (read_images(options.calibration, options.num_calibration, "to calibrate int8 with"),
            str(options.calibration))


def representative_dataset(images, input_size, resize="letterbox", progress=True):
    """The converter's calibration generator, with progress. The first sample carries one black and one
    white pixel, so that the int8 input covers [-1, 1] exactly: uint8 input then is the raw pixel value
    (what MediaPipe feeds) whatever the calibration images' brightness."""
    from tqdm import tqdm

    def generate():
        for i, image in enumerate(tqdm(images, desc="calibrating", unit="img", file=sys.stderr,
                                       disable=not progress)):
            x = model_input(image, input_size, resize)
            if i == 0:
                x[0, 0, 0], x[0, 0, -1] = -1.0, 1.0
            yield [x]

    return generate


# ----------------------------------------------------------------------------------------- converting
def tflite_bytes(export, options: ConvertOptions, qat=False, calibration=None, progress=True) -> bytes:
    """Run the TFLite converter on an export graph with the quantization of ``options``."""
    converter = tflite_converter(export)
    if options.quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif options.quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif options.quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if not qat:
            dataset = representative_dataset(calibration, export.input_shape[1:3], options.resize, progress)
            converter.representative_dataset = dataset
            if options.float_stem:
                return _run(lambda: _int8_with_float_stem(converter, dataset))
            # (not for a QAT model: TF 2.21 would then demand a representative dataset it does not use)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = {"float": tf.float32, "uint8": tf.uint8, "int8": tf.int8}[options.io]
        converter.inference_input_type = io
        if options.head == "logits":  # class ids stay int32
            converter.inference_output_type = io
    return _run(converter.convert)


def tflite_converter(model):
    """A TFLite converter of a Keras model's forward pass, as one frozen concrete function.

    ``TFLiteConverter.from_keras_model`` first saves a SavedModel, which traces every tf_keras layer's call
    on its own: 38 of the 52 s that converting the tiny test model took (measured with cProfile). One
    concrete function, frozen, gives the same ops in a few seconds (benchmarks/convert_time.md)."""
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    forward = tf.function(lambda *x: model(x[0] if len(x) == 1 else list(x), training=False))
    return tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function(*specs)])


def _run(conversion):
    try:
        return conversion()
    except UserError:
        raise
    except Exception as e:  # ConverterError and friends: a long MLIR dump; its first line says what failed
        raise ModelFileError(f"TFLite conversion failed: {_first_line(e)}") from None


def _int8_with_float_stem(converter, dataset) -> bytes:
    """Full int8 but for the stem conv (the CONV_2D on the 3-channel image), which stays float32.

    On x86 without VNNI, XNNPACK's int8 conv kernels work on 8-channel groups: the stem's 3 input channels
    are padded to 8 and it costs ~3x its float32 version (benchmarks/convert_speed.md); in float it is 2%
    of the multiply-adds. TFLite's quantization debugger quantizes everything else from one calibration.
    """
    from edge_deeplab.tflite.graph import TFLiteGraph

    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset)
    graph = TFLiteGraph(debugger.calibrated_model)
    stem = next((op for op in graph.ops if op["op"] == "CONV_2D" and op["inputs"][0] in graph.inputs), None)
    if stem is None:
        raise OptionError("--float-stem: the model has no convolution on its input image")
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=[graph.tensors[stem["outputs"][0]]["name"]])
    return debugger.get_nondebug_quantized_model()


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def model_class_names(model) -> tuple:
    """The class names the model carries (trained on a dataset that names its classes), else ()."""
    config = getattr(model, "deeplab_config", None)
    return config.class_names if config is not None else ()


def default_labels(num_classes):
    if num_classes == 21:
        from edge_deeplab.data.datasets import VOC_CLASSES

        return list(VOC_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


def describe(model, options: ConvertOptions, qat=False) -> str:
    config = getattr(model, "deeplab_config", None)
    h, w = model.input_shape[1:3]
    arch = model.name
    if config is not None:
        backbone = (f"MobileNetV2 depth {config.depth_multiplier:g}" if config.backbone == "mobilenetv2"
                    else config.backbone)
        arch = f"DeepLab {backbone}, output stride {config.output_stride}" + (", decoder" if config.decoder else "")
    quant = {"fp32": "float32", "fp16": "float16 weights", "dynamic": "dynamic-range int8 weights",
             "int8": f"full int8 ({_int8_origin(options, qat)}), {options.io} input"
                     + (", float32 stem conv" if options.float_stem else "")}
    head = "per-class logits" if options.head == "logits" else (
        "class ids" + (f" (argmax at 1/{options.argmax_stride} resolution)" if options.argmax_stride > 1 else ""))
    return f"{arch}, {h}x{w}; {quant[options.quantize]}; output: {head}. Made by edge-deeplab."


def _int8_origin(options, qat):
    if options.quantization_from:
        return f"the quantization of {Path(options.quantization_from).name}"
    return "quantization-aware trained" if qat else "post-training"


def convert(source, output_path, options: ConvertOptions | None = None, progress=True, **overrides) -> ConversionResult:
    """Convert ``source`` (a Keras model, a .keras / .h5 file or a preset name) to ``output_path``.

    Writes the .tflite (with metadata) and its report (``<name>.report.json``) atomically; returns both.
    Keyword overrides set ConvertOptions fields, e.g. ``convert("m.keras", "m.tflite", quantize="fp16")``.
    """
    from edge_deeplab.export.report import build_report
    from edge_deeplab.io_utils import write_bytes_atomic
    from edge_deeplab.tflite.report import save_report

    options = dataclasses.replace(options or ConvertOptions(), **overrides)
    output_path = Path(output_path)
    if output_path.suffix != ".tflite":
        raise OptionError(f"{output_path}: the converted model is written as a .tflite file")
    options.validate()
    model, keras_model, qat = _model_to_convert(source, options)
    labels = _class_names(model, keras_model, options)
    export = export_model(model, options.head, options.argmax_stride)
    input_size = tuple(export.input_shape[1:3])
    calibration, calibration_source = (calibration_images(options, input_size)
                                       if options.quantize == "int8" and not qat else (None, None))
    content = tflite_bytes(export, options, qat, calibration, progress)
    _check_graph(content, options, output_path.name)
    if options.metadata:
        content = _with_metadata(content, model, labels, options, qat)

    samples, sample_source = _sample_images(options, calibration, calibration_source, input_size)
    compared = export if keras_model is model else export_model(keras_model, options.head, options.argmax_stride)
    report = build_report(
        output_path, keras_model=compared,
        sample_inputs=[model_input(im, input_size, options.resize) for im in samples],
        sample_source=sample_source, num_threads=options.num_threads,
        conversion={"source": str(source) if not hasattr(source, "layers") else model.name,
                    "quantize": options.quantize, "io": options.io, "head": options.head,
                    "argmax_stride": options.argmax_stride, "float_stem": options.float_stem, "qat": qat,
                    "quantization_from": options.quantization_from,
                    "calibration": None if calibration is None else {"images": len(calibration),
                                                                     "source": calibration_source},
                    "labels": labels}, content=content)
    # the report first (it holds the model's SHA-256), then the model: interrupted in between, the report
    # does not match the file beside it and edge_deeplab.tflite.report.read_report says so
    report_path = save_report(report, output_path)
    write_bytes_atomic(output_path, content)
    return ConversionResult(output_path, report_path, report)


def _model_to_convert(source, options: ConvertOptions):
    """(the model to convert, the Keras model the report compares with, whether it converts as QAT)."""
    model = load_source(source)
    logits_layer(model, source=None if hasattr(source, "layers") else source)  # what this converts, checked first
    if options.output_stride:
        model = at_output_stride(model, options.output_stride)
    qat = is_qat_model(model)
    options.validate_for(qat)
    keras_model = model  # what the report compares the .tflite with: the float model, or the QAT one as trained
    if options.quantization_from:
        model, qat = with_source_quantization(model, options.quantization_from), True
    return model, keras_model, qat


def _class_names(model, keras_model, options: ConvertOptions) -> list:
    num_classes = int(model.output_shape[-1])
    labels = list(options.labels or model_class_names(keras_model) or default_labels(num_classes))
    if len(labels) != num_classes:
        raise OptionError(f"{len(labels)} labels for a model with {num_classes} classes")
    return labels


def _check_graph(content: bytes, options: ConvertOptions, name: str):
    """Refuse ops no delegate runs; for int8, an untrained input range; warn of float ops left inside."""
    from edge_deeplab.tflite.graph import TFLiteGraph
    from edge_deeplab.tflite.report import check_input_scale

    graph = TFLiteGraph(content, name)
    bad = sorted(set(graph.op_counts()) & set(FORBIDDEN_OPS))
    if bad:
        raise ModelFileError(f"the converted model holds {', '.join(bad)} (slow, not run by XNNPACK or GPU "
                             "delegates); export with a fixed input shape and batch 1")
    if options.quantize == "int8":
        check_input_scale(graph, source=name)
        inner = graph.float_ops()[1]
        if options.float_stem:  # asked for: the stem conv and the QUANTIZE after it
            inner.remove("CONV_2D")
            inner.remove("QUANTIZE")
        if inner:  # the converter keeps an op in float when it has no int8 kernel for it
            warn(f"float ops left inside the int8 model: {', '.join(inner)}")


def _with_metadata(content: bytes, model, labels, options: ConvertOptions, qat) -> bytes:
    from edge_deeplab.tflite.metadata import SegmenterMetadata, with_segmenter_metadata

    io_dtype = "float32" if options.io == "float" else options.io
    meta = SegmenterMetadata(name=options.name or model.name, labels=labels, version=options.version,
                             description=describe(model, options, qat), input_dtype=io_dtype,
                             output_kind=options.head)
    return with_segmenter_metadata(content, meta)


def _sample_images(options, calibration, calibration_source, input_size):
    """Images to compare the .tflite with Keras on: --samples, else the calibration images, else synthetic."""
    from edge_deeplab.data.images import read_images
    from edge_deeplab.model.importer import synthetic_images

    if options.samples:
        return read_images(options.samples, options.num_samples, "to compare with"), str(options.samples)
    if calibration is not None and calibration_source != "synthetic":
        n = min(options.num_samples, len(calibration))
        return [calibration[i * len(calibration) // n] for i in range(n)], calibration_source
    return synthetic_images(options.num_samples, input_size, seed=1), "synthetic"
