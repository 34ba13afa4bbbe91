"""Export stage (TensorFlow): Keras -> .tflite conversion and its report, output-stride x decoder x quantization
sweeps, and the hand-off of a .tflite to the Android demo app."""
