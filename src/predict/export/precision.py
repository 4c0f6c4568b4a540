"""Smaller arithmetic for the exported graph, and how fast each graph runs.

- `fp16`: onnxconverter-common's float16 conversion of the model's nodes, inputs and outputs kept
  as they are (`keep_io_types`); the pre- and post-processing nodes stay float32, so thresholds,
  NMS and box arithmetic are the fp32 graph's.
- `int8`: onnxruntime's static QDQ quantisation of the model's nodes, calibrated (MinMax) on the
  graph's own inputs for `--calibration-rows` rows of the dataframe.
Neither is the default: `predict export` prints their agreement with the pipeline next to the speed-up.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx

from predict.errors import ConfigError, one_line

# Ops known to break in float16 (onnxconverter-common#208, #272), as predict.runners.ort blocks them.
_FP16_BLOCKED_OPS = {"Resize", "Range", "RandomNormal", "RandomUniform", "NonMaxSuppression", "TopK"}


class ExportPrecision(StrEnum):
    """Arithmetic of the exported model's network."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


def to_float16(model: onnx.ModelProto, *, keep_nodes: list[str]) -> onnx.ModelProto:
    """The model's network in float16; `keep_nodes` (pre- and post-processing) stay float32.

    Raises:
        ConfigError: onnxconverter-common is missing or fails on the graph.
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ConfigError("--precision fp16 needs onnxconverter-common: pip install onnxconverter-common") from None
    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | _FP16_BLOCKED_OPS)
    try:
        return float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=blocked, node_block_list=keep_nodes
        )
    except Exception as error:  # the converter raises assorted errors on graphs it cannot handle
        raise ConfigError(f"--precision fp16: the float16 conversion failed: {one_line(error)}") from None


def to_int8(
    model: onnx.ModelProto, calibration: list[dict[str, np.ndarray]], *, keep_nodes: list[str]
) -> onnx.ModelProto:
    """The model's network quantised to int8 (static, QDQ), calibrated on `calibration` feeds.

    Raises:
        ConfigError: onnxruntime's quantisation fails on the graph.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="predict-int8-") as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        onnx.save(model, str(source))
        try:
            quantize_static(
                str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=keep_nodes
            )
        except Exception as error:  # onnxruntime.quantization raises assorted errors
            raise ConfigError(f"--precision int8: quantisation failed: {one_line(error)}") from None
        return onnx.load(str(target))


def rows_per_second(run, batches: list[dict[str, np.ndarray]], *, repeats: int = 3) -> float:
    """Rows per second of `run(feeds)` over all `batches`: one untimed pass, then the median of `repeats` passes."""
    rows = sum(len(next(iter(feeds.values()))) for feeds in batches)
    for feeds in batches:
        run(feeds)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for feeds in batches:
            run(feeds)
        seconds.append(time.perf_counter() - started)
    return rows / max(statistics.median(seconds), 1e-9)
