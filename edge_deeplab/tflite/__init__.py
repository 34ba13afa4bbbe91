"""The .tflite file: one FlatBuffer graph reader, MediaPipe segmenter metadata (read and write), the
model report (ops, delegates, quantization). No TensorFlow."""
