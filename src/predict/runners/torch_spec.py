"""Config-time checks of the torch backend and the Ray engine, without importing torch or ray.

`runtime.input_spec` gives the inputs of a TorchScript file, which records no shapes: one string per
model input, in the order `forward` takes them, `name: dtype[d0, d1, ...]` where each d is a size or
`?` for an axis of any size (the batch axis, usually), e.g. `image: float32[?, 3, 224, 224]`.
"""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING

import numpy as np

from predict.enums import Backend, Engine
from predict.runners.base import TensorSpec

if TYPE_CHECKING:
    from predict.config import TaskConfig

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")
EXPORT_SUFFIXES = (".pt2",)
KERAS_SUFFIXES = (".h5", ".hdf5")
TORCH_MODEL_SUFFIXES = (*TORCHSCRIPT_SUFFIXES, *EXPORT_SUFFIXES, *KERAS_SUFFIXES)
INPUT_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
_SPEC = re.compile(r"^\s*(?P<name>[^:\s][^:]*?)\s*:\s*(?P<dtype>\w+)\s*\[(?P<dims>[^\]]*)\]\s*$")
_EXAMPLE = "e.g. 'image: float32[?, 3, 224, 224]'"


def parse_input_spec(text: str, *, key: str) -> TensorSpec:
    """One `runtime.input_spec` entry as a `TensorSpec` (`?` axes become None).

    Raises:
        ValueError: naming `key`, the text and the expected form.
    """
    match = _SPEC.match(text)
    if match is None:
        raise ValueError(f"{key} {text!r}: expected 'name: dtype[d0, d1, ...]' with each d a size or ?, {_EXAMPLE}")
    dtype = match["dtype"]
    if dtype not in INPUT_DTYPES:
        raise ValueError(f"{key} {text!r}: dtype must be one of {', '.join(INPUT_DTYPES)} (got '{dtype}')")
    dims: list[int | None] = []
    for part in (part.strip() for part in match["dims"].split(",")) if match["dims"].strip() else ():
        if part == "?":
            dims.append(None)
        elif part.isdigit() and int(part) >= 1:
            dims.append(int(part))
        else:
            raise ValueError(f"{key} {text!r}: each axis must be a size >= 1 or ? (got '{part}'), {_EXAMPLE}")
    if not dims:
        raise ValueError(f"{key} {text!r}: give at least the batch axis, {_EXAMPLE}")
    return TensorSpec(name=match["name"], shape=tuple(dims), dtype=np.dtype(dtype))


def parse_input_specs(entries: tuple[str, ...]) -> tuple[TensorSpec, ...]:
    """Every `runtime.input_spec` entry, in order.

    Raises:
        ValueError: the first bad entry, or a name given twice.
    """
    specs = tuple(parse_input_spec(text, key=f"runtime.input_spec[{index}]") for index, text in enumerate(entries))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"runtime.input_spec names {', '.join(duplicates)} more than once")
    return specs


def check_runtime(task: TaskConfig) -> list[str]:
    """Problems with `runtime.backend`, `runtime.input_spec` and `runtime.engine`."""

    errors: list[str] = []
    runtime, suffix, name = task.runtime, task.model.suffix.lower(), task.model.name
    if runtime.backend is Backend.TORCH and suffix not in TORCH_MODEL_SUFFIXES:
        errors.append(
            f"runtime.backend: torch runs TorchScript ({', '.join(TORCHSCRIPT_SUFFIXES)}), torch.export (.pt2) and "
            f"Keras ({', '.join(KERAS_SUFFIXES)}) models, not '{name}'"
            + ("; set runtime.backend: onnxruntime" if suffix == ".onnx" else "")
        )
    if runtime.backend is not Backend.TORCH and suffix in (*TORCHSCRIPT_SUFFIXES, *EXPORT_SUFFIXES):
        errors.append(f"model {name} is a PyTorch file: set runtime.backend: torch")
    if runtime.input_spec:
        if runtime.backend is not Backend.TORCH or suffix not in (*TORCHSCRIPT_SUFFIXES, *EXPORT_SUFFIXES):
            errors.append(
                f"runtime.input_spec is read only for TorchScript and .pt2 models with runtime.backend: torch "
                f"(model {name} records its own inputs); remove it"
            )
        else:
            try:
                parse_input_specs(runtime.input_spec)
            except ValueError as error:
                errors.append(str(error))
    elif runtime.backend is Backend.TORCH and suffix in TORCHSCRIPT_SUFFIXES:
        errors.append(
            f"runtime.input_spec is missing: TorchScript file {name} does not record its input shapes; give one "
            f"'name: dtype[d0, d1, ...]' per input of forward(), in order, {_EXAMPLE}"
        )
    if runtime.engine is Engine.RAY and importlib.util.find_spec("ray") is None:
        errors.append("runtime.engine: ray needs Ray Data: pip install 'predict[ray]'")
    return errors
