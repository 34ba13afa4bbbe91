"""Quantization-aware training stage (tfmot): make a DeepLab model fake-quantized.

tfmot's registry knows every layer the builder uses except BilinearResize (our corner-aligned resize);
it is annotated here with an output-only 8-bit config, like the one tfmot uses for its own resizes.
"""
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from edge_deeplab.model.layers import CUSTOM_OBJECTS, BilinearResize

quant_keras = tfmot.quantization.keras


class OutputQuantizeConfig(quant_keras.QuantizeConfig):
    """No weights; quantize the output with an 8-bit asymmetric moving-average quantizer."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quant_keras.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                              narrow_range=False)]

    def get_config(self):
        return {}


def quantize_scope():
    """The scope that loading or cloning a QAT DeepLab model needs."""
    return quant_keras.quantize_scope({**CUSTOM_OBJECTS, "OutputQuantizeConfig": OutputQuantizeConfig})


def annotate(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with the layers tfmot does not know annotated with our QuantizeConfigs."""

    def clone(layer):
        if isinstance(layer, BilinearResize):
            return quant_keras.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()),
                                                       OutputQuantizeConfig())
        return layer.__class__.from_config(layer.get_config())

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated


def quantize_deeplab(model: keras.Model) -> keras.Model:
    """The fake-quantized (QAT) version of a float DeepLab model, weights carried over."""
    with quantize_scope():
        qat_model = quant_keras.quantize_model(annotate(model))
    config = getattr(model, "deeplab_config", None)
    if config is not None:
        qat_model.deeplab_config = config
    return qat_model
