"""Import stage: an official DeepLab TFLite model -> this project's Keras model carrying its weights.

The official pretrained DeepLab weights are published only inside TFLite models (the float 257 GPU
model, the 8-bit quantization-aware trained 513 models). This module

1. reads the graph (edge_deeplab.tflite.graph) and walks it from the
   image-pooling branch of the head back to the input, so the match does not depend on the order in
   which a converter happened to emit the two ASPP branches;
2. works out the architecture (depth multiplier, output stride, input size, classes, head width);
3. builds that network with ``build_deeplab`` and loads the weights layer by layer, checking kernel
   shape, stride, dilation, padding and activation of every convolution against the graph. BatchNorm
   was folded into the convolutions, so each BatchNormalization is loaded as an exact identity that
   carries the folded bias (gamma 1, beta = bias, mean 0, variance 1 - epsilon): the Keras model
   computes the same function and can still be fine-tuned. Quantized weights are dequantized with
   their (per-tensor or per-channel) scales and zero points;
4. verifies the result: runs the Keras model and the source model on the same images and measures
   the argmax pixel agreement (and, for a float source, the largest logit difference).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np

from edge_deeplab.choices import (
    DEPTH_MULTIPLIERS,
    MIN_AGREEMENT_FLOAT,
    MIN_AGREEMENT_QUANTIZED,
    OUTPUT_STRIDES,
)
from edge_deeplab.config import DeepLabConfig
from edge_deeplab.data.images import read_images
from edge_deeplab.errors import ModelFileError
from edge_deeplab.tflite.graph import TFLiteGraph
from edge_deeplab.tflite.quantization import dequantize, quantize

EXPECTED = "expected an official DeepLab MobileNetV2 TFLite model (e.g. deeplabv3_257_mv_gpu.tflite)"

_ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}
HEAD_LAYERS = ("image_pooling_conv", "aspp0", "concat_projection", "logits")


def _read_graph(path) -> TFLiteGraph:
    try:
        return TFLiteGraph.read(path)
    except ModelFileError as e:
        raise ModelFileError(f"{e}; {EXPECTED}") from None


@dataclasses.dataclass
class SourceConv:
    """One CONV_2D / DEPTHWISE_CONV_2D of the source graph, its weights already in Keras layout."""

    op: int  # position in the graph
    name: str  # the weight tensor's name in the graph
    depthwise: bool
    kernel: np.ndarray  # Conv2D: [kh, kw, in, out]; DepthwiseConv2D: [kh, kw, in, 1]
    bias: np.ndarray
    stride: int
    dilation: int
    padding: str  # "same" | "valid"
    activation: str  # "none" | "relu" | "relu6" (fused into the op)
    quantized: bool

    def describe(self):
        kind = "DEPTHWISE_CONV_2D" if self.depthwise else "CONV_2D"
        return (f"{kind} #{self.op} {self.name} kernel {list(self.kernel.shape)} stride {self.stride} "
                f"dilation {self.dilation} padding {self.padding} activation {self.activation}")


def _source_conv(g: TFLiteGraph, op: int) -> SourceConv:
    operator, kind = g.ops[op], g.op_types[op]
    if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        raise ModelFileError(f"{g.source}: op #{op} is {kind} where a convolution was expected; {EXPECTED}")
    o = operator["options"]
    if o.strideH != o.strideW or o.dilationHFactor != o.dilationWFactor:
        raise ModelFileError(f"{g.source}: op #{op} has unequal strides or dilations; {EXPECTED}")
    weights = g.values(operator["inputs"][1])  # CONV_2D: [out, kh, kw, in]; DEPTHWISE: [1, kh, kw, in * mult]
    depthwise = kind == "DEPTHWISE_CONV_2D"
    if depthwise:
        _, kh, kw, channels = weights.shape
        kernel = weights.reshape(kh, kw, channels // o.depthMultiplier, o.depthMultiplier)
        out = channels
    else:
        kernel = weights.transpose(1, 2, 3, 0)
        out = weights.shape[0]
    has_bias = len(operator["inputs"]) > 2 and operator["inputs"][2] >= 0
    bias = g.values(operator["inputs"][2]) if has_bias else np.zeros(out, np.float32)
    return SourceConv(
        op=op, name=g.name(operator["inputs"][1]), depthwise=depthwise, kernel=np.ascontiguousarray(kernel),
        bias=bias.reshape(out), stride=int(o.strideH), dilation=int(o.dilationHFactor),
        padding="same" if o.padding == 0 else "valid",
        activation=_ACTIVATIONS.get(o.fusedActivationFunction, f"fused-{o.fusedActivationFunction}"),
        quantized=g.quantization(operator["inputs"][1]) is not None,
    )


# ------------------------------------------------------------------------------------ architecture
@dataclasses.dataclass
class OfficialDeepLab:
    """What the source graph is: its architecture as a DeepLabConfig, its I/O and its convolutions."""

    path: Path
    config: DeepLabConfig
    input_dtype: str  # "float32" | "uint8" | "int8"
    input_scale: float  # input quantization (0 for a float input)
    input_zero_point: int
    output_kind: str  # "logits" ([1,H,W,C] scores) | "labels" ([1,H,W] class ids from ARG_MAX)
    quantized: bool  # the weights are 8-bit (quantization-aware trained)
    backbone: list  # SourceConv, in the order of the network
    head: dict  # HEAD_LAYERS name -> SourceConv
    residual_adds: int

    def describe(self) -> str:
        c = self.config
        h, w = c.input_size
        weights = "8-bit quantized weights" if self.quantized else "float weights"
        return (f"{self.path.name}: DeepLabv3 MobileNetV2 depth {c.depth_multiplier:g}, output stride "
                f"{c.output_stride}, {h}x{w} {self.input_dtype} input, {c.num_classes} classes "
                f"({self.output_kind} out), mobile head ({c.aspp_channels} channels), {weights}")


def read_official_tflite(path, graph: TFLiteGraph | None = None) -> OfficialDeepLab:
    """Read an official DeepLab MobileNetV2 TFLite model and work out its architecture (``graph``: the
    file already read)."""
    g = graph or _read_graph(path)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ModelFileError(f"{g.source}: {len(g.inputs)} inputs and {len(g.outputs)} outputs; {EXPECTED}")
    image = g.inputs[0]
    shape, in_type = g.shape(image), g.numpy_type(image)
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or in_type not in (np.float32, np.uint8, np.int8):
        raise ModelFileError(f"{g.source}: its input {list(shape)} {np.dtype(in_type).name if in_type else '?'} is not "
                        f"one [1, H, W, 3] float32 or uint8 image; {EXPECTED}")
    head_ops, features = _find_head(g)
    head = {name: _source_conv(g, op) for name, op in head_ops.items()}
    backbone_ops = sorted(op for op in g.ancestors(features) if g.op_types[op] in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    backbone = [_source_conv(g, op) for op in backbone_ops]
    if not backbone:
        raise ModelFileError(f"{g.source}: no backbone convolutions before the head; {EXPECTED}")
    output_kind = _check_output(g, head_ops["logits"])
    output_stride = math.prod(c.stride for c in backbone)
    if output_stride not in OUTPUT_STRIDES:
        raise ModelFileError(f"{g.source}: the backbone downsamples {output_stride}x; expected an output stride in "
                        f"{OUTPUT_STRIDES}")
    depth, rounding = _depth_multiplier(g, backbone)
    in_quant = g.quantization(image)
    config = DeepLabConfig(
        backbone="mobilenetv2", depth_multiplier=depth, width_rounding=rounding, output_stride=output_stride,
        input_size=shape[1:3], num_classes=int(head["logits"].kernel.shape[-1]), aspp="mobile",
        aspp_channels=int(head["aspp0"].kernel.shape[-1]))
    return OfficialDeepLab(
        path=Path(g.source), config=config, input_dtype=np.dtype(in_type).name,
        input_scale=float(in_quant[0][0]) if in_quant and in_type != np.float32 else 0.0,
        input_zero_point=int(in_quant[1][0]) if in_quant and in_type != np.float32 else 0,
        output_kind=output_kind, quantized=any(c.quantized for c in backbone + list(head.values())),
        backbone=backbone, head=head,
        residual_adds=sum(g.op_types[op] == "ADD" for op in g.ancestors(features)),
    )


def _find_head(g: TFLiteGraph):
    """The mobile DeepLab head: image pooling (AVERAGE_POOL_2D or MEAN -> 1x1 conv -> broadcast) and one
    1x1 branch on the same features, concatenated, projected, then the logits conv.

    Returns ({head layer name: op}, the backbone feature tensor).
    """
    pools = [i for i, t in enumerate(g.op_types) if t in ("AVERAGE_POOL_2D", "MEAN")]
    pool_convs = [(p, c) for p in pools for c in g.next_ops(g.ops[p]["outputs"][0]) if g.op_types[c] == "CONV_2D"]
    if len(pool_convs) != 1:
        raise ModelFileError(f"{g.source}: no DeepLab image-pooling branch (a global average pool feeding a 1x1 "
                        f"convolution) found; {EXPECTED}")
    pool, image_pooling = pool_convs[0]
    features = g.ops[pool]["inputs"][0]
    concat = [c for c in g.next_ops(g.ops[image_pooling]["outputs"][0]) if g.op_types[c] == "CONCATENATION"]
    if len(concat) != 1:
        raise ModelFileError(f"{g.source}: the image-pooling branch does not feed one concatenation; {EXPECTED}")
    branches = [g.source_op(t) for t in g.ops[concat[0]]["inputs"]]
    if len(branches) != 2 or branches[0] != image_pooling:
        raise ModelFileError(f"{g.source}: the ASPP concatenates {len(branches)} branches; only the mobile head "
                        f"[image pooling, one 1x1 conv] (in that order) of the official MobileNetV2 models "
                        f"is supported")
    aspp0 = branches[1]
    if g.op_types[aspp0] != "CONV_2D" or g.source_op(g.ops[aspp0]["inputs"][0]) != g.source_op(features):
        raise ModelFileError(f"{g.source}: the second ASPP branch is not a convolution of the backbone features; {EXPECTED}")
    projection = _single_conv_after(g, concat[0], "the ASPP concatenation")
    logits = _single_conv_after(g, projection, "the ASPP projection (a DeepLabv3+ decoder is not supported)")
    return {"image_pooling_conv": image_pooling, "aspp0": aspp0, "concat_projection": projection,
            "logits": logits}, features


def _single_conv_after(g, op, what):
    nxt = g.next_ops(g.ops[op]["outputs"][0])
    if len(nxt) != 1 or g.op_types[nxt[0]] != "CONV_2D":
        found = ", ".join(g.op_types[i] for i in nxt) or "nothing"
        raise ModelFileError(f"{g.source}: {what} feeds {found}, not one 1x1 convolution; {EXPECTED}")
    return nxt[0]


def _check_output(g: TFLiteGraph, logits_op: int) -> str:
    """The logits reach the graph output through corner-aligned bilinear resizes and an optional ARG_MAX."""
    tensor, kind = g.ops[logits_op]["outputs"][0], "logits"
    while tensor != g.outputs[0]:
        nxt = g.consumers.get(tensor, [])
        if len(nxt) != 1 or g.op_types[nxt[0]] not in ("RESIZE_BILINEAR", "QUANTIZE", "DEQUANTIZE", "ARG_MAX"):
            raise ModelFileError(f"{g.source}: the logits reach the output through unexpected ops; {EXPECTED}")
        op = nxt[0]
        if g.op_types[op] == "RESIZE_BILINEAR" and not g.ops[op]["options"].alignCorners:
            raise ModelFileError(f"{g.source}: the logits are resized without align_corners; this project's "
                            f"DeepLab resizes corner-aligned, as the official models do")
        kind = "labels" if g.op_types[op] == "ARG_MAX" else kind
        tensor = g.ops[op]["outputs"][0]
    return kind


def _depth_multiplier(g: TFLiteGraph, backbone):
    """The (depth multiplier, width rounding) whose MobileNetV2 widths are those of the graph."""
    from edge_deeplab.model.mobilenet_v2 import widths

    found = [(c.depthwise, c.kernel.shape[2] * c.kernel.shape[3] if c.depthwise else c.kernel.shape[3])
             for c in backbone]
    for rounding in ("deeplab", "keras"):
        for depth in DEPTH_MULTIPLIERS:
            first, plan = widths(depth, rounding)
            expected, cin = [(False, first)], first
            for expansion, cout, _ in plan:
                if expansion:
                    expected.append((False, expansion))
                expected += [(True, expansion or cin), (False, cout)]
                cin = cout
            if expected == found:
                return depth, rounding
    channels = [n for _, n in found[:9]]
    raise ModelFileError(f"{g.source}: backbone widths {channels}... match no MobileNetV2 depth multiplier in "
                    f"{DEPTH_MULTIPLIERS}; {EXPECTED}")


# ------------------------------------------------------------------------------------ Keras model
def import_tflite(path):
    """The Keras model (built with build_deeplab) computing what the official TFLite model at ``path``
    computes, at the same architecture. Returns (model, OfficialDeepLab)."""
    from edge_deeplab.model.deeplab import build_deeplab

    source = read_official_tflite(path)
    model = build_deeplab(source.config)
    load_weights(model, source)
    return model, source


def load_weights(model, source: OfficialDeepLab):
    """Load the source's convolutions into ``model``, checking each layer against the graph."""
    pairs = _conv_pairs(model, source)
    for layer, conv in pairs:
        _check_layer(layer, conv, source.path)
    for layer, conv in pairs:
        bn = _following_batch_norm(layer)
        if bn is None:
            layer.set_weights([conv.kernel, conv.bias])
        else:
            layer.set_weights([conv.kernel])
            bn.set_weights(_identity_batch_norm(conv.bias, bn.epsilon))


def _conv_pairs(model, source: OfficialDeepLab) -> list:
    """(Keras conv layer, SourceConv) in network order; UserError when the counts do not match."""
    import tf_keras as keras

    convs = [layer for layer in model.layers if type(layer) in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)]
    backbone = [layer for layer in convs if layer.name not in HEAD_LAYERS]
    if len(backbone) != len(source.backbone) or any(n not in [c.name for c in convs] for n in HEAD_LAYERS):
        raise ModelFileError(f"{source.path}: the graph has {len(source.backbone)} backbone convolutions but the "
                        f"model {model.name} has {len(backbone)}: not the architecture of this graph")
    adds = sum(type(layer) is keras.layers.Add for layer in model.layers)
    if adds != source.residual_adds:
        raise ModelFileError(f"{source.path}: the graph has {source.residual_adds} residual additions, the model "
                        f"{model.name} {adds}: not the architecture of this graph")
    return list(zip(backbone, source.backbone)) + [(model.get_layer(n), source.head[n]) for n in HEAD_LAYERS]


def _check_layer(layer, conv: SourceConv, path):
    import tf_keras as keras

    depthwise = type(layer) is keras.layers.DepthwiseConv2D
    expected_kernel = _kernel_shape(layer)
    pointwise = expected_kernel[:2] == (1, 1)  # padding does not matter for a 1x1 kernel
    ours = (depthwise, expected_kernel, layer.strides[0], layer.dilation_rate[0],
            "any" if pointwise else layer.padding, _keras_activation(layer))
    theirs = (conv.depthwise, conv.kernel.shape, conv.stride, conv.dilation,
              "any" if pointwise else conv.padding, conv.activation)
    if ours != theirs:
        raise ModelFileError(
            f"{path}: layer {layer.name} ({'depthwise' if depthwise else 'conv'} kernel {list(expected_kernel)} "
            f"stride {ours[2]} dilation {ours[3]} padding {ours[4]} activation {ours[5]}) does not match the "
            f"graph's {conv.describe()}")


def _kernel_shape(layer) -> tuple:
    import tf_keras as keras

    return tuple((layer.depthwise_kernel if type(layer) is keras.layers.DepthwiseConv2D else layer.kernel).shape)


def _following_batch_norm(layer):
    import tf_keras as keras

    nxt = [node.outbound_layer for node in layer._outbound_nodes]
    return nxt[0] if len(nxt) == 1 and type(nxt[0]) is keras.layers.BatchNormalization else None


def _fused_chain(layer):
    """(the last of conv -> [BatchNorm], the ReLU after it or None): what a TFLite graph fuses into one conv."""
    import tf_keras as keras

    after = _following_batch_norm(layer) or layer
    relus = [node.outbound_layer for node in after._outbound_nodes
             if type(node.outbound_layer) is keras.layers.ReLU]
    return after, (relus[0] if relus else None)


def _keras_activation(layer) -> str:
    """The activation applied to a conv's output in the Keras graph (after its BatchNorm, if any)."""
    relu = _fused_chain(layer)[1]
    if relu is None:
        return "none"
    return "relu6" if relu.max_value is not None and float(relu.max_value) == 6.0 else "relu"


def _identity_batch_norm(bias, epsilon):
    """[gamma, beta, moving mean, moving variance] of a BatchNorm that only adds ``bias``.

    variance = 1 - epsilon, so that variance + epsilon is exactly 1 and inference multiplies by 1.
    """
    channels = bias.shape[0]
    variance = np.float32(1.0) - np.float32(epsilon)
    if np.float32(variance + np.float32(epsilon)) != np.float32(1.0):
        raise AssertionError(f"BatchNorm epsilon {epsilon} cannot give an exact identity in float32")
    return [np.ones(channels, np.float32), bias.astype(np.float32), np.zeros(channels, np.float32),
            np.full(channels, variance, np.float32)]


# ------------------------------------------------------------------------------------ quantization
@dataclasses.dataclass
class SourceQuantization:
    """The 8-bit quantization a quantization-aware trained official model runs with, keyed by the names
    of the layers of a Keras model of the same architecture (edge_deeplab.train.qat.apply_source_quantization)."""

    path: Path
    activation_ranges: dict  # layer name -> (min, max) of its output: conv blocks, residual adds, concat
    weight_scales: dict  # conv layer name -> the (per-tensor) scale of its 8-bit weights
    new_layers: tuple = ()  # the model's layers the official model does not have (a new classifier)


def read_quantization(model, path) -> SourceQuantization:
    """The activation ranges and weight scales of the official quantized model at ``path``, mapped onto
    ``model`` (the same architecture at any input size or output stride, e.g. imported from ``path``).
    A classifier for another number of classes (``logits``: a new head fine-tuned on these weights) has no
    official quantization; it is left out, and named in ``new_layers``.

    A conv's range is that of the graph's conv output, which has its BatchNorm and ReLU fused: in the
    Keras model the last layer of the conv -> BatchNorm -> ReLU chain. Residual additions and the ASPP
    concatenation are matched in graph order.
    """
    import tf_keras as keras

    g = _read_graph(path)
    source = read_official_tflite(path, g)
    if not source.quantized:
        raise ModelFileError(f"{source.path}: float weights, no 8-bit quantization to carry over")
    pairs, new_layers = [], []
    for layer, conv in _conv_pairs(model, source):
        kernel = _kernel_shape(layer)
        if kernel == conv.kernel.shape:
            pairs.append((layer, conv))
        elif layer.name == "logits" and kernel[:-1] == conv.kernel.shape[:-1]:
            new_layers.append(layer.name)
        else:
            raise ModelFileError(f"{source.path}: layer {layer.name} has kernel {list(kernel)}, the graph's "
                            f"{conv.describe()}: not the architecture of this graph")
    ranges = {_block_output(layer).name: _tensor_range(g, g.ops[conv.op]["outputs"][0]) for layer, conv in pairs}
    for kind, op_type in ((keras.layers.Add, "ADD"), (keras.layers.Concatenate, "CONCATENATION")):
        layers = [layer for layer in model.layers if type(layer) is kind]
        ops = [i for i, t in enumerate(g.op_types) if t == op_type]
        if len(layers) != len(ops):
            raise ModelFileError(f"{source.path}: {len(ops)} {op_type} ops, the model {model.name} has {len(layers)} "
                            f"{kind.__name__} layers: not the architecture of this graph")
        ranges.update((layer.name, _tensor_range(g, g.ops[op]["outputs"][0])) for layer, op in zip(layers, ops))
    scales = {layer.name: float(g.quantization(g.ops[conv.op]["inputs"][1])[0].max()) for layer, conv in pairs}
    return SourceQuantization(source.path, ranges, scales, tuple(new_layers))


def _block_output(layer):
    """The last layer of ``layer`` -> [BatchNorm] -> [ReLU]: where the graph's fused conv output is."""
    after, relu = _fused_chain(layer)
    return relu or after


def _tensor_range(g: TFLiteGraph, tensor: int):
    """The real-valued (min, max) an 8-bit tensor can hold."""
    quant = g.quantization(tensor)
    if quant is None:
        raise ModelFileError(f"{g.source}: tensor {g.name(tensor)} is not quantized; {EXPECTED}")
    scale, zero_point = float(quant[0][0]), float(quant[1][0])
    low, high = (-128, 127) if g.numpy_type(tensor) is np.int8 else (0, 255)
    return scale * (low - zero_point), scale * (high - zero_point)


# ------------------------------------------------------------------------------------ verification
@dataclasses.dataclass
class Verification:
    """How closely the Keras model reproduces the source TFLite model on a set of images."""

    images: int
    pixels: int
    agreement: float  # fraction of pixels with the same class (compared at the source's output size)
    max_abs_logit_diff: float | None  # when the source outputs float logits at the same size
    image_source: str  # a folder, or "synthetic"

    def line(self) -> str:
        diff = "" if self.max_abs_logit_diff is None else f", max |logit difference| {self.max_abs_logit_diff:.2e}"
        return (f"argmax agreement {100 * self.agreement:.3f}% of {self.pixels} pixels on {self.images} "
                f"{self.image_source} images{diff}")


def default_min_agreement(source: OfficialDeepLab) -> float:
    return MIN_AGREEMENT_QUANTIZED if source.quantized else MIN_AGREEMENT_FLOAT


def verify(model, source: OfficialDeepLab, images, image_source="given", num_threads=2, progress=False) -> Verification:
    """Run ``model`` (Keras) and the source .tflite on the same RGB images and compare their classes.

    Both see the same real-valued input: the source gets the image normalized (x / 127.5 - 1) and, for a
    quantized input, quantized with the model's own input scale and zero point; the Keras model gets
    that tensor's real value ((q - zero point) * scale). A Keras model of another input size gets the
    image resized to its own size, and its classes are resized (nearest) to the source's output size.
    """
    from tqdm import tqdm

    from edge_deeplab.runtime.interpreter import make_interpreter

    interpreter = make_interpreter(source.path.read_bytes(), num_threads, source=source.path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    source_hw, keras_hw = source.config.input_size, tuple(model.input_shape[1:3])
    agree = pixels = count = 0
    max_diff = None
    for image in tqdm(images, desc="verifying", unit="image", disable=not progress, leave=False):
        tensor, real = model_input(image, source_hw, source)
        interpreter.set_tensor(inp["index"], tensor)
        interpreter.invoke()
        theirs = interpreter.get_tensor(out["index"])[0]
        if keras_hw != source_hw:
            real = model_input(image, keras_hw, source)[1]
        logits = model.predict_on_batch(real)[0]
        ours = logits.argmax(-1).astype(np.uint8)
        if source.output_kind == "logits":
            scale, zero_point = out["quantization"]
            theirs = dequantize(theirs, scale, zero_point) if scale else theirs
            if keras_hw == source_hw:
                diff = float(np.abs(logits - theirs).max())
                max_diff = diff if max_diff is None else max(max_diff, diff)
            theirs = theirs.argmax(-1)
        theirs = theirs.reshape(theirs.shape[:2])
        if ours.shape != theirs.shape:
            ours = cv2.resize(ours, theirs.shape[::-1], interpolation=cv2.INTER_NEAREST)
        agree += int((ours == theirs).sum())
        pixels += ours.size
        count += 1
    if not count:
        raise ModelFileError("no images to verify the import with")
    return Verification(count, pixels, agree / pixels, max_diff, image_source)


def model_input(image_rgb, size, source: OfficialDeepLab):
    """(the source model's input tensor, its real value as float32) for an RGB uint8 image resized to ``size``."""
    h, w = size
    if image_rgb.shape[:2] != (h, w):
        image_rgb = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    real = image_rgb[None].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    if source.input_dtype == "float32":
        return real, real
    q = quantize(real, source.input_scale, source.input_zero_point, source.input_dtype)
    return q, dequantize(q, source.input_scale, source.input_zero_point)


def synthetic_images(count=4, size=(257, 257), seed=0):
    """Deterministic RGB test images: smooth colour fields with shapes and noise. They check the arithmetic
    of an import, not what it has learnt (the models see mostly background in them)."""
    rng = np.random.default_rng(seed)
    h, w = size
    images = []
    for _ in range(count):
        field = cv2.resize(rng.uniform(0, 255, (6, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(6):
            color = [float(c) for c in rng.uniform(0, 255, 3)]
            center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(w // 16, w // 3)), int(rng.integers(h // 16, h // 3)))
            cv2.ellipse(field, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        field += rng.normal(0, 8, field.shape).astype(np.float32)
        images.append(np.clip(field, 0, 255).astype(np.uint8))
    return images


# ------------------------------------------------------------------------------------ the whole stage
@dataclasses.dataclass
class ImportResult:
    model: object  # the Keras model, at the requested output stride / input size
    source: OfficialDeepLab
    verification: Verification | None  # of the import at the source's architecture (thresholded)
    retargeted: Verification | None  # of the returned model when its output stride / size differ (information)
    min_agreement: float


def import_official(path, output_stride=None, input_size=None, verify_images=None, max_images=8,
                    min_agreement=None, num_threads=2, verification=True, progress=True) -> ImportResult:
    """Import an official DeepLab TFLite model as a Keras model, verify it, and optionally re-target it.

    ``output_stride`` / ``input_size`` rebuild the imported weights at another output stride (dilation)
    or resolution. ``verify_images``: a folder of images (default: synthetic ones). The import is
    verified at the source's architecture and a UserError is raised when the argmax agreement is below
    ``min_agreement`` (default 99.5% for a float source, 97% for an 8-bit one).
    """
    from edge_deeplab.model.deeplab import rebuild

    model, source = import_tflite(path)
    threshold = default_min_agreement(source) if min_agreement is None else float(min_agreement)
    checked = retargeted = None
    changes = {}
    if output_stride is not None and int(output_stride) != source.config.output_stride:
        changes["output_stride"] = int(output_stride)
    if input_size is not None and tuple(input_size) != source.config.input_size:
        changes["input_size"] = tuple(input_size)
    final = rebuild(model, **changes) if changes else model
    if verification:
        if verify_images:
            images, image_source = read_images(verify_images, max_images), str(verify_images)
        else:
            images, image_source = synthetic_images(min(max_images, 4), source.config.input_size), "synthetic"
        checked = verify(model, source, images, image_source, num_threads, progress)
        if checked.agreement < threshold:
            raise ModelFileError(
                f"{source.path}: the imported model disagrees with it: {checked.line()}, below the required "
                f"{100 * threshold:.1f}% (lower --min-agreement to keep it anyway)")
        if changes:
            retargeted = verify(final, source, images, image_source, num_threads, progress)
    return ImportResult(final, source, checked, retargeted, threshold)
