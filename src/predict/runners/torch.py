"""PyTorch runner: TorchScript (`.pt`), `torch.export` programs (`.pt2`) and Keras `.h5` files, natively in torch.

- TorchScript (`torch.jit.save`): inputs come from `runtime.input_spec`, because the file records no
  shapes; their names must be `forward`'s argument names.
- `.pt2` (`torch.export.save`): inputs are read off the program (names from `forward`, dynamic axes
  as None); a `runtime.input_spec`, if given, must agree with them.
- Keras `.h5`: exported once to a `.pt2` by `converters.keras_to_torch` in a child process (Keras 3
  on its torch backend, TensorFlow blocked), cached by the `.h5` hash, then run as a `.pt2`. Input
  and output names are the ones the ONNX conversion gives, so heads read the same outputs.

Outputs are found by running the model once on a zero batch (TorchScript, `.pt2`): a tensor is
`output_0`, a tuple gives `output_0`, `output_1`..., a dict keeps its keys. The op producing each
output (`Softmax`, `Sigmoid`, in ONNX spelling) is read off the graph, so heads decide whether to apply
an activation exactly as they do for the ONNX graph of the same model.

Device: CUDA when asked for (or `auto` and available); `runtime.precision: fp16` runs it under float16
autocast (CUDA only: the CPU keeps float32 and says so). `provider` says what ran: `torch-cpu`,
`torch-cuda` or `torch-cuda-fp16`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from predict.config import ModelOptionsConfig
from predict.enums import Device, Precision
from predict.errors import ConfigError, ConversionError, InputError, one_line
from predict.model_file import ResolvedModel, cache_key, load_arguments, relay_warnings
from predict.runners.base import TensorSpec
from predict.runners.torch_spec import KERAS_SUFFIXES, parse_input_specs

METADATA_FILE = "predict.json"  # written into .pt2 archives by converters.keras_to_torch
# ONNX spelling of the aten ops heads care about: they tell probabilities from logits.
_PRODUCERS = {"softmax": "Softmax", "_softmax": "Softmax", "sigmoid": "Sigmoid", "log_softmax": "LogSoftmax"}
# Ops that pass a value through unchanged in meaning (as in predict.runners.ort).
_PASS_THROUGH = {
    "view", "reshape", "_unsafe_view", "squeeze", "unsqueeze", "flatten", "contiguous", "clone", "to",
    "_to_copy", "alias", "detach", "type_as", "float", "expand",
}  # fmt: skip
_TORCH_DTYPES = {
    torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64, torch.int64: np.int64,
    torch.int32: np.int32, torch.int8: np.int8, torch.uint8: np.uint8, torch.bool: np.bool_,
}  # fmt: skip
# Size given to an open non-batch axis when the model is probed once for its outputs.
_PROBE_OPEN_AXIS = 32


def resolve_torch_model(model: Path, *, cache_dir: Path, options: ModelOptionsConfig | None = None) -> ResolvedModel:
    """The file the torch runner loads: the model itself, or a Keras `.h5` exported once to a cached `.pt2`.

    Raises:
        ConversionError: the export or its parity check against Keras failed (the child's message).
    """
    if model.suffix.lower() not in KERAS_SUFFIXES:
        return ResolvedModel(path=model, origin="torch")
    cached = cache_dir / f"{model.stem}-{cache_key(model, options)}.pt2"
    if cached.is_file():
        return ResolvedModel(path=cached, origin="cached")
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "converters.keras_to_torch", str(model), "-o", str(cached)]
    command += load_arguments(options)
    environment = {**os.environ, "KERAS_BACKEND": "torch"}
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        reason = errors[-1] if errors else (lines[-1] if lines else f"exit code {completed.returncode}")
        raise ConversionError(f"model {model.name}: export to torch failed: {reason}")
    log, relayed = completed.stdout.strip(), relay_warnings(completed.stderr)
    return ResolvedModel(path=cached, origin="converted", conversion_log=log, warnings=relayed)


class TorchRunner:
    """A TorchScript module or `torch.export` program, run on numpy arrays.

    Attributes:
        inputs, outputs: the model's tensor specs (see the module docstring for where they come from).
        provider: what runs the model: `torch-cpu`, `torch-cuda` or `torch-cuda-fp16` (autocast).
        notes: what a user should know (a fixed batch size, autocast).
        fixed_batch_size: the batch size a model with a static batch axis insists on, else None.
        concurrent_batches: how many batches the engine may run at once: 1, torch's threads parallelise
            each batch.
    """

    concurrent_batches = 1

    def __init__(
        self,
        model_path: Path,
        *,
        device: Device = Device.AUTO,
        input_spec: tuple[str, ...] = (),
        precision: Precision = Precision.FP32,
        threads: int = 0,
    ) -> None:
        self.notes: list[str] = []
        if threads:
            torch.set_num_threads(threads)  # process-wide in torch: the only knob there is
        self.device = _torch_device(device)
        self.autocast = precision is Precision.FP16 and self.device.type == "cuda"
        self.provider = f"torch-{self.device.type}" + ("-fp16" if self.autocast else "")
        configured = _parse_specs(input_spec)
        kind = _archive_kind(model_path)
        if kind == "torchscript":
            self.module, self.inputs, output_names, producers = _load_torchscript(model_path, configured)
        else:
            self.module, self.inputs, output_names, producers = _load_exported(model_path, configured)
        self.module.to(self.device)
        self.fixed_batch_size = self.inputs[0].fixed_batch_size if self.inputs else None
        self.outputs = self._probe_outputs(model_path, output_names, producers)
        if self.fixed_batch_size:
            self.notes.append(
                f"{model_path.name} has a fixed batch size of {self.fixed_batch_size}: batches are cut and padded to it"
            )
        if self.autocast:
            self.notes.append("torch runs CUDA under float16 autocast (runtime.precision: fp16); outputs move by ~1e-3")
        elif precision is Precision.FP16:
            self.notes.append("runtime.precision: fp16 is for CUDA; torch runs float32 on the CPU")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            feeds: one array per model input, named and typed exactly as `inputs` says.

        Returns:
            One array per model output (dtype as in `outputs`), first axis = the rows fed in.

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
        rows = len(feeds[self.inputs[0].name])
        size = self.fixed_batch_size
        if not size or rows == size:
            return self._run([feeds[spec.name] for spec in self.inputs])
        # A model with a static batch axis gets exactly that many rows: cut, and pad the last piece.
        pieces = []
        for start in range(0, rows, size):
            arrays = []
            for spec in self.inputs:
                part = feeds[spec.name][start : start + size]
                if len(part) < size:
                    part = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
                arrays.append(part)
            pieces.append(self._run(arrays))
        return {spec.name: np.concatenate([piece[spec.name] for piece in pieces])[:rows] for spec in self.outputs}

    def _run(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True) for array in arrays]
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.autocast else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            result = self.module(*tensors)
        values = _flatten_outputs(result)
        # Under autocast float outputs may come back as float16: give them the dtype `outputs` promises.
        return {
            spec.name: value.detach().to("cpu", dtype=_torch_dtype(spec.dtype)).numpy()
            for spec, value in zip(self.outputs, values, strict=True)
        }

    def _probe_outputs(
        self, model_path: Path, names: list[str] | None, producers: list[str | None]
    ) -> tuple[TensorSpec, ...]:
        """Run a zero batch once: the outputs' count, names, dtypes and non-batch shapes."""
        rows = self.fixed_batch_size or 2
        arrays = [
            np.zeros((rows, *(_PROBE_OPEN_AXIS if dim is None else dim for dim in spec.shape[1:])), dtype=spec.dtype)
            for spec in self.inputs
        ]
        tensors = [torch.from_numpy(array).to(self.device) for array in arrays]
        try:
            with torch.inference_mode():
                result = self.module(*tensors)
        except Exception as error:  # the module's own errors: a shape or dtype it does not take
            shapes = ", ".join(
                f"{spec.name} {np.dtype(spec.dtype).name}{list(array.shape)}"
                for spec, array in zip(self.inputs, arrays)
            )
            raise ConfigError(
                f"model {model_path.name} fails on a zero batch of its inputs ({shapes}): {one_line(error)}; "
                "check runtime.input_spec"
            ) from None
        values = _flatten_outputs(result)
        if names is None:
            names = list(result) if isinstance(result, dict) else [f"output_{index}" for index in range(len(values))]
        if len(names) != len(values):
            raise ConfigError(f"model {model_path.name} returns {len(values)} outputs, its metadata names {len(names)}")
        producers = list(producers) + [None] * (len(values) - len(producers))
        specs = []
        for name, value, producer in zip(names, values, producers):
            if not isinstance(value, torch.Tensor):
                raise ConfigError(f"model {model_path.name}: output '{name}' is a {type(value).__name__}, not a tensor")
            dtype = _TORCH_DTYPES.get(value.dtype)
            if dtype is None:
                raise ConfigError(
                    f"model {model_path.name}: output '{name}' has dtype {value.dtype}, which numpy cannot hold"
                )
            shape = (None, *value.shape[1:]) if value.dim() else ()
            specs.append(TensorSpec(name=str(name), shape=tuple(shape), dtype=np.dtype(dtype), producer=producer))
        return tuple(specs)


def _torch_device(device: Device) -> torch.device:
    if device is Device.CPU:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if device is Device.CUDA:
        raise ConfigError(
            f"runtime.device: cuda, but this torch {torch.__version__} sees no CUDA device "
            f"(CUDA build: {torch.version.cuda or 'no'}); set runtime.device: auto or cpu"
        )
    return torch.device("cpu")


def _parse_specs(input_spec: tuple[str, ...]) -> tuple[TensorSpec, ...]:
    try:
        return parse_input_specs(input_spec)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _archive_kind(model_path: Path) -> str:
    """`torchscript` or `export`, from the zip's entries; a file that is neither gets a clear error.

    Raises:
        ConfigError: not a zip archive, or a `torch.save` pickle (a state_dict or a whole module).
    """
    how_to = (
        "save a runnable model with torch.jit.save(torch.jit.trace(model, example), 'model.pt') or "
        "torch.export.save(torch.export.export(model, (example,)), 'model.pt2')"
    )
    if not zipfile.is_zipfile(model_path):
        raise ConfigError(
            f"model {model_path.name} is not a TorchScript or torch.export file (not a zip archive); {how_to}"
        )
    with zipfile.ZipFile(model_path) as archive:
        entries = [name.split("/", 1)[-1] for name in archive.namelist()]
    if "archive_format" in entries:
        return "export"
    if "constants.pkl" in entries or any(name.startswith("code/") for name in entries):
        return "torchscript"
    if "data.pkl" in entries:
        raise ConfigError(
            f"model {model_path.name} was written by torch.save (a state_dict or a pickled module): it holds "
            f"weights, not a graph that runs without your code; {how_to}"
        )
    raise ConfigError(f"model {model_path.name} is a zip archive but not a TorchScript or torch.export file; {how_to}")


def _load_torchscript(
    model_path: Path, configured: tuple[TensorSpec, ...]
) -> tuple[Any, tuple[TensorSpec, ...], None, list[str | None]]:
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript in favour of torch.export; the user's file is TorchScript all the same.
            warnings.filterwarnings("ignore", message="`torch.jit", category=DeprecationWarning)
            module = torch.jit.load(str(model_path), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError for most archive problems, others for the rest
        raise ConfigError(f"model {model_path.name}: torch.jit.load cannot read it: {one_line(error)}") from None
    module.eval()
    arguments = [argument.name for argument in module.forward.schema.arguments[1:]]  # [0] is self
    if not configured:
        raise ConfigError(
            f"runtime.input_spec is missing: TorchScript file {model_path.name} does not record its input shapes; "
            f"give one 'name: dtype[d0, d1, ...]' per forward() input ({', '.join(arguments)})"
        )
    if [spec.name for spec in configured] != arguments:
        raise ConfigError(
            f"runtime.input_spec names {', '.join(spec.name for spec in configured)} but {model_path.name}'s "
            f"forward() takes {', '.join(arguments) or 'no inputs'}, in this order"
        )
    return module, configured, None, _torchscript_producers(module)


def _load_exported(
    model_path: Path, configured: tuple[TensorSpec, ...]
) -> tuple[Any, tuple[TensorSpec, ...], list[str] | None, list[str | None]]:
    extra_files = {METADATA_FILE: ""}
    try:
        program = torch.export.load(str(model_path), extra_files=extra_files)
    except Exception as error:  # deserialisation raises RuntimeError, KeyError, version errors...
        raise ConfigError(f"model {model_path.name}: torch.export.load cannot read it: {one_line(error)}") from None
    metadata = json.loads(extra_files[METADATA_FILE]) if extra_files[METADATA_FILE] else {}
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    user_inputs = list(program.graph_signature.user_inputs)
    names = metadata.get("inputs") or user_inputs
    if len(names) != len(user_inputs):
        raise ConfigError(
            f"model {model_path.name}: its metadata names {len(names)} inputs, the program takes {len(user_inputs)}"
        )
    inputs = []
    for name, placeholder in zip(names, user_inputs):
        value = placeholders[placeholder].meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"model {model_path.name}: input '{name}' is not a tensor; only tensor inputs can be fed")
        shape = tuple(dim if isinstance(dim, int) else None for dim in value.shape)  # SymInt: a dynamic axis
        inputs.append(TensorSpec(name=name, shape=shape, dtype=np.dtype(_TORCH_DTYPES.get(value.dtype, np.float32))))
    inputs = tuple(inputs)
    if configured:
        _check_against_program(model_path, configured, inputs)
    return program.module(), inputs, metadata.get("outputs"), _export_producers(program)


def _check_against_program(
    model_path: Path, configured: tuple[TensorSpec, ...], inputs: tuple[TensorSpec, ...]
) -> None:
    """A `runtime.input_spec` given for a `.pt2` must say what the program says."""
    problems = []
    if [spec.name for spec in configured] != [spec.name for spec in inputs]:
        problems.append(f"names {[spec.name for spec in configured]} != {[spec.name for spec in inputs]}")
    for want, have in zip(configured, inputs):
        if want.dtype != have.dtype:
            problems.append(f"'{have.name}' dtype {np.dtype(want.dtype).name} != {np.dtype(have.dtype).name}")
        if len(want.shape) != len(have.shape) or any(
            w is not None and h is not None and w != h for w, h in zip(want.shape, have.shape)
        ):
            problems.append(f"'{have.name}' shape {_show(want.shape)} != {_show(have.shape)}")
    if problems:
        raise ConfigError(
            f"runtime.input_spec disagrees with {model_path.name}: {'; '.join(problems)} "
            "(a .pt2 records its inputs: remove runtime.input_spec or fix it)"
        )


def _flatten_outputs(result: Any) -> list[Any]:
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, (list, tuple)):
        return [value for item in result for value in _flatten_outputs(item)]
    return [result]


def _torchscript_producers(module: Any) -> list[str | None]:
    """The ONNX name of the op making each output of a TorchScript graph, when it is a known activation."""
    try:
        graph = module.inlined_graph
    except RuntimeError:  # some scripted modules cannot be inlined; producers stay unknown
        return []
    producers: list[str | None] = []

    def walk(value: Any) -> None:
        node = value.node()
        kind = node.kind()
        if kind == "prim::TupleConstruct" or kind == "prim::ListConstruct":
            for item in node.inputs():
                walk(item)
            return
        if kind == "prim::DictConstruct":
            for item in list(node.inputs())[1::2]:
                walk(item)
            return
        while kind.split("::")[-1] in _PASS_THROUGH and list(node.inputs()):
            node = next(iter(node.inputs())).node()
            kind = node.kind()
        producers.append(_PRODUCERS.get(kind.split("::")[-1]))

    for output in graph.return_node().inputs():
        walk(output)
    return producers


def _export_producers(program: Any) -> list[str | None]:
    """The ONNX name of the op making each output of an exported program, when it is a known activation."""
    output = next(node for node in program.graph.nodes if node.op == "output")
    producers: list[str | None] = []
    for node in output.args[0]:
        while (
            isinstance(node, torch.fx.Node)
            and node.op == "call_function"
            and _aten_name(node) in _PASS_THROUGH
            and node.args
        ):
            node = node.args[0]
        name = _aten_name(node) if isinstance(node, torch.fx.Node) and node.op == "call_function" else ""
        producers.append(_PRODUCERS.get(name))
    return producers


def _aten_name(node: Any) -> str:
    """`softmax` for `aten.softmax.int`: the op's name without namespace and overload."""
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return next(key for key, value in _TORCH_DTYPES.items() if np.dtype(value) == np.dtype(dtype))


def _show(shape: tuple) -> str:
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"
