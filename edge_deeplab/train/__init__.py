"""Train stage (TensorFlow): the input pipeline, the training loop, quantization-aware training, distribution."""
