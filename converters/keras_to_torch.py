"""Convert a Keras `.h5` model to a `torch.export` program (`.pt2`) through Keras 3 on its torch backend.

No TensorFlow: the backend is set to torch before Keras is imported and `tensorflow` is blocked in
`sys.modules`, because Keras 3.15 otherwise imports TensorFlow while reading an `.h5` file when it
is installed (keras/src/legacy/saving/json_utils.py: `if tf.available`). Run this module in its own
process (`python -m converters.keras_to_torch`, as predict.runners.torch does): a process that already
imported Keras with another backend cannot switch, and the inference process then never imports
Keras at all; it only loads the `.pt2`, a graph of plain aten ops.

Route (measured with Keras 3.15.1, torch 2.13): `keras.models.load_model(h5, compile=False)` → a
module whose `forward(*inputs)` calls the model with `training=False` and returns its outputs as a
tuple → `torch.export.export` with every open axis dynamic (the batch axis shared by all inputs) →
`torch.export.save`, the input and output names in the archive's `predict.json`. The names are the
ones `converters.keras_to_onnx` gives, so a task reads the same outputs on either backend.

Parity, before anything is written: one seeded random batch per input through Keras and through the
exported program, at `parity_batch_size` rows and at 1 row (which proves the batch axis is dynamic);
any output further than `atol` from Keras fails the conversion. The file is written to a temp file
beside the target and moved over it with `os.replace`.

CLI:
    python -m converters.keras_to_torch model.h5 -o model.pt2 [--atol 1e-4] [--debug]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.keras_to_onnx import (
    _OPEN_DIM_SIZE,
    LoadOptions,
    OutputParity,
    _clean_input_name,
    _copy_with_config,
    _drop_time_major,
    _embedding_vocabularies,
    _first_line,
    _keras_objects,
    _output_names,
    _quiet_python_warnings,
    _read_h5_header,
    _rename_op_nodes,
    _unique_names,
    add_load_arguments,
    load_custom_objects,
    warn_unsafe_deserialization,
)
from predict.errors import ConversionError, PredictError

METADATA_FILE = "predict.json"  # in the .pt2 archive: input and output names, source model
# Rows of the batch the program is traced with: 0 and 1 would be specialised by torch.export.
_EXPORT_BATCH = 2
_INT_HIGH_WITHOUT_EMBEDDING = 2


@dataclass(frozen=True, kw_only=True)
class TorchConversionReport:
    """What `convert_keras_to_torch` wrote and how closely the exported program matches Keras.

    Attributes:
        pt2_path: the `.pt2` file written.
        keras_version: Keras version that saved the `.h5`, or "unknown".
        input_names, output_names: in model order, as `converters.keras_to_onnx` names them.
        parity: one entry per output, in `output_names` order.
        atol: the tolerance every `parity[i].max_abs_diff` was checked against.
        seconds: wall time of loading, exporting, checking and writing.
    """

    pt2_path: Path
    keras_version: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    parity: tuple[OutputParity, ...]
    atol: float
    seconds: float

    @property
    def max_abs_diff(self) -> float:
        """Largest `max_abs_diff` over all outputs."""
        return max((output.max_abs_diff for output in self.parity), default=0.0)


def convert_keras_to_torch(
    h5_path: Path | str,
    pt2_path: Path | str,
    *,
    atol: float = 1e-4,
    parity_batch_size: int = 4,
    seed: int = 0,
    options: LoadOptions | None = None,
) -> TorchConversionReport:
    """Export a Keras `.h5` model as a `.pt2` program and check it against Keras on the torch backend.

    Args:
        h5_path: model saved with `model.save('model.h5')` (Keras 3, or Keras 2 that Keras 3 reads).
        pt2_path: the program to write.
        atol: largest allowed |Keras - exported program| over every output element.
        parity_batch_size: rows of the random parity batch (then 1 row).
        seed: seed of the parity batch.
        options: the user's custom objects file and unsafe-deserialization switch (see keras_to_onnx.LoadOptions).

    Raises:
        ConversionError: the file is not a Keras model, Keras cannot load it on torch, export fails,
            or parity is worse than `atol`.
    """
    started = time.perf_counter()
    h5_path, pt2_path = Path(h5_path), Path(pt2_path)
    if not (np.isfinite(atol) and atol >= 0):
        raise ConversionError(f"atol must be a finite number >= 0 (got {atol})")
    header = _read_h5_header(h5_path)
    keras, torch = _import_keras_on_torch()
    model = _load_model(keras, h5_path, header, options or LoadOptions())
    input_names, shapes, dtypes = _model_inputs(model, h5_path)

    wrapper = _wrap_model(torch, model).eval()
    example = _random_inputs(model, shapes, dtypes, rows=_EXPORT_BATCH, seed=seed + 1)
    output_names = _output_names_of(model, wrapper.call([torch.from_numpy(array) for array in example]))
    program = _export_program(torch, wrapper, example, shapes, h5_path=h5_path)
    parity = _check_parity(
        torch, model, wrapper, program, shapes, dtypes, output_names, rows=parity_batch_size, seed=seed
    )
    _check_within_atol(parity, atol=atol, h5_path=h5_path)

    metadata = {
        "inputs": list(input_names),
        "outputs": list(output_names),
        "source": h5_path.name,
        "keras_version": header.keras_version,
    }
    _save_atomically(torch, program, pt2_path, metadata)
    return TorchConversionReport(
        pt2_path=pt2_path,
        keras_version=header.keras_version,
        input_names=tuple(input_names),
        output_names=tuple(output_names),
        parity=tuple(parity),
        atol=atol,
        seconds=time.perf_counter() - started,
    )


def _model_inputs(model: Any, h5_path: Path) -> tuple[list[str], list[tuple], list[np.dtype]]:
    """The model's input names (as keras_to_onnx gives them), shapes with an open batch axis, and dtypes."""
    tensors = list(getattr(model, "inputs", None) or [])
    if not tensors:
        raise ConversionError(f"{h5_path}: the model has no defined inputs; build it with keras.Input before saving")
    input_names = _unique_names([_clean_input_name(tensor.name, index) for index, tensor in enumerate(tensors)])
    shapes = [(None, *tuple(tensor.shape)[1:]) for tensor in tensors]
    dtypes = [np.dtype(str(tensor.dtype)) for tensor in tensors]
    return input_names, shapes, dtypes


def _export_program(torch: Any, wrapper: Any, example: list[np.ndarray], shapes: list[tuple], *, h5_path: Path) -> Any:
    """`torch.export` the wrapped model with every open axis dynamic, the batch axis shared by all inputs."""
    batch = torch.export.Dim("batch")
    dynamic_shapes = (
        tuple(
            {
                axis: (batch if axis == 0 else torch.export.Dim(f"input{index}_axis{axis}"))
                for axis, dim in enumerate(shape)
                if dim is None
            }
            for index, shape in enumerate(shapes)
        ),
    )
    try:
        with _quiet_python_warnings():
            return torch.export.export(
                wrapper, tuple(torch.from_numpy(array) for array in example), dynamic_shapes=dynamic_shapes
            )
    except Exception as error:  # torch.export raises many types (Unsupported, UserError, constraint violations)
        raise ConversionError(
            f"{h5_path}: torch.export cannot capture the Keras model: {_first_line(error)}"
        ) from error


def _check_within_atol(parity: list[OutputParity], *, atol: float, h5_path: Path) -> None:
    """Fail the conversion when any output is further than `atol` from Keras."""
    worst = [output for output in parity if not output.max_abs_diff <= atol]
    if worst:
        details = ", ".join(f"'{output.name}' {output.max_abs_diff:.3g}" for output in worst)
        raise ConversionError(
            f"{h5_path}: the exported program differs from Keras by more than atol {atol:g}: {details}"
        )


def _save_atomically(torch: Any, program: Any, pt2_path: Path, metadata: dict[str, Any]) -> None:
    """Save to a temp file beside `pt2_path`, then move it over: a failure leaves no half-written program."""
    pt2_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{pt2_path.stem}-", suffix=".pt2", dir=pt2_path.parent)
    os.close(handle)
    try:
        torch.export.save(program, temp_name, extra_files={METADATA_FILE: json.dumps(metadata)})
        os.replace(temp_name, pt2_path)
    finally:
        Path(temp_name).unlink(missing_ok=True)


def format_report(report: TorchConversionReport) -> str:
    """A few lines on what was written and how close it is to Keras."""
    lines = [
        f"wrote {report.pt2_path} (Keras {report.keras_version} on torch, {report.seconds:.1f} s)",
        f"inputs: {', '.join(report.input_names)}; outputs: {', '.join(report.output_names)}",
    ]
    lines += [f"  {output.name}: max |keras - torch| {output.max_abs_diff:.3g}" for output in report.parity]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the report (exit 0) or one `error:` line (exit 2)."""
    parser = argparse.ArgumentParser(
        prog="python -m converters.keras_to_torch",
        description="Export a Keras .h5 model as a torch.export .pt2 program (Keras 3 on torch, no TensorFlow).",
    )
    parser.add_argument("h5_path", type=Path, help="model saved with model.save('model.h5')")
    parser.add_argument("-o", "--output", type=Path, default=None, help=".pt2 file to write (default: beside the .h5)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed |keras - torch| (default: 1e-4)")
    add_load_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    args = parser.parse_args(argv)
    output = args.output if args.output is not None else args.h5_path.with_suffix(".pt2")
    options = LoadOptions(
        custom_objects=args.custom_objects, allow_unsafe_deserialization=args.allow_unsafe_deserialization
    )
    try:
        report = convert_keras_to_torch(args.h5_path, output, atol=args.atol, options=options)
    except PredictError as error:
        if args.debug:
            traceback.print_exc()
        # One line: predict.runners.torch relays it when it converts in a child process.
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


def _import_keras_on_torch() -> tuple[Any, Any]:
    """Import Keras on the torch backend with TensorFlow blocked; return `(keras, torch)`.

    Raises:
        ConversionError: Keras was already imported in this process with another backend.
    """
    if "keras" in sys.modules:
        backend = sys.modules["keras"].backend.backend()
        if backend != "torch":
            raise ConversionError(
                f"Keras is already imported here with the {backend} backend, and a process cannot switch; "
                "run `python -m converters.keras_to_torch` in a fresh process"
            )
    os.environ["KERAS_BACKEND"] = "torch"
    if "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]  # `import tensorflow` now raises ImportError
    try:
        with _quiet_python_warnings():
            import keras
            import torch
    except ImportError as error:
        raise ConversionError(
            f"Keras 3 is needed to run .h5 models on torch: pip install 'predict[keras]' ({_first_line(error)})"
        ) from error
    return keras, torch


def _load_model(keras: Any, h5_path: Path, header: Any, options: LoadOptions) -> Any:
    """Load as keras_to_onnx does: Keras' application layers, op nodes renamed, the user's custom objects."""
    user_objects = load_custom_objects(options.custom_objects) if options.custom_objects is not None else {}
    if options.allow_unsafe_deserialization:
        warn_unsafe_deserialization(h5_path)
    with tempfile.TemporaryDirectory(prefix="keras_to_torch_") as scratch:
        # Keras 3 rejects Keras 2's `time_major: false` (see keras_to_onnx)
        config = _drop_time_major(header.model_config) if header.is_keras_2 else header.model_config
        config, op_objects = _rename_op_nodes(config)
        source = h5_path if config == header.model_config else _copy_with_config(h5_path, config, Path(scratch))
        try:
            with _quiet_python_warnings():
                return keras.models.load_model(
                    source,
                    compile=False,
                    custom_objects={**_keras_objects(), **op_objects, **user_objects},
                    safe_mode=not options.allow_unsafe_deserialization,
                )
        except Exception as error:  # Keras raises ValueError, TypeError, KeyError... for configs it cannot read
            raise ConversionError(
                f"{h5_path}: Keras {keras.__version__} on torch cannot load this model (saved by Keras "
                f"{header.keras_version}): {_first_line(error)}; "
                "runtime.backend: onnxruntime converts it with TensorFlow"
            ) from error


def _wrap_model(torch: Any, model: Any) -> Any:
    """A torch module around the Keras model: `forward(*inputs)` → tuple of outputs in model order."""

    class KerasModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def call(self, tensors: Sequence[Any]) -> Any:
            structure = getattr(self.model, "_inputs_struct", None)  # functional models keep how inputs nest
            if isinstance(structure, Mapping):
                import keras

                arguments: Any = keras.tree.pack_sequence_as(structure, list(tensors))
            elif len(tensors) == 1:
                arguments = tensors[0]
            else:
                arguments = list(tensors)
            return self.model(arguments, training=False)

        def forward(self, *tensors: Any) -> tuple[Any, ...]:
            result = self.call(tensors)
            if isinstance(result, Mapping):
                return tuple(result[name] for name in sorted(result))
            return tuple(result) if isinstance(result, (list, tuple)) else (result,)

    return KerasModule()


def _output_names_of(model: Any, result: Any) -> list[str]:
    if isinstance(result, Mapping):
        return [str(name) for name in sorted(result)]  # the order `forward` returns them in
    count = len(result) if isinstance(result, (list, tuple)) else 1
    return _output_names(model, count)


def _random_inputs(
    model: Any, shapes: list[tuple], dtypes: list[np.dtype], *, rows: int, seed: int
) -> list[np.ndarray]:
    """Seeded arrays: floats in [0, 1), integer ids below the vocabulary of the Embedding they feed."""
    rng = np.random.default_rng(seed)
    by_input, smallest = _embedding_vocabularies(model)
    arrays = []
    for index, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True)):
        size = (rows, *(_OPEN_DIM_SIZE if dim is None else dim for dim in shape[1:]))
        if dtype.kind == "f":
            arrays.append(rng.random(size).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.random(size) < 0.5)
        else:
            high = by_input.get(index) or smallest or _INT_HIGH_WITHOUT_EMBEDDING
            arrays.append(rng.integers(0, high, size=size).astype(dtype))
    return arrays


def _check_parity(
    torch: Any, model: Any, wrapper: Any, program: Any, shapes: list[tuple], dtypes: list[np.dtype],
    output_names: list[str], *, rows: int, seed: int,
) -> list[OutputParity]:  # fmt: skip
    exported = program.module()
    worst = {name: (0.0, 0.0) for name in output_names}
    with torch.no_grad():
        for size in (rows, 1):
            arrays = _random_inputs(model, shapes, dtypes, rows=size, seed=seed)
            tensors = [torch.from_numpy(array) for array in arrays]
            expected = wrapper(*tensors)
            try:
                got = exported(*tensors)
            except Exception as error:  # a shape the program specialised on fails here, with torch's own type
                raise ConversionError(
                    f"the exported program fails on a batch of {size}: {_first_line(error)}"
                ) from error
            for name, reference, value in zip(output_names, expected, got, strict=True):
                reference, value = reference.detach().cpu().numpy(), value.detach().cpu().numpy()
                if reference.shape != value.shape:
                    raise ConversionError(f"output '{name}': exported shape {value.shape} != Keras {reference.shape}")
                diff = float(np.max(np.abs(reference.astype(np.float64) - value)) if reference.size else 0.0)
                scale = float(np.max(np.abs(reference))) if reference.size else 0.0
                worst[name] = (max(worst[name][0], diff), max(worst[name][1], scale))
    return [
        OutputParity(name=name, max_abs_diff=diff, max_rel_diff=diff / max(scale, 1e-12), max_abs_reference=scale)
        for name, (diff, scale) in worst.items()
    ]


if __name__ == "__main__":
    sys.exit(main())
