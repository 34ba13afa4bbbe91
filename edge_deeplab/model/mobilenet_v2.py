"""MobileNetV2 feature extractor as DeepLab uses it (up to layer_18: no final 1x1 conv, no classifier).

Layer names follow keras.applications.MobileNetV2, so its ImageNet weights load by name; widths follow
the official DeepLab (slim) rule unless ``width_rounding="keras"``.
"""
from tf_keras import layers

from edge_deeplab.model.blocks import atrous_plan, conv_bn, depthwise_bn

# (expansion t, output channels c, repeats n, first stride s): the MobileNetV2 paper's table.
BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1)]
# DeepLabv3+ takes its stride-4 decoder features from layer_4/depthwise_output (keras block_2).
LOW_LEVEL_LAYER = "block_2_depthwise_relu"


def make_divisible(v, divisor, min_value=None):
    """Round a width to a multiple of ``divisor``, never more than 10% down (slim and keras agree)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def widths(depth_multiplier, width_rounding="deeplab"):
    """[first conv width, [(expansion width or None, output width, stride), ...] per block]."""
    if width_rounding == "keras":
        out = lambda c: make_divisible(c * depth_multiplier, 8)  # noqa: E731
        expand = lambda cin, t: cin * t  # noqa: E731
    else:
        # slim: divisible_by=8 and min_depth=8 only at depth 1.0, exact widths otherwise; the 6x
        # expansion is always rounded to a multiple of 8.
        div = 8 if depth_multiplier == 1.0 else 1
        out = lambda c: make_divisible(c * depth_multiplier, div, div)  # noqa: E731
        expand = lambda cin, t: make_divisible(cin * t, 8)  # noqa: E731
    first = out(32)
    cin, plan = first, []
    for t, c, n, s in BLOCKS:
        for i in range(n):
            cout = out(c)
            plan.append((expand(cin, t) if t != 1 else None, cout, s if i == 0 else 1))
            cin = cout
    return first, plan


def mobilenet_v2_features(inputs, depth_multiplier=1.0, output_stride=16, width_rounding="deeplab"):
    """Returns (features at ``output_stride``, {name: endpoint}) with the stride-4 decoder endpoint."""
    first, plan = widths(depth_multiplier, width_rounding)
    strides = [2] + [s for _, _, s in plan]
    atrous = atrous_plan(strides, output_stride)
    x = conv_bn(inputs, first, 3, "Conv1", strides=atrous[0][0], relu=6, bn_name="bn_Conv1",
                relu_name="Conv1_relu")
    for block_id, ((expansion, cout, _), (stride, rate)) in enumerate(zip(plan, atrous[1:])):
        prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
        cin = x.shape[-1]
        shortcut = x
        if expansion is not None:
            x = conv_bn(x, expansion, 1, f"{prefix}expand", relu=6)
        x = depthwise_bn(x, f"{prefix}depthwise", strides=stride, dilation=rate, relu=6)
        x = conv_bn(x, cout, 1, f"{prefix}project")
        if stride == 1 and cin == cout:
            x = layers.Add(name=f"{prefix}add" if block_id else "expanded_conv_add")([shortcut, x])
    return x
