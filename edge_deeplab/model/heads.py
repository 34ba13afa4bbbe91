"""DeepLab heads: ASPP with image-level pooling, the DeepLabv3+ decoder, and the logits."""
from tf_keras import layers

from edge_deeplab.model.blocks import conv_bn, separable_conv_bn, static_hw
from edge_deeplab.model.layers import BilinearResize


def aspp(x, channels, atrous_rates=(), separable=False, dropout=0.1):
    """Image pooling + 1x1 branch (+ one 3x3 atrous branch per rate), concatenated and projected.

    With no rates this is the head of the official mobile DeepLab models.
    """
    h, w = static_hw(x)
    pool = layers.GlobalAveragePooling2D(keepdims=True, name="image_pooling")(x)
    pool = conv_bn(pool, channels, 1, "image_pooling_conv", relu=0)
    # Broadcasting a 1x1 map is exact with nearest upsampling (and tfmot quantizes UpSampling2D natively).
    pool = layers.UpSampling2D(size=(h, w), interpolation="nearest", name="image_pooling_upsample")(pool)
    branches = [pool, conv_bn(x, channels, 1, "aspp0", relu=0)]
    for i, rate in enumerate(atrous_rates, 1):
        if separable:
            branches.append(separable_conv_bn(x, channels, f"aspp{i}", dilation=rate, relu=0))
        else:
            branches.append(conv_bn(x, channels, 3, f"aspp{i}", dilation=rate, relu=0))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn(x, channels, 1, "concat_projection", relu=0)
    if dropout:
        x = layers.Dropout(dropout, name="concat_projection_dropout")(x)
    return x


def decoder(x, low_level, channels, low_level_channels=48, separable=True):
    """DeepLabv3+ decoder: upsample to the stride-4 features, fuse their 48-channel projection, refine."""
    low = conv_bn(low_level, low_level_channels, 1, "feature_projection0", relu=0)
    x = BilinearResize(static_hw(low), name="decoder_upsample")(x)
    x = layers.Concatenate(name="decoder_concat")([x, low])
    for i in range(2):
        if separable:
            x = separable_conv_bn(x, channels, f"decoder_conv{i}", relu=0)
        else:
            x = conv_bn(x, channels, 3, f"decoder_conv{i}", relu=0)
    return x


def logits(x, num_classes, output_size):
    """1x1 logits (with bias, no BN), resized corner-aligned to the input size."""
    x = layers.Conv2D(num_classes, 1, name="logits")(x)
    return BilinearResize(output_size, name="upsample_logits")(x)
