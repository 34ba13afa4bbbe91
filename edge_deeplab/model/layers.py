"""Custom layers. Only one: a corner-aligned bilinear resize, which Keras has no layer for.

DeepLab sizes are 16k+1 (257, 513) and DeepLab resizes with align_corners=True, so that 33x33 features
map exactly onto a 513x513 image (every 16th output pixel is an input pixel). UpSampling2D and Resizing
use half-pixel centres, which shifts the mask and does not reproduce the official models.
"""
import tensorflow as tf
import tf_keras as keras


@keras.saving.register_keras_serializable(package="edge_deeplab")
class BilinearResize(keras.layers.Layer):
    """Resize NHWC features to a fixed (height, width); converts to TFLite RESIZE_BILINEAR."""

    def __init__(self, size, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)
        self.align_corners = bool(align_corners)

    def call(self, inputs):
        # The raw op still exposes align_corners (tf.image.resize is half-pixel only).
        return tf.raw_ops.ResizeBilinear(images=inputs, size=self.size, align_corners=self.align_corners,
                                         half_pixel_centers=not self.align_corners)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], *self.size, input_shape[-1]])

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "align_corners": self.align_corners}


CUSTOM_OBJECTS = {"BilinearResize": BilinearResize}
