"""Parameters and multiply-adds of a Keras model, counted from its layers' static shapes.

Counted: Conv2D (k*k*Cin*Cout per output pixel, dilation costs nothing extra), DepthwiseConv2D
(k*k*C*multiplier per output pixel), SeparableConv2D (both parts) and Dense. Not counted: BatchNorm (folded
into the convs at export), activations, additions, pooling and resizing: the convention of the DeepLab
model zoo's figures, which this reproduces.
"""
import tf_keras as keras


def layer_multiply_adds(layer) -> int:
    def out_pixels():
        shape = layer.output_shape
        return int(shape[1]) * int(shape[2])

    if isinstance(layer, keras.layers.DepthwiseConv2D):  # before Conv2D: it subclasses it
        kh, kw = layer.kernel_size
        return kh * kw * int(layer.input_shape[-1]) * layer.depth_multiplier * out_pixels()
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        cin = int(layer.input_shape[-1])
        return (kh * kw * cin * layer.depth_multiplier + cin * layer.depth_multiplier * layer.filters) * out_pixels()
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return kh * kw * int(layer.input_shape[-1]) // layer.groups * layer.filters * out_pixels()
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input_shape[-1]) * layer.units
    return 0


def model_complexity(model) -> dict:
    """{"params", "trainable_params", "multiply_adds"} (multiply-adds for one image at the model's size)."""
    return {
        "params": int(model.count_params()),
        "trainable_params": int(sum(keras.backend.count_params(w) for w in model.trainable_weights)),
        "multiply_adds": int(sum(layer_multiply_adds(layer) for layer in model.layers)),
    }
