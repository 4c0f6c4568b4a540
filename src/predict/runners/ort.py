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

from predict.enums import Device, Precision, Toggle
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
# float16 outputs may differ from float32 by this fraction of the output's scale (or of 1, if smaller).
FP16_TOLERANCE = 1e-2
# Ops known to break in float16 (onnxconverter-common#208, #272); `predict export` blocks the same.
FP16_BLOCKED_OPS = {"Resize", "Range", "RandomNormal", "RandomUniform", "NonMaxSuppression", "TopK"}
# Ops that pass a value through unchanged in meaning: the producer of an output is looked up past them.
_PASS_THROUGH_OPS = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Cast"}


class OrtRunner:
    """An onnxruntime session over one ONNX file.

    Attributes:
        inputs, outputs: the graph's tensor specs, from the session itself.
        provider: the execution provider that really runs the graph.
        notes: what a user should know (a fallback to the CPU, a fixed batch size).
        concurrent_batches: how many batches the engine may run at once: 1, the session's own threads
            parallelise each batch.
    """

    concurrent_batches = 1

    def __init__(
        self,
        model_path: Path,
        *,
        device: Device = Device.AUTO,
        threads: int = 0,
        precision: Precision = Precision.FP32,
        io_binding: Toggle = Toggle.AUTO,
        memory_pattern: bool = True,
    ) -> None:
        producers = _check_and_inspect(model_path)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_mem_pattern = memory_pattern
        if threads:
            options.intra_op_num_threads = threads
        # Idle intra-op threads would spin on the cores the decoding workers need (docs/performance.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: the provider choice is reported by us, once
        requested = requested_providers(device)
        self.session = _session(str(model_path), options, requested, model_path.name)
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
        # IO binding saves a host copy per input and output; it matters on CUDA, where it is on by default.
        self.io_binding = io_binding is Toggle.ON or (io_binding is Toggle.AUTO and self.provider == CUDA)
        self._reference: onnxruntime.InferenceSession | None = None
        if precision is Precision.FP16:
            # The float32 session stays only until the first batch has been compared with float16.
            self._reference = self.session
            self.session = _session(_float16_model(model_path), options, requested, model_path.name)
            self.notes.append(f"{model_path.name} runs in float16 (inputs and outputs stay float32)")

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
        if self.fixed_batch_size and rows != self.fixed_batch_size:
            return self._run_fixed_batches(feeds, rows)
        outputs = self._run_session(self.session, feeds)
        if self._reference is not None:
            self._check_float16(feeds, outputs)
        return outputs

    def _run_session(
        self, session: onnxruntime.InferenceSession, feeds: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        if not self.io_binding:
            return dict(zip(self._output_names, session.run(self._output_names, feeds)))
        binding = session.io_binding()
        device = "cuda" if self.provider == CUDA else "cpu"
        for name, array in feeds.items():
            array = np.ascontiguousarray(array)
            # Bound by pointer: onnxruntime copies straight from this buffer (pinned by the loader on CUDA).
            binding.bind_input(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        for name in self._output_names:
            binding.bind_output(name, device)
        session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def _check_float16(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Compare the first float16 batch with float32; fail loudly rather than write drifted predictions."""
        reference = self._run_session(self._reference, feeds)
        self._reference = None
        for name, expected in reference.items():
            if expected.dtype.kind != "f":
                continue
            difference = float(np.max(np.abs(outputs[name].astype(np.float64) - expected), initial=0.0))
            scale = float(np.max(np.abs(expected), initial=0.0))
            if not np.isfinite(difference) or difference > FP16_TOLERANCE * max(scale, 1.0):
                raise ConfigError(
                    f"runtime.precision: fp16 moves output '{name}' by {difference:.3g} (max |float32| {scale:.3g}, "
                    f"allowed {FP16_TOLERANCE:g} of it); use precision: fp32 for this model"
                )
            self.notes.append(f"float16 vs float32 on the first batch: output '{name}' max abs diff {difference:.2g}")

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
            pieces.append(list(self._run_session(self.session, chunk).values()))
        return {
            name: np.concatenate([piece[i] for piece in pieces])[:rows] for i, name in enumerate(self._output_names)
        }


def requested_providers(device: Device) -> list[str]:
    """The providers a session for `runtime.device` asks for, in order of preference (CPU last).

    Raises:
        ConfigError: `cuda` asked for where this onnxruntime has no CUDA provider.
    """
    available = onnxruntime.get_available_providers()
    if device is Device.CPU:
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device is Device.CUDA:
        raise ConfigError(
            f"runtime.device: cuda, but this onnxruntime {onnxruntime.__version__} has no CUDA provider "
            f"(providers: {', '.join(available)}); install the gpu extra (onnxruntime-gpu) or set runtime.device: "
            "auto"
        )
    return [CPU]


def _session(
    model: str | bytes, options: onnxruntime.SessionOptions, providers: list[str], model_name: str
) -> onnxruntime.InferenceSession:
    try:
        return onnxruntime.InferenceSession(model, options, providers=providers)
    except Exception as error:  # onnxruntime raises its own untyped errors for bad graphs
        raise ConfigError(f"model {model_name}: onnxruntime cannot load it: {one_line(error)}") from None


def _float16_model(model_path: Path) -> bytes:
    """The graph with float16 weights and arithmetic; its inputs and outputs stay float32.

    Ops known to break in float16 (onnxconverter-common#208, #272: Resize, range and random ops)
    keep float32, on top of the converter's own block list.
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ConfigError("runtime.precision: fp16 needs onnxconverter-common: pip install 'predict[gpu]'") from None
    model = onnx.load(str(model_path))
    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | FP16_BLOCKED_OPS)
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    return converted.SerializeToString()


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
