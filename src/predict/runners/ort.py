"""onnxruntime runner: CUDA when asked for (or `auto` and available), CPU otherwise, and it says which ran.

`get_available_providers()` lists CUDA even when its libraries cannot load (onnxruntime#23372), so the
provider reported is the one of the session that actually runs, and a CUDA request that fell back to
the CPU is a loud warning (`auto`) or an error (`cuda`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from predict.config import Device
from predict.errors import ConfigError, InputError, one_line
from predict.runners.base import TensorSpec

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
# Ops that pass a value through unchanged in meaning: the producer of an output is looked up past them.
_PASS_THROUGH_OPS = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Cast"}


class OrtRunner:
    """An onnxruntime session over one ONNX file.

    Attributes:
        inputs, outputs: the graph's tensor specs, from the session itself.
        provider: the execution provider that really runs the graph.
        notes: what a user should know (a fallback to the CPU, a fixed batch size).
    """

    def __init__(self, model_path: Path, *, device: Device = Device.AUTO, threads: int = 0) -> None:
        producers = _check_and_inspect(model_path)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: the provider choice is reported by us, once
        requested = self._requested_providers(device)
        try:
            self.session = onnxruntime.InferenceSession(str(model_path), options, providers=requested)
        except Exception as error:  # onnxruntime raises its own untyped errors for bad graphs
            raise ConfigError(f"model {model_path.name}: onnxruntime cannot load it: {one_line(error)}") from None
        self.provider = self.session.get_providers()[0]
        self.notes: list[str] = []
        if requested[0] == CUDA and self.provider != CUDA:
            message = (
                f"CUDA was requested but onnxruntime runs {model_path.name} on {self.provider}: "
                "the CUDA libraries did not load (check CUDA/cuDNN versions against onnxruntime-gpu)"
            )
            if device is Device.CUDA:
                raise ConfigError(f"runtime.device: cuda: {message}")
            log.warning(message)
            self.notes.append(message)
        self.inputs = tuple(_spec(arg) for arg in self.session.get_inputs())
        self.outputs = tuple(
            TensorSpec(name=spec.name, shape=spec.shape, dtype=spec.dtype, producer=producers.get(spec.name))
            for spec in map(_spec, self.session.get_outputs())
        )
        self._output_names = [spec.name for spec in self.outputs]
        self.fixed_batch_size = self.inputs[0].fixed_batch_size if self.inputs else None
        if self.fixed_batch_size:
            self.notes.append(
                f"{model_path.name} has a fixed batch size of {self.fixed_batch_size}: batches are cut and padded to it"
            )

    @staticmethod
    def _requested_providers(device: Device) -> list[str]:
        available = onnxruntime.get_available_providers()
        if device is Device.CPU:
            return [CPU]
        if CUDA in available:
            return [CUDA, CPU]
        if device is Device.CUDA:
            raise ConfigError(
                f"runtime.device: cuda, but this onnxruntime {onnxruntime.__version__} has no CUDA provider "
                f"(providers: {', '.join(available)}); install the gpu extra (onnxruntime-gpu) or set runtime.device: auto"
            )
        return [CPU]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            feeds: one array per model input, named and typed exactly as `inputs` says.

        Returns:
            One array per model output, first axis = the rows fed in.

        Raises:
            InputError: an input is missing or has the wrong dtype (never cast silently).
        """
        for spec in self.inputs:
            if spec.name not in feeds:
                raise InputError(f"model input '{spec.name}' was not fed (fed: {', '.join(feeds)})")
            if feeds[spec.name].dtype != spec.dtype:
                raise InputError(
                    f"model input '{spec.name}' takes {np.dtype(spec.dtype).name}, got {feeds[spec.name].dtype.name}"
                )
        rows = len(next(iter(feeds.values())))
        if not self.fixed_batch_size or rows == self.fixed_batch_size:
            return dict(zip(self._output_names, self.session.run(self._output_names, feeds)))
        return self._run_fixed_batches(feeds, rows)

    def _run_fixed_batches(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        # A model exported with a static batch axis gets exactly that many rows: cut, and pad the last piece.
        size = self.fixed_batch_size
        pieces: list[list[np.ndarray]] = []
        for start in range(0, rows, size):
            chunk = {}
            for name, array in feeds.items():
                part = array[start : start + size]
                if len(part) < size:
                    padding = np.repeat(part[-1:], size - len(part), axis=0)
                    part = np.concatenate([part, padding])
                chunk[name] = part
            pieces.append(self.session.run(self._output_names, chunk))
        return {
            name: np.concatenate([piece[i] for piece in pieces])[:rows] for i, name in enumerate(self._output_names)
        }


def _check_and_inspect(model_path: Path) -> dict[str, str]:
    """Validate the file with the ONNX checker; return each graph output's producing op type."""
    try:
        onnx.checker.check_model(str(model_path))
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as error:  # onnx raises protobuf and checker errors of several types
        raise ConfigError(f"model {model_path}: not a valid ONNX model: {one_line(error)}") from None
    producer_of = {output: node for node in model.graph.node for output in node.output}
    producers = {}
    for output in model.graph.output:
        node = producer_of.get(output.name)
        while node is not None and node.op_type in _PASS_THROUGH_OPS and node.input:
            node = producer_of.get(node.input[0])
        if node is not None:
            producers[output.name] = node.op_type
    return producers


def _spec(arg: onnxruntime.NodeArg) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in (arg.shape or ()))
    return TensorSpec(name=arg.name, shape=shape, dtype=np.dtype(_ORT_DTYPES.get(arg.type, np.float32)))

