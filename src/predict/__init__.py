"""predict: batch predictions of Keras, ONNX and PyTorch models, written as H2O Hydrogen Torch prediction files."""

__version__ = "0.1.0"
