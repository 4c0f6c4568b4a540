"""Smaller arithmetic for the exported graph, and how fast each graph runs.

- `fp16`: onnxconverter-common's float16 conversion of the model alone, its inputs and outputs kept
  float32 (`keep_io_types`);
- `int8`: onnxruntime's static QDQ quantisation of the model alone, calibrated (MinMax) on the
  model's inputs for the first `--calibration-rows` rows of the dataframe, as the loader makes them.
Either way the model is lowered before the pre- and post-processing are composed around it, so
normalisation, thresholds, NMS and box arithmetic stay the fp32 graph's.
Neither is the default: `predict export` prints their agreement with the pipeline next to the speed-up.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx

from predict.errors import ConfigError, one_line
from predict.runners.ort import FP16_BLOCKED_OPS


class ExportPrecision(StrEnum):
    """Arithmetic of the exported model's network."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model in float16 arithmetic, its inputs and outputs float32.

    Raises:
        ConfigError: onnxconverter-common is missing or fails on the graph.
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ConfigError("--precision fp16 needs onnxconverter-common: pip install onnxconverter-common") from None
    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | FP16_BLOCKED_OPS)
    try:
        with warnings.catch_warnings():  # one line per weight below float16's range: the converter clamps them
            warnings.simplefilter("ignore", UserWarning)
            return float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    except Exception as error:  # the converter raises assorted errors on graphs it cannot handle
        raise ConfigError(f"--precision fp16: the float16 conversion failed: {one_line(error)}") from None


def to_int8(model: onnx.ModelProto, calibration: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """The model quantised to int8 (static, QDQ), calibrated on `calibration`: batches of the model's inputs.

    Raises:
        ConfigError: onnxruntime's quantisation fails on the graph.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="predict-int8-") as folder:
        source, prepared, target = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(model, str(source))
        try:
            # onnxruntime's advice before quantising: shapes inferred, graph optimised (fused) first.
            quant_pre_process(str(source), str(prepared))
            quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ)
        except Exception as error:  # onnxruntime.quantization raises assorted errors
            raise ConfigError(f"--precision int8: quantisation failed: {one_line(error)}") from None
        return onnx.load(str(target))


def rows_per_second(runs: dict[str, tuple], *, repeats: int = 5) -> dict[str, float]:
    """Rows per second of each `name: (run, batches)`, `run(feeds)` over all its batches.

    One untimed pass each, then `repeats` rounds in which every run makes one timed pass in turn;
    the median pass counts. Interleaved, a load that comes and goes on a shared machine slows every
    run alike instead of the one that happened to be timed then.
    """
    for run, batches in runs.values():
        for feeds in batches:
            run(feeds)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (run, batches) in runs.items():
            started = time.perf_counter()
            for feeds in batches:
                run(feeds)
            seconds[name].append(time.perf_counter() - started)
    rows = {name: sum(len(next(iter(feeds.values()))) for feeds in batches) for name, (_, batches) in runs.items()}
    return {name: rows[name] / max(statistics.median(seconds[name]), 1e-9) for name in runs}
