"""Data: image files and labelled dataset formats (VOC, Cityscapes, CamVid, Penn-Fudan, folders). No TensorFlow."""
