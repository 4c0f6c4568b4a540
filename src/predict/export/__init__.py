"""`predict export`: one portable ONNX file, pre- and post-processing inside (see predict.export.exporter)."""
