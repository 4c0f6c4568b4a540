"""Engines other than the local loop of predict.pipeline: where decoding and inference run (`runtime.engine`)."""
