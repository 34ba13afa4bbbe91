"""Small building blocks shared by the backbones and the head (conv + BN + ReLU chains).

Every BatchNormalization directly follows its convolution and every activation is its own layer:
that is what tfmot's quantize_model recognises (an inline `activation=` is not).
"""
import tf_keras as keras
from tf_keras import layers

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.997


def batch_norm(name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def conv_bn(x, filters, kernel_size, name, strides=1, dilation=1, relu=None, bn_name=None, relu_name=None):
    """Conv2D (no bias) -> BatchNormalization -> optional ReLU (relu=0 for plain ReLU, 6 for ReLU6)."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, dilation_rate=dilation, padding="same",
                      use_bias=False, name=name)(x)
    x = batch_norm(bn_name or f"{name}_BN")(x)
    if relu is not None:
        x = layers.ReLU(max_value=relu or None, name=relu_name or f"{name}_relu")(x)
    return x


def depthwise_bn(x, name, strides=1, dilation=1, relu=None, bn_name=None, relu_name=None):
    """3x3 DepthwiseConv2D (no bias) -> BatchNormalization -> optional ReLU."""
    x = layers.DepthwiseConv2D(3, strides=strides, dilation_rate=dilation, padding="same", use_bias=False,
                               name=name)(x)
    x = batch_norm(bn_name or f"{name}_BN")(x)
    if relu is not None:
        x = layers.ReLU(max_value=relu or None, name=relu_name or f"{name}_relu")(x)
    return x


def separable_conv_bn(x, filters, name, strides=1, dilation=1, relu=0, relu_inside=True):
    """DeepLab's split separable conv: depthwise -> BN [-> ReLU] -> 1x1 -> BN [-> ReLU].

    Unlike keras SeparableConv2D there is a BatchNormalization between the two convolutions.
    """
    act = relu if relu_inside else None
    x = depthwise_bn(x, f"{name}_depthwise", strides=strides, dilation=dilation, relu=act)
    return conv_bn(x, filters, 1, f"{name}_pointwise", relu=act)


def atrous_plan(strides, output_stride, initial_stride=1):
    """(stride, dilation) per layer so that the network never downsamples past ``output_stride``.

    The rule of DeepLab (slim mobilenet / resnet_utils.stack_blocks_dense): once the running stride
    reaches the output stride, a strided layer runs at stride 1 with the current rate, and every later
    layer's rate is multiplied by the stride it gave up. The weights are the same at any output stride.
    """
    current, rate, plan = initial_stride, 1, []
    for s in strides:
        if current >= output_stride and s > 1:
            plan.append((1, rate))
            rate *= s
        else:
            plan.append((s, rate))
            current *= s
    return plan


def static_hw(x):
    shape = keras.backend.int_shape(x)
    return int(shape[1]), int(shape[2])
