"""Run stage: .tflite models on LiteRT (ai-edge-litert), predict, video / webcam, drawing, mIOU evaluation.
No TensorFlow: this is what a phone, a Raspberry Pi or a laptop needs."""
