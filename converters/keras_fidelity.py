"""Run one batch of the user's real rows through Keras and compare with what the converted model gave.

The converter's parity check runs on a seeded random batch; parity on random noise is not parity
on the user's data (a model that rescales pixels itself, a layer whose error grows with its input's
scale). `predict.fidelity` calls this module in a child process on the first batch of a run, so
TensorFlow never enters the inference process:

    python -m converters.keras_fidelity model.h5 --arrays batch.npz [--atol A] [--rtol R]
        [--custom-objects FILE] [--allow-unsafe-deserialization]

`batch.npz` holds `input:<name>` (the model inputs, by their ONNX names, which are the Keras input
names the converters give) and `output:<name>` (the converted model's raw outputs). Prints one JSON
line (see `check_batch`) and exits 0; on a `PredictError` prints `error: <message>` and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from converters.keras_to_onnx import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    LoadOptions,
    _import_tensorflow,
    _input_specs,
    _load_model,
    _one_line,
    _quiet_python_warnings,
    _read_h5_header,
    _run_keras,
    add_load_arguments,
    add_tolerance_arguments,
    compare_output,
)
from predict.errors import ConversionError, PredictError


def check_batch(
    h5_path: Path,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    options: LoadOptions | None = None,
) -> dict[str, Any]:
    """Compare the converted model's outputs on real rows with Keras' outputs on the same inputs.

    Args:
        h5_path: the Keras model the converted one came from.
        inputs: model inputs by name (the converters' names), batch axis first.
        outputs: the converted model's raw outputs by name, on `inputs`.
        atol: absolute part of the tolerance.
        rtol: relative part: elements pass `|converted - keras| <= atol + rtol * |keras|`.
        options: how to load the `.h5` (custom objects, unsafe deserialization).

    Returns:
        `{"rows", "atol", "rtol", "within_tolerance", "keras_seconds", "outputs": {name: {"max_abs_diff",
        "max_rel_diff", "max_abs_reference", "argmax_agreement", "failing_elements"}}}`; outputs only
        the converted model has are left out, and outputs Keras has but were not given are errors.

    Raises:
        ConversionError: TensorFlow is missing, Keras cannot load the model, an input is missing,
            or an output has another shape than Keras'.
    """
    header = _read_h5_header(h5_path)
    tf, _ = _import_tensorflow()
    model = _load_model(h5_path, header, options)
    arrays = _input_arrays(tf, model, h5_path, inputs)
    started = time.perf_counter()
    with _quiet_python_warnings():
        reference = _run_keras(tf, model, arrays)
    keras_seconds = time.perf_counter() - started
    results = {
        name: _compare_with_keras(h5_path, name, expected, outputs, atol=atol, rtol=rtol)
        for name, expected in reference.items()
    }
    return {
        "rows": len(arrays[0]) if arrays and np.ndim(arrays[0]) else 0,
        "atol": atol,
        "rtol": rtol,
        "within_tolerance": all(output["failing_elements"] == 0 for output in results.values()),
        "keras_seconds": round(keras_seconds, 4),
        "outputs": results,
    }


def _input_arrays(tf: Any, model: Any, h5_path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The batch's inputs in the model's order, in the dtypes Keras takes."""
    specs = _input_specs(tf, model, h5_path)
    missing = [spec.name for spec in specs if spec.name not in inputs]
    if missing:
        raise ConversionError(f"{h5_path}: the batch has no input(s) {', '.join(missing)} (got {', '.join(inputs)})")
    return [np.asarray(inputs[spec.name]).astype(spec.dtype.as_numpy_dtype, copy=False) for spec in specs]


def _compare_with_keras(
    h5_path: Path, name: str, expected: np.ndarray, outputs: dict[str, np.ndarray], *, atol: float, rtol: float
) -> dict[str, Any]:
    """How far the converted model's output `name` is from Keras' (`check_batch`'s per-output entry)."""
    if name not in outputs:
        raise ConversionError(
            f"{h5_path}: Keras output '{name}' is not among the converted model's outputs ({', '.join(outputs)})"
        )
    got = np.asarray(outputs[name])
    if got.shape != expected.shape:
        raise ConversionError(
            f"{h5_path}: output '{name}' has shape {got.shape} in the converted model, Keras gives {expected.shape}"
        )
    parity = compare_output(name, expected, got, atol=atol, rtol=rtol)
    return {
        "max_abs_diff": parity.max_abs_diff,
        "max_rel_diff": parity.max_rel_diff,
        "max_abs_reference": parity.max_abs_reference,
        "argmax_agreement": parity.argmax_agreement,
        "failing_elements": parity.failing_elements,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: print `check_batch`'s result as one JSON line (exit 0) or one error line (exit 2)."""
    parser = argparse.ArgumentParser(prog="python -m converters.keras_fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("h5_path", type=Path)
    parser.add_argument("--arrays", type=Path, required=True, help=".npz of input:<name> and output:<name> arrays")
    add_tolerance_arguments(parser)
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    try:
        with np.load(args.arrays, allow_pickle=False) as archive:
            inputs = {key[len("input:") :]: archive[key] for key in archive.files if key.startswith("input:")}
            outputs = {key[len("output:") :]: archive[key] for key in archive.files if key.startswith("output:")}
        options = LoadOptions(
            custom_objects=args.custom_objects, allow_unsafe_deserialization=args.allow_unsafe_deserialization
        )
        result = check_batch(args.h5_path, inputs, outputs, atol=args.atol, rtol=args.rtol, options=options)
    except PredictError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
