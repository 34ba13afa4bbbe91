"""Build stage: Keras (tf_keras) DeepLab models. Importing this package imports TensorFlow."""
