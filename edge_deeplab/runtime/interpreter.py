"""Run a segmentation .tflite without TensorFlow: numpy, OpenCV and ai-edge-litert only.

``SegmentationModel(path)`` loads any DeepLab-style model (this project's or the official ones):
float / uint8 / int8 input, logits ``[1,H,W,C]`` or label ``[1,H,W]`` output. It reads the model's
metadata (normalization, labels) when present, fits any BGR image to the model input (letterbox or
stretch) and maps the mask back to the image's own size.

The interpreter comes from ai-edge-litert; tflite-runtime and then tf.lite are fallbacks for machines
that lack it.
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_deeplab.choices import RESIZE_MODES, check_choice
from edge_deeplab.errors import DataError, ModelFileError, OptionError
from edge_deeplab.tflite.graph import read_model_file
from edge_deeplab.tflite.metadata import parse_labels, read_metadata
from edge_deeplab.tflite.quantization import quantize

# DeepLab's input normalization, x / 127.5 - 1, used when a model carries no metadata.
DEFAULT_MEAN, DEFAULT_STD = 127.5, 127.5
MAX_CLASSES = 256  # masks are uint8


def default_num_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _interpreter_module():
    """The module that provides Interpreter and load_delegate: ai-edge-litert, or tflite-runtime."""
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter
        return interpreter
    except ImportError:
        pass
    raise ModelFileError("no TFLite runtime found: pip install ai-edge-litert")


def make_interpreter(model_content: bytes, num_threads: int, delegate="xnnpack", delegate_options=None,
                     source="model"):
    """An allocated Interpreter for ``model_content``.

    delegate: 'xnnpack' (the runtime's default CPU delegate), 'cpu' (plain built-in kernels, XNNPACK
    off) or the path of an external delegate library (e.g. the GPU delegate), loaded with
    ``delegate_options``.
    """
    module = _interpreter_module()
    kwargs = {"model_content": model_content, "num_threads": int(num_threads)}
    if delegate == "cpu":
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif delegate != "xnnpack":
        if not Path(delegate).is_file():
            raise OptionError(f"delegate must be 'xnnpack', 'cpu' or a delegate library file; {delegate} not found")
        try:
            # check the library first: one that fails inside load_delegate leaves a Delegate object whose
            # destructor raises again (ai-edge-litert 2.3)
            library = ctypes.CDLL(str(delegate))
            if not all(hasattr(library, f"tflite_plugin_{verb}_delegate") for verb in ("create", "destroy")):
                raise ValueError("not a TFLite delegate library: no tflite_plugin_create_delegate")
            kwargs["experimental_delegates"] = [module.load_delegate(str(delegate), delegate_options or {})]
        except (ValueError, OSError, RuntimeError) as e:
            raise ModelFileError(f"{delegate}: cannot load delegate ({_first_line(e)})") from None
    try:
        interpreter = module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except CORRUPT_MODEL_ERRORS as e:
        raise ModelFileError(f"{source}: not a loadable TFLite model ({_first_line(e)})") from None
    return interpreter


# what the interpreter raises on a damaged model file (UnicodeDecodeError: tensor names that are not UTF-8)
CORRUPT_MODEL_ERRORS = (ValueError, RuntimeError, UnicodeDecodeError, IndexError, KeyError, OverflowError)
def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass
class ModelInfo:
    """What a segmentation .tflite expects and returns (JSON-able via ``to_dict``; field names are stable)."""

    name: str
    input_height: int
    input_width: int
    input_dtype: str  # 'float32', 'uint8' or 'int8'
    input_scale: float  # quantization of the input tensor: real = (q - zero_point) * scale; 0 for float
    input_zero_point: int
    norm_mean: list[float]  # per RGB channel, pixel units: model input = (pixel - mean) / std
    norm_std: list[float]
    output_kind: str  # 'logits' ([1,H,W,C] class scores) or 'labels' ([1,H,W] class ids)
    output_dtype: str
    output_scale: float
    output_zero_point: int
    num_classes: int | None  # None when a label-output model does not reveal it
    labels: list[str] | None
    output_height: int = 0
    output_width: int = 0
    normalization_source: str = "default"  # 'metadata' or 'default' (DeepLab's x / 127.5 - 1)

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Placement:
    """Where an image sits in the model input: rows top..top+height, columns left..left+width."""

    top: int
    left: int
    height: int
    width: int

    @staticmethod
    def fit(image_hw, input_hw, mode="letterbox"):
        (h, w), (H, W) = image_hw, input_hw
        if mode == "stretch":
            return Placement(0, 0, H, W)
        scale = min(H / h, W / w)
        height, width = min(H, max(1, round(h * scale))), min(W, max(1, round(w * scale)))
        return Placement((H - height) // 2, (W - width) // 2, height, width)

    def scaled(self, input_hw, output_hw):
        """The same region in an output grid of another size (e.g. logits at a lower resolution)."""
        (H, W), (oh, ow) = input_hw, output_hw
        if (H, W) == (oh, ow):
            return self
        top, left = round(self.top * oh / H), round(self.left * ow / W)
        bottom, right = round((self.top + self.height) * oh / H), round((self.left + self.width) * ow / W)
        return Placement(top, left, max(1, bottom - top), max(1, right - left))


def normalized_input(image_rgb: np.ndarray, input_hw, mode="letterbox"):
    """An RGB uint8 image fitted into a float model's input as the runtime fits it, DeepLab-normalized
    (x / 127.5 - 1; the padding is 0, the mean pixel): ([1, H, W, 3] float32, Placement). For Keras models,
    which take the float image."""
    h, w = input_hw
    p = Placement.fit(image_rgb.shape[:2], (h, w), mode)
    if (p.height, p.width) != image_rgb.shape[:2]:
        image_rgb = cv2.resize(image_rgb, (p.width, p.height), interpolation=cv2.INTER_LINEAR)
    x = np.zeros((1, h, w, 3), np.float32)
    x[0, p.top:p.top + p.height, p.left:p.left + p.width] = image_rgb / np.float32(127.5) - 1
    return x, p


@dataclass
class SegmentationResult:
    mask: np.ndarray  # HxW uint8 class ids at the size of the input image
    preprocess_ms: float  # fit, normalize, copy into the interpreter
    invoke_ms: float  # the interpreter's invoke alone
    postprocess_ms: float  # crop, argmax (logits), resize back
    latency_ms: float = field(init=False)  # the three together

    def __post_init__(self):
        self.latency_ms = self.preprocess_ms + self.invoke_ms + self.postprocess_ms


class SegmentationModel:
    """A segmentation .tflite ready to run on BGR images (as OpenCV reads them).

    >>> model = SegmentationModel("deeplab.tflite", num_threads=2)
    >>> result = model.segment(cv2.imread("street.jpg"))
    >>> result.mask.shape, result.latency_ms
    """

    def __init__(self, path, num_threads=None, delegate="xnnpack", delegate_options=None, resize="letterbox",
                 labels=None):
        check_choice("resize", resize, RESIZE_MODES)
        self.path = Path(path)
        self.num_threads = int(num_threads or default_num_threads())
        self.delegate = str(delegate)
        self.resize = resize
        content = read_model_file(self.path)
        self._interpreter = make_interpreter(content, self.num_threads, self.delegate, delegate_options,
                                             source=self.path)
        try:  # a corrupt model can load and still fail here (tensor names that are not UTF-8, say)
            self._input = self._interpreter.get_input_details()
            self._output = self._interpreter.get_output_details()
            self.info = self._describe(read_metadata(content, source=self.path), labels)
        except CORRUPT_MODEL_ERRORS as e:
            raise ModelFileError(f"{self.path}: corrupt model ({_first_line(e)})") from None
        self._input_index, self._output_index = self._input[0]["index"], self._output[0]["index"]
        self._buffer = np.empty((1, self.info.input_height, self.info.input_width, 3), self._input[0]["dtype"])
        self._zero = self._buffer.dtype.type(self.info.input_zero_point)  # normalized 0 = the mean pixel
        self._lut = self._pixel_lut()
        self._placement = None

    # -------------------------------------------------------------------------------------- description
    def _describe(self, meta, labels) -> ModelInfo:
        bad = f"{self.path}: not a segmentation model"
        if len(self._input) != 1:
            raise ModelFileError(f"{bad} (it has {len(self._input)} inputs; expected one image)")
        inp, out = self._input[0], self._output[0]
        if len(inp["shape"]) != 4 or inp["shape"][0] != 1 or inp["shape"][3] != 3:
            raise ModelFileError(f"{bad} (input shape {inp['shape'].tolist()}; expected [1, H, W, 3])")
        if inp["dtype"] not in (np.float32, np.uint8, np.int8):
            raise ModelFileError(f"{bad} (input type {np.dtype(inp['dtype']).name}; expected float32, uint8 or int8)")
        shape, dtype = out["shape"].tolist(), np.dtype(out["dtype"])
        is_int = np.issubdtype(dtype, np.integer)
        out_scale, out_zero = out["quantization"]
        if len(shape) == 3 and is_int:
            kind, num_classes = "labels", self._argmax_depth()
        elif len(shape) == 4 and shape[3] == 1 and is_int and not out_scale:
            kind, num_classes = "labels", self._argmax_depth()
        elif len(shape) == 4 and shape[3] >= 2 and (dtype == np.float32 or (is_int and out_scale)):
            kind, num_classes = "logits", int(shape[3])
        else:
            raise ModelFileError(f"{bad} (output {shape} {dtype.name}; expected [1, H, W, classes] scores "
                            "or [1, H, W] class ids)")
        if shape[0] != 1:
            raise ModelFileError(f"{bad} (output batch {shape[0]}; expected 1)")

        if isinstance(labels, (str, Path)):
            labels = read_labels_file(labels)
        labels = list(labels) if labels else (meta.labels if meta else None)
        if labels and num_classes and len(labels) != num_classes:
            raise ModelFileError(f"{self.path}: {len(labels)} labels for a model with {num_classes} classes")
        num_classes = num_classes or (len(labels) if labels else None)
        if num_classes and num_classes > MAX_CLASSES:
            raise ModelFileError(f"{self.path}: {num_classes} classes; at most {MAX_CLASSES} are supported")

        in_scale, in_zero = inp["quantization"]
        has_norm = bool(meta and meta.norm_mean and meta.norm_std)
        mean = meta.norm_mean if has_norm else [DEFAULT_MEAN]
        std = meta.norm_std if has_norm else [DEFAULT_STD]
        return ModelInfo(
            name=(meta.name if meta and meta.name else self.path.stem),
            input_height=int(inp["shape"][1]), input_width=int(inp["shape"][2]),
            input_dtype=np.dtype(inp["dtype"]).name,
            input_scale=float(in_scale), input_zero_point=int(in_zero),
            norm_mean=[float(v) for v in np.broadcast_to(mean, 3)],
            norm_std=[float(v) for v in np.broadcast_to(std, 3)],
            output_kind=kind, output_dtype=dtype.name,
            output_scale=float(out_scale), output_zero_point=int(out_zero),
            num_classes=num_classes, labels=labels,
            output_height=int(shape[1]), output_width=int(shape[2]),
            normalization_source="metadata" if has_norm else "default",
        )

    def _argmax_depth(self):
        """Number of classes of a label-output model: the depth of the tensor its final ARG_MAX reads."""
        try:  # a private but long-standing Interpreter method (tf.lite, tflite-runtime, ai-edge-litert)
            ops = self._interpreter._get_ops_details()
            tensors = {t["index"]: t for t in self._interpreter.get_tensor_details()}
        except AttributeError:
            return None
        for op in ops:
            if self._output[0]["index"] in op["outputs"] and op["op_name"] == "ARG_MAX":
                return int(tensors[op["inputs"][0]]["shape"][-1])
        return None

    def _pixel_lut(self):
        """Pixel value (0..255, RGB channel) -> model input value: normalization then quantization."""
        pixels = np.arange(256, dtype=np.float64)[:, None]
        real = (pixels - np.array(self.info.norm_mean)) / np.array(self.info.norm_std)
        if self._buffer.dtype == np.float32:
            table = real.astype(np.float32)
        else:
            table = quantize(real, self.info.input_scale, self.info.input_zero_point, self._buffer.dtype)
        if (table == table[:, :1]).all():
            return np.ascontiguousarray(table[:, 0])  # one table for all channels
        return np.ascontiguousarray(table.reshape(1, 256, 3))

    # ---------------------------------------------------------------------------------------- running
    def preprocess(self, image_bgr: np.ndarray):
        """Fit ``image_bgr`` into the model input. Returns (input tensor, Placement).

        The tensor is a buffer this model reuses: it is valid until the next call.
        """
        image = _as_bgr(image_bgr)
        H, W = self.info.input_height, self.info.input_width
        placement = Placement.fit(image.shape[:2], (H, W), self.resize)
        if placement != self._placement:  # a new geometry: clear the padding
            self._buffer.fill(self._zero)
            self._placement = placement
        p = placement
        if (p.height, p.width) != image.shape[:2]:
            image = cv2.resize(image, (p.width, p.height), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        self._buffer[0, p.top:p.top + p.height, p.left:p.left + p.width] = cv2.LUT(rgb, self._lut)
        return self._buffer, placement

    def invoke(self, input_tensor: np.ndarray) -> float:
        """Run the model on a preprocessed input; returns the time of the interpreter's invoke in ms."""
        self._interpreter.set_tensor(self._input_index, input_tensor)
        start = time.perf_counter()
        try:
            self._interpreter.invoke()
        except RuntimeError as e:
            raise ModelFileError(f"{self.path}: inference failed ({_first_line(e)})") from None
        return (time.perf_counter() - start) * 1e3

    def raw_output(self) -> np.ndarray:
        """A copy of the output tensor of the last invoke (logits or class ids, as the model gives them)."""
        return self._interpreter.get_tensor(self._output_index)

    def postprocess(self, placement: Placement, image_hw) -> np.ndarray:
        """Class ids of the last invoke, cropped to the image's region and resized to ``image_hw``."""
        out = self._interpreter.tensor(self._output_index)()[0]  # a view: no copy of the whole output
        p = placement.scaled((self.info.input_height, self.info.input_width), out.shape[:2])
        region = out[p.top:p.top + p.height, p.left:p.left + p.width]
        if self.info.output_kind == "logits":
            labels = argmax_channels(region)  # on the crop: the smallest tensor
        else:
            labels = region.reshape(region.shape[:2]).astype(np.uint8)
        del out, region  # the interpreter refuses to run while views of its tensors are alive
        h, w = image_hw
        if labels.shape != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        return labels

    def segment(self, image_bgr: np.ndarray) -> SegmentationResult:
        """Segment one BGR image; the mask has the image's size."""
        start = time.perf_counter()
        tensor, placement = self.preprocess(image_bgr)
        invoke_ms = self.invoke(tensor)
        invoked = time.perf_counter()
        mask = self.postprocess(placement, image_bgr.shape[:2])
        preprocess_ms = (invoked - start) * 1e3 - invoke_ms  # includes copying the input into the interpreter
        return SegmentationResult(mask, preprocess_ms, invoke_ms, (time.perf_counter() - invoked) * 1e3)

    def predict_labels(self, image_bgr: np.ndarray) -> np.ndarray:
        """HxW uint8 class ids for a BGR image, at the image's size."""
        return self.segment(image_bgr).mask

    def __repr__(self):
        i = self.info
        return (f"SegmentationModel({str(self.path)!r}, {i.input_height}x{i.input_width} {i.input_dtype} -> "
                f"{i.output_kind}, {i.num_classes} classes, threads={self.num_threads}, "
                f"delegate={self.delegate!r}, resize={self.resize!r})")


def argmax_channels(logits: np.ndarray) -> np.ndarray:
    """``logits.argmax(-1)`` as uint8 for HxWxC scores (float32, uint8 or int8; C <= 256), ties to the first.

    Channel-planar OpenCV passes: 3-5x faster than numpy's argmax, which loops over the many short
    rows of an HxWxC tensor one by one.
    """
    h, w, c = logits.shape
    planes = cv2.transpose(np.ascontiguousarray(logits).reshape(h * w, c))  # C x HW
    best = planes[0:1].copy()
    labels = np.zeros((1, h * w), np.uint8)
    for k in range(1, c):
        better = cv2.compare(planes[k:k + 1], best, cv2.CMP_GT)  # 255 where channel k wins so far
        # k exceeds every label set so far, so max() writes k exactly where channel k wins
        cv2.max(labels, cv2.bitwise_and(better, k), dst=labels)
        cv2.max(best, planes[k:k + 1], dst=best)
    return labels.reshape(h, w)


def _as_bgr(image):
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        raise DataError("image must be a non-empty uint8 array (BGR, as cv2.imread gives)")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise DataError(f"image must be HxW, HxWx3 or HxWx4; got shape {image.shape}")


def read_labels_file(path) -> list:
    """Class names from a labels file (one per line, as TFLite metadata's), or a one-line error."""
    try:
        labels = parse_labels(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: cannot read labels ({getattr(e, 'strerror', None) or e})") from None
    if not labels:
        raise ModelFileError(f"{path}: no labels in the file (one per line)")
    return labels
