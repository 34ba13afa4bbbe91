"""Build and import stages (TensorFlow): Keras (tf_keras) DeepLab models, the import of the official
TFLite weights, and Keras models as predictors for evaluation."""
