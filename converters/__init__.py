"""Offline tools that turn user models into ONNX graphs the inference core can run (needs `predict[convert]`)."""
