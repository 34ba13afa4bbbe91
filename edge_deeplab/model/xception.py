"""The modified aligned Xception of DeepLabv3+ (Xception-65 and Xception-41).

Not keras.applications.Xception: every max-pool is a strided separable conv, the middle flow is 16
(Xception-65) or 8 (Xception-41) units, there is a BN between depthwise and pointwise convs, and the exit
flow's last block has ReLU inside its separable convs. Strides turn into atrous rates past the output stride.
"""
from tf_keras import layers

from edge_deeplab.model.blocks import atrous_plan, conv_bn, separable_conv_bn

MIDDLE_UNITS = {"xception65": 16, "xception41": 8}
# DeepLabv3+ takes its stride-4 decoder features from entry_flow/block2/unit_1/.../separable_conv2_pointwise.
LOW_LEVEL_LAYER = "entry_flow_block2_sepconv2_pointwise_BN"


def _blocks(variant):
    # (name, depths, skip: conv|sum|none, stride, relu inside the separable convs)
    blocks = [("entry_flow_block1", (128, 128, 128), "conv", 2, False),
              ("entry_flow_block2", (256, 256, 256), "conv", 2, False),
              ("entry_flow_block3", (728, 728, 728), "conv", 2, False)]
    blocks += [(f"middle_flow_unit{i + 1}", (728, 728, 728), "sum", 1, False) for i in range(MIDDLE_UNITS[variant])]
    blocks += [("exit_flow_block1", (728, 1024, 1024), "conv", 2, False),
               ("exit_flow_block2", (1536, 1536, 2048), "none", 1, True)]
    return blocks


def _xception_module(x, name, depths, skip, stride, rate, relu_inside):
    residual = x
    for i, depth in enumerate(depths):
        if not relu_inside:
            residual = layers.ReLU(name=f"{name}_sepconv{i + 1}_preact")(residual)
        residual = separable_conv_bn(residual, depth, f"{name}_sepconv{i + 1}", strides=stride if i == 2 else 1,
                                     dilation=rate, relu=0, relu_inside=relu_inside)
    if skip == "conv":
        shortcut = conv_bn(x, depths[-1], 1, f"{name}_shortcut", strides=stride)
        return layers.Add(name=f"{name}_add")([residual, shortcut])
    if skip == "sum":
        return layers.Add(name=f"{name}_add")([residual, x])
    return residual


def xception_features(inputs, variant="xception65", output_stride=16):
    blocks = _blocks(variant)
    # entry_flow/conv1_1 has stride 2; then one stride per block.
    atrous = atrous_plan([2, 1] + [b[3] for b in blocks], output_stride)
    x = conv_bn(inputs, 32, 3, "entry_flow_conv1_1", strides=atrous[0][0], relu=0)
    x = conv_bn(x, 64, 3, "entry_flow_conv1_2", relu=0)
    for (name, depths, skip, _, relu_inside), (stride, rate) in zip(blocks, atrous[2:]):
        x = _xception_module(x, name, depths, skip, stride, rate, relu_inside)
    return x
