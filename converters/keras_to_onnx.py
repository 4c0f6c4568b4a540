"""Convert a Keras `.h5` model to ONNX, then prove that onnxruntime agrees with Keras.

This module and its siblings in `converters/` are the only code of the project that imports
TensorFlow, inside functions: `import converters.keras_to_onnx` stays cheap and works where
TensorFlow is not installed.

Route (measured with TF 2.21, Keras 3.15, tf2onnx 1.17):
`keras.models.load_model(h5, compile=False)` (given Keras' application-only layers, renamed op
nodes and the user's custom objects, see `_load_model`) → a `tf.function` with an explicit input
signature whose batch dimension is `None`, returning a dict `{output_name: tensor}` → its concrete
function frozen by `convert_variables_to_constants_v2` (captured tensors become constants, see
`_frozen_graph`) → `tf2onnx.convert.from_graph_def`, with handlers for the TensorFlow ops tf2onnx
lacks (`_op_handlers`). tf2onnx's own `from_keras` fails on Keras 3 Sequential models
(`KeyError: 'keras_tensor_N'`), and the dict keeps the output names, which would otherwise come out
as `Identity:0`, `Identity_1:0`. docs/fidelity.md shows every `keras.applications` family converted.

Keras 2 files (root attribute `keras_version` 2.x) are loaded by Keras 3 after dropping the
`time_major: false` argument of their RNN layers, which Keras 3 rejects. When Keras 3 still cannot
load one (a layer Keras 3 removed, a `time_major: true` RNN) and `tf_keras` is installed, the file is
loaded with `tf_keras` instead, in this process (TF 2.21 measured: `tf_keras` loads, traces and
converts next to Keras 3 without `TF_USE_LEGACY_KERAS`; the parity check guards the result anyway).

Every conversion is checked before anything is written:
1. no node may be left in a TensorFlow op that ONNX does not define (tf2onnx only logs those),
   then `onnx.checker.check_model`, then onnxruntime must load the graph;
2. parity: one seeded random batch per input goes through Keras (`model(x, training=False)`) and
   onnxruntime (CPU), at `parity_batch_size` rows and again at 1 row, which also proves the batch
   dimension is dynamic. Any element outside `|onnx - keras| <= atol + rtol * |keras|` (np.allclose
   semantics; defaults `DEFAULT_ATOL`, `DEFAULT_RTOL`) fails the conversion.
The `.onnx` is then written to a temp file in the target folder and moved over the target with
`os.replace`, so a failed conversion never leaves a file behind (an older file there is kept as is).

CLI:
    python -m converters.keras_to_onnx model.h5 -o model.onnx [--opset 17] [--atol 5e-3] [--rtol 1e-3]
        [--custom-objects my_layers.py] [--allow-unsafe-deserialization] [--debug]
prints the report and exits 0; on a `PredictError` it prints one line `error: <message>` to stderr
and exits 2 (with `--debug`, the traceback comes first).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from predict.errors import ConversionError, PredictError

_INSTALL_HINT = "pip install 'predict[convert]'"
# Size given to a non-batch dimension the model leaves open (sequence length, image side) when the
# parity batch is built: big enough for a few pooling steps, small enough to stay fast.
_OPEN_DIM_SIZE = 32
# Integer inputs that feed no Embedding layer get ids in [0, 2): 0 and 1 are valid indices for any
# lookup, and a wider range could make Keras raise on an out-of-range gather.
_INT_HIGH_WITHOUT_EMBEDDING = 2
# Floor of the denominator of `OutputParity.max_rel_diff`, so that an all-zero output gives a finite value.
_REL_DIFF_FLOOR = 1e-12
# Lowest opset tf2onnx 1.17 can still target; the highest comes from tf2onnx itself.
_MIN_OPSET = 7
_TF_OP_NAME = re.compile(r"[^A-Za-z0-9_.\-/]")
_ERROR_TEXT_LIMIT = 300


# Parity tolerance, element-wise as np.allclose: |onnx - keras| <= ATOL + RTOL * |keras|. Chosen from
# the Keras applications zoo (docs/fidelity.md, scripts/keras_zoo.py, logits scaled to a largest |logit|
# of 10 as a trained classifier's): float32 re-association noise is 1e-6 to 9e-5 of the output's scale
# (EfficientNetB3: 9.2e-4 absolute) and 1.7e-4 for InceptionV3 (1.7e-3 absolute; the trained InceptionV3 of issue 14:
# 4e-4 at logits of 8), and it hits logits near zero as hard as large ones, so the absolute part must
# cover it: 5e-3 leaves a 3x margin. A wrong layout or a dropped layer moves a model's outputs by a
# sizeable part of their variation, 0.1 and more on such logits, and fails
# (tests/converters/test_tolerance.py corrupts converted graphs to prove it).
DEFAULT_ATOL = 5e-3
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True, kw_only=True)
class OutputParity:
    """How far one output is from Keras.

    Attributes:
        name: the output's name.
        max_abs_diff: largest |got - keras| over all elements.
        max_rel_diff: relative to the output's scale, `max_abs_diff / max(max_abs_reference, 1e-12)`.
            An element-wise ratio is not used on purpose: softmax and sigmoid outputs hold values
            near 1e-8 whose float32 rounding noise would read as large relative errors.
        max_abs_reference: largest |keras| (the output's scale).
        argmax_agreement: share of rows whose argmax over the last axis is the same in both, for
            outputs with a last axis of 2 or more (class scores); None otherwise.
        failing_elements: elements outside `atol + rtol * |keras|` (0 when within tolerance).
    """

    name: str
    max_abs_diff: float
    max_rel_diff: float
    max_abs_reference: float
    argmax_agreement: float | None = None
    failing_elements: int = 0


def compare_output(
    name: str, expected: np.ndarray, got: np.ndarray, *, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> OutputParity:
    """Compare one output with the Keras reference, element-wise as `np.allclose(got, expected, rtol, atol)`.

    Args:
        name: the output's name, for the report.
        expected: the Keras output, any dtype, batch axis first.
        got: the same output from onnxruntime or torch, same shape.
        atol: absolute part of the tolerance.
        rtol: relative part of the tolerance, times |expected| element-wise.

    Returns:
        The output's differences; `failing_elements` counts elements outside the tolerance (equal
        infinities and NaN against NaN agree; a NaN against a number fails).
    """
    want = np.asarray(expected, dtype=np.float64)
    have = np.asarray(got, dtype=np.float64)
    same = (want == have) | (np.isnan(want) & np.isnan(have))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(want - have))
    diff = np.where(np.isnan(diff), np.inf, diff)
    with np.errstate(invalid="ignore"):
        bound = atol + rtol * np.abs(want)
    failing = int(np.count_nonzero(~(diff <= np.where(np.isnan(bound), np.inf, bound))))
    max_abs_diff = float(diff.max(initial=0.0))
    scale = _max_abs(want)
    agreement = None
    if want.ndim >= 2 and want.shape[-1] >= 2 and want.size:
        agreement = float(np.mean(np.argmax(want, axis=-1) == np.argmax(have, axis=-1)))
    return OutputParity(
        name=name,
        max_abs_diff=max_abs_diff,
        max_rel_diff=max_abs_diff / max(scale, _REL_DIFF_FLOOR),
        max_abs_reference=scale,
        argmax_agreement=agreement,
        failing_elements=failing,
    )


@dataclass(frozen=True, kw_only=True)
class ConversionReport:
    """What `convert_keras_to_onnx` wrote and how closely the ONNX graph matches Keras.

    Attributes:
        onnx_path: the `.onnx` file written.
        keras_version: Keras version that saved the `.h5` (its root attribute), or "unknown".
        input_names: ONNX input names, which are the Keras input names, in model order.
        output_names: ONNX output names in model order: the Keras output names of a functional
            model, `output_0`, `output_1`... for a Sequential model.
        parity: one entry per output, in `output_names` order.
        atol: absolute part of the tolerance every output element was checked against.
        rtol: relative part: each element passed `|onnx - keras| <= atol + rtol * |keras|`.
        seconds: wall time of loading, converting, checking and writing.
    """

    onnx_path: Path
    keras_version: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    parity: tuple[OutputParity, ...]
    atol: float
    rtol: float = DEFAULT_RTOL
    seconds: float

    @property
    def max_abs_diff(self) -> float:
        """Largest `max_abs_diff` over all outputs (0.0 for a model without outputs)."""
        return max((output.max_abs_diff for output in self.parity), default=0.0)


@dataclass(frozen=True, kw_only=True)
class _H5Header:
    keras_version: str
    model_config: dict[str, Any]

    @property
    def is_keras_2(self) -> bool:
        return not self.keras_version.startswith("3")


@dataclass(frozen=True, kw_only=True)
class _InputSpec:
    name: str
    shape: tuple[int | None, ...]  # batch dimension first, always None
    dtype: Any  # tf.DType


def convert_keras_to_onnx(
    h5_path: Path | str,
    onnx_path: Path | str,
    *,
    opset: int = 17,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    parity_batch_size: int = 4,
    seed: int = 0,
    custom_objects: Path | str | None = None,
    allow_unsafe_deserialization: bool = False,
) -> ConversionReport:
    """Convert a full Keras model saved as `.h5` to ONNX with a dynamic batch dimension.

    Args:
        h5_path: a model saved with `model.save("model.h5")` by Keras 3, or by Keras 2 / tf_keras.
        onnx_path: where to write the ONNX graph; its folder must exist. Written only if every check passes.
        opset: ONNX opset to target.
        atol: absolute part of the tolerance: every element must pass `|onnx - keras| <= atol + rtol * |keras|`.
        rtol: relative part of the tolerance.
        parity_batch_size: rows of the random parity batch (at least 2: the graph is also run at 1 row).
        seed: seed of the random parity batch.
        custom_objects: a Python file the user trusts whose classes and functions Keras needs to load the model.
        allow_unsafe_deserialization: load Lambda layers that hold Python bytecode (it runs); prints a warning.

    Returns:
        The report: names, per-output parity, time taken.

    Raises:
        ConversionError: the file is missing, not HDF5, truncated or holds weights only; TensorFlow
            is not installed; Keras cannot load the model; tf2onnx cannot convert one of its ops;
            the ONNX graph is invalid; or an output differs from Keras by more than the tolerance.
    """
    started = time.perf_counter()
    h5_path, onnx_path = Path(h5_path), Path(onnx_path)
    _check_arguments(h5_path, onnx_path, opset=opset, atol=atol, rtol=rtol, parity_batch_size=parity_batch_size)
    header = _read_h5_header(h5_path)
    tf, tf2onnx = _import_tensorflow()
    _check_opset(opset, tf2onnx)
    custom_objects = Path(custom_objects) if custom_objects is not None else None
    options = LoadOptions(custom_objects=custom_objects, allow_unsafe_deserialization=allow_unsafe_deserialization)
    model = _load_model(h5_path, header, options)
    specs = _input_specs(tf, model, h5_path)
    inputs, reference = _keras_reference(tf, model, specs, batch_size=parity_batch_size, seed=seed)
    output_names = tuple(reference)

    proto = _export(tf, tf2onnx, model, specs, output_names, opset=opset, h5_path=h5_path)
    parity = _check_parity(_open_session(proto, h5_path), inputs, reference, atol=atol, rtol=rtol, h5_path=h5_path)
    _write_atomically(proto, onnx_path)
    return ConversionReport(
        onnx_path=onnx_path,
        keras_version=header.keras_version,
        input_names=tuple(spec.name for spec in specs),
        output_names=output_names,
        parity=parity,
        atol=atol,
        rtol=rtol,
        seconds=time.perf_counter() - started,
    )


def format_report(report: ConversionReport) -> str:
    """A few human-readable lines: where the graph went, its names, per-output parity, time.

    Args:
        report: what `convert_keras_to_onnx` returned.

    Returns:
        The lines joined by newlines, no trailing newline.
    """
    lines = [
        f"wrote {report.onnx_path} in {report.seconds:.1f} s (Keras {report.keras_version} model, dynamic batch)",
        f"inputs: {', '.join(report.input_names)}; outputs: {', '.join(report.output_names)}",
        "onnxruntime vs Keras on a random batch, "
        f"tolerance |onnx - keras| <= {report.atol:g} + {report.rtol:g} * |keras|:",
    ]
    lines.extend(format_parity(report.parity))
    return "\n".join(lines)


def format_parity(parity: Sequence[OutputParity]) -> list[str]:
    """One line per output: max abs diff, max relative diff (to the output's scale), argmax agreement."""
    width = max((len(output.name) for output in parity), default=0)
    lines = []
    for output in parity:
        agreement = "" if output.argmax_agreement is None else f"  argmax agreement {output.argmax_agreement:.1%}"
        lines.append(
            f"  {output.name:<{width}}  max abs diff {output.max_abs_diff:.3g}"
            f"  max rel diff {output.max_rel_diff:.3g}  (max |keras| {output.max_abs_reference:.3g}){agreement}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line: convert one `.h5` file; print the report (exit 0) or one error line (exit 2).

    Args:
        argv: arguments without the program name; `sys.argv[1:]` when None.

    Returns:
        0 on success, 2 on a `PredictError` (argparse itself exits 2 on bad arguments).
    """
    parser = argparse.ArgumentParser(
        prog="python -m converters.keras_to_onnx",
        description="Convert a Keras .h5 model to ONNX and check that onnxruntime agrees with Keras.",
    )
    parser.add_argument("h5_path", type=Path, help="model saved with model.save('model.h5')")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="ONNX file to write (default: the .h5 path with suffix .onnx)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    add_tolerance_arguments(parser)
    add_load_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    args = parser.parse_args(argv)
    output = args.output if args.output is not None else args.h5_path.with_suffix(".onnx")
    try:
        report = convert_keras_to_onnx(
            args.h5_path,
            output,
            opset=args.opset,
            atol=args.atol,
            rtol=args.rtol,
            custom_objects=args.custom_objects,
            allow_unsafe_deserialization=args.allow_unsafe_deserialization,
        )
    except PredictError as exc:
        if args.debug:
            traceback.print_exc()
        # One line: the inference core relays this line when it converts in a subprocess.
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


def add_tolerance_arguments(parser: argparse.ArgumentParser) -> None:
    """`--atol` and `--rtol`, shared by this CLI and `predict convert`."""
    parser.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"absolute part of the parity tolerance (default: {DEFAULT_ATOL:g})",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=DEFAULT_RTOL,
        help="relative part: each element must pass |onnx - keras| <= atol + rtol * |keras| "
        f"(default: {DEFAULT_RTOL:g})",
    )


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """`--custom-objects FILE` and `--allow-unsafe-deserialization`, shared by the converters and `predict convert`."""
    parser.add_argument(
        "--custom-objects",
        type=Path,
        default=None,
        metavar="FILE",
        help="a Python file you trust that defines the model's custom layers; its classes are given to Keras by name",
    )
    parser.add_argument(
        "--allow-unsafe-deserialization",
        action="store_true",
        help="load Lambda layers that hold Python bytecode (the code runs: only for files you trust)",
    )


# ---------------------------------------------------------------------------------------------
# Checks that need neither TensorFlow nor the model


def _check_arguments(
    h5_path: Path, onnx_path: Path, *, opset: int, atol: float, rtol: float, parity_batch_size: int
) -> None:
    problems = []
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not (np.isfinite(value) and value >= 0):
            problems.append(f"{name} must be a finite number >= 0 (got {value})")
    if parity_batch_size < 2:
        problems.append(
            f"parity_batch_size must be >= 2 (got {parity_batch_size}): the graph is also run at batch 1 "
            "to prove its batch dimension is dynamic"
        )
    if not isinstance(opset, int) or isinstance(opset, bool):
        problems.append(f"opset must be an int (got {opset!r})")
    if onnx_path.is_dir():
        problems.append(f"{onnx_path} is a folder; give the path of the .onnx file to write")
    elif not onnx_path.parent.is_dir():
        problems.append(f"{onnx_path}: output folder {onnx_path.parent} does not exist")
    if h5_path.exists() and onnx_path.exists() and h5_path.resolve() == onnx_path.resolve():
        problems.append(f"{onnx_path}: output path is the input .h5 file; choose another path for the .onnx")
    if problems:
        raise ConversionError("; ".join(problems))


def _check_opset(opset: int, tf2onnx: Any) -> None:
    highest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if not _MIN_OPSET <= opset <= highest:
        raise ConversionError(
            f"opset must be between {_MIN_OPSET} and {highest} for tf2onnx {tf2onnx.__version__} (got {opset})"
        )


def _read_h5_header(h5_path: Path) -> _H5Header:
    """Check with h5py, before TensorFlow loads anything, that the file is a full Keras model."""
    if not h5_path.exists():
        raise ConversionError(f"{h5_path}: file not found")
    if h5_path.is_dir():
        raise ConversionError(f"{h5_path}: is a folder, not a Keras .h5 file")
    try:
        import h5py
    except ImportError as exc:
        raise ConversionError(f"h5py is needed to read Keras .h5 files: {_INSTALL_HINT}") from exc

    if zipfile.is_zipfile(h5_path):
        raise ConversionError(
            f"{h5_path}: is a zip archive (a Keras 3 '.keras' file?), not HDF5; "
            "save the model as HDF5 with model.save('model.h5')"
        )
    if not h5py.is_hdf5(h5_path):
        raise ConversionError(f"{h5_path}: not an HDF5 file; expected a Keras model saved with model.save('model.h5')")
    try:
        with h5py.File(h5_path, "r") as h5_file:
            attributes = dict(h5_file.attrs)
    except OSError as exc:
        raise ConversionError(
            f"{h5_path}: cannot read the HDF5 file, it is truncated or corrupt ({_first_line(exc)})"
        ) from exc

    raw_config = attributes.get("model_config")
    if raw_config is None:
        raise ConversionError(
            f"{h5_path}: holds weights only, no model config (saved with save_weights?); "
            "converting needs the full model saved with model.save('model.h5')"
        )
    try:
        model_config = json.loads(_as_text(raw_config))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{h5_path}: the model config is not valid JSON ({_first_line(exc)})") from exc
    raw_version = attributes.get("keras_version")
    keras_version = _as_text(raw_version) if raw_version is not None else "unknown"
    return _H5Header(keras_version=keras_version, model_config=model_config)


# ---------------------------------------------------------------------------------------------
# TensorFlow and the model


def _import_tensorflow() -> tuple[Any, Any]:
    """Import TensorFlow, Keras and tf2onnx quietly; return `(tf, tf2onnx)`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = _stderr_silenced() if "tensorflow" not in sys.modules else contextlib.nullcontext()
    try:
        with quiet, _quiet_python_warnings():
            import keras  # noqa: F401  (imported here so its import noise is silenced too)
            import tensorflow as tf
            import tf2onnx
    except ImportError as exc:
        missing = (exc.name or "tensorflow").split(".")[0]  # keras reports "tensorflow.python"
        raise ConversionError(
            f"TensorFlow and tf2onnx are needed to convert Keras models ({missing} is not installed): {_INSTALL_HINT}"
        ) from exc
    tf.get_logger().setLevel(logging.ERROR)
    # tf2onnx logs every node it converts at INFO.
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    return tf, tf2onnx


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at a throw-away file while the block runs.

    TF 2.21's C++ runtime prints oneDNN and absl notices to stderr while it is imported, whatever
    `TF_CPP_MIN_LOG_LEVEL` says (measured); they would bury the one `error:` line of the CLI.
    """
    sys.stderr.flush()
    try:
        saved_fd = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters): nothing to silence
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            except ImportError:
                raise  # becomes one `error:` line with the install command
            except BaseException:
                # A broken install: what TensorFlow printed is the clue, so hand it back.
                sys.stderr.flush()
                os.dup2(saved_fd, 2)
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", errors="replace"))
                raise
            finally:
                sys.stderr.flush()
                os.dup2(saved_fd, 2)
    finally:
        os.close(saved_fd)


@contextlib.contextmanager
def _quiet_python_warnings() -> Iterator[None]:
    """Hide Keras' UserWarnings (legacy HDF5, `input_shape` arguments): they are about the user's code, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _load_model(h5_path: Path, header: _H5Header, options: LoadOptions | None = None) -> Any:
    """Load with Keras 3; for a Keras 2 file fall back to tf_keras when Keras 3 cannot load it.

    Keras 3 is given, besides the user's own `options.custom_objects`, the layers only Keras'
    applications define and the op classes a functional config records as layers (see
    `_keras_objects`); op nodes whose class name is also a layer's are renamed in a copy first.
    """
    import keras

    options = options or LoadOptions()
    user_objects = load_custom_objects(options.custom_objects) if options.custom_objects is not None else {}
    if options.allow_unsafe_deserialization:
        warn_unsafe_deserialization(h5_path)
    keras_error: Exception
    with tempfile.TemporaryDirectory(prefix="keras_to_onnx_") as scratch:
        source, keras_3_objects = _keras_3_source(h5_path, header, Path(scratch))
        try:
            with _quiet_python_warnings():
                return keras.models.load_model(
                    source,
                    compile=False,
                    custom_objects={**keras_3_objects, **user_objects},
                    safe_mode=not options.allow_unsafe_deserialization,
                )
        except Exception as exc:
            keras_error = exc

    what = f"Keras {keras.__version__} cannot load this model (saved by Keras {header.keras_version})"
    _raise_unless_tf_keras_may_load(h5_path, header, keras_error, what=what)
    return _load_with_tf_keras(h5_path, options, user_objects, keras_error, what=what)


def _keras_3_source(h5_path: Path, header: _H5Header, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """The file Keras 3 loads (a copy in `scratch` when its config needs changes) and the objects it needs.

    The objects are Keras' application-only layers and the classes of renamed op nodes; the user's come on top.
    """
    config = _drop_time_major(header.model_config) if header.is_keras_2 else header.model_config
    config, op_objects = _rename_op_nodes(config)
    source = h5_path if config == header.model_config else _copy_with_config(h5_path, config, scratch)
    return source, {**_keras_objects(), **op_objects}


def _raise_unless_tf_keras_may_load(h5_path: Path, header: _H5Header, keras_error: Exception, *, what: str) -> None:
    """Explain why Keras 3 failed, unless the file is a Keras 2 one whose failure tf_keras may avoid."""
    if "safe_mode" in str(keras_error):
        raise ConversionError(
            f"{h5_path}: {what}: it has a Lambda layer holding Python bytecode, which Keras refuses to "
            "load from a file because it can run arbitrary code; if you trust the file, allow it with "
            "--allow-unsafe-deserialization (model_options.allow_unsafe_deserialization: true), or replace "
            "the Lambda by a registered custom layer and save the model again"
        ) from keras_error
    unknown = re.search(
        r"Unknown (?:layer|object|activation|initializer|regularizer|constraint)[^']*'([^']+)'", str(keras_error)
    )
    if unknown and not header.is_keras_2:
        raise ConversionError(
            f"{h5_path}: {what}: it uses '{unknown.group(1)}', which is not a Keras class; name the Python file "
            "that defines it with --custom-objects FILE (model_options.custom_objects: FILE)"
        ) from keras_error
    if not header.is_keras_2:
        raise ConversionError(f"{h5_path}: {what}: {_first_line(keras_error)}") from keras_error


def _load_with_tf_keras(
    h5_path: Path, options: LoadOptions, user_objects: dict[str, Any], keras_error: Exception, *, what: str
) -> Any:
    """Load a Keras 2 file with Keras 2 (tf_keras) after Keras 3 failed with `keras_error`."""
    try:
        with _quiet_python_warnings():
            import tf_keras
    except ImportError:
        raise ConversionError(
            f"{h5_path}: {what}: {_first_line(keras_error)}; installing tf_keras "
            "(pip install --no-deps tf-keras) lets this converter load Keras 2 files with Keras 2"
        ) from keras_error
    try:
        with _quiet_python_warnings():
            return tf_keras.models.load_model(
                h5_path, compile=False, custom_objects=user_objects, safe_mode=not options.allow_unsafe_deserialization
            )
    except Exception as exc:  # tf_keras raises as many exception types as Keras 3
        raise ConversionError(
            f"{h5_path}: {what} ({_first_line(keras_error)}), "
            f"nor can tf_keras {tf_keras.__version__} ({_first_line(exc)})"
        ) from exc


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """How a `.h5` is loaded: the user's `model_options` (see predict.config.ModelOptionsConfig).

    Attributes:
        custom_objects: a Python file the user trusts; its classes and functions are given to Keras by name.
        allow_unsafe_deserialization: let Lambda layers' Python bytecode load (and run).
    """

    custom_objects: Path | None = None
    allow_unsafe_deserialization: bool = False


def warn_unsafe_deserialization(h5_path: Path) -> None:
    """Print the `warning:` line the inference core relays when Lambda bytecode is allowed to load."""
    print(
        f"warning: {h5_path.name}: unsafe deserialization is allowed: the Python bytecode of its Lambda "
        "layers runs while it loads; only do this for a file you trust",
        file=sys.stderr,
    )


def load_custom_objects(path: Path) -> dict[str, Any]:
    """Import the user's Python file and return the classes and functions it defines, by name.

    Each object is given under its class name and, when registered with
    `keras.saving.register_keras_serializable`, under its registered name (`package>Name`) too.

    Raises:
        ConversionError: the file is missing, not a `.py` file, fails to import, or defines nothing.
    """
    import importlib.util

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"custom objects file not found: {path}")
    if path.suffix != ".py":
        raise ConversionError(f"custom objects file {path} must be a Python file (.py)")
    module_name = f"predict_custom_objects_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConversionError(f"custom objects file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        with _quiet_python_warnings():
            spec.loader.exec_module(module)
    except Exception as exc:  # the user's code can raise anything
        del sys.modules[module_name]
        raise ConversionError(
            f"custom objects file {path} failed to import: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    objects: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module_name:
            continue
        if not (isinstance(value, type) or callable(value)):
            continue
        objects[name] = value
        registered = _registered_name(value)
        if registered:
            objects[registered] = value
    if not objects:
        raise ConversionError(f"custom objects file {path} defines no class or function to give Keras")
    return objects


def _registered_name(value: Any) -> str | None:
    import keras

    name = keras.saving.get_registered_name(value)
    return name if name and name != getattr(value, "__name__", None) else None


def _keras_objects() -> dict[str, Any]:
    """Classes Keras 3 writes into an `.h5` config but cannot find again when loading it (measured, Keras 3.15).

    - Layers only Keras' applications define, unregistered: ConvNeXt's `LayerScale` and
      `StochasticDepth`, InceptionResNetV2's `CustomScaleLayer`.

    Op classes a functional model records as layers (`NotEqual`, the mask of `Embedding(mask_zero=True)`;
    `Add` for `x + 3.0`) are handled by `_rename_op_nodes`.
    """
    from keras.src.applications import convnext, inception_resnet_v2  # no public import path

    return {
        "LayerScale": convnext.LayerScale,
        "StochasticDepth": convnext.StochasticDepth,
        "CustomScaleLayer": inception_resnet_v2.CustomScaleLayer,
    }


# Prefix of the class name an op node gets in the patched copy of the config, so that it cannot
# collide with a layer of the same name.
_OP_PREFIX = "KerasOp_"


def _rename_op_nodes(config: Any) -> tuple[Any, dict[str, Any]]:
    """Return a copy of a model config whose op nodes name their op class unambiguously, and those classes.

    `x + 3.0` in a Keras 3 functional model (MobileNetV3's hard sigmoid) is recorded in the `.h5`
    as a node of class `Add`, with no module. On loading, Keras takes it for the `Add` merging
    layer, which rejects the constant 3.0 ("Only input tensors may be passed as positional
    arguments"). An op node is told from a layer by its config, which lacks the `trainable` key
    every layer's config has; it is renamed `KerasOp_<Name>` and mapped to the op class in
    `keras.ops`. Nested models (a fine-tuned application inside the user's model) are patched too.
    """
    from keras.src.ops import core, image, math, nn
    from keras.src.ops import numpy as keras_numpy

    modules = (keras_numpy, nn, math, core, image)
    found: dict[str, Any] = {}

    def op_class(name: str) -> Any:
        for module in modules:
            candidate = getattr(module, name, None)
            if isinstance(candidate, type) and hasattr(candidate, "symbolic_call"):
                return candidate
        return None

    def patch(node: Any) -> Any:
        if isinstance(node, list):
            return [patch(item) for item in node]
        if not isinstance(node, dict):
            return node
        patched = {key: patch(value) for key, value in node.items()}
        class_name = node.get("class_name")
        layer_config = node.get("config")
        if (
            isinstance(class_name, str)
            and "inbound_nodes" in node
            and isinstance(layer_config, dict)
            and "trainable" not in layer_config
            and "module" not in node
        ):
            cls = op_class(class_name)
            if cls is not None:
                patched["class_name"] = _OP_PREFIX + class_name
                found[_OP_PREFIX + class_name] = cls
        return patched

    return patch(config), found


def _drop_time_major(config: Any) -> Any:
    """Return a copy of a Keras 2 config without `time_major: false`, which Keras 3 RNN layers reject.

    `time_major: true` is kept: dropping it would silently change what the layer expects, so Keras 3
    fails on it and tf_keras gets the file.
    """
    if isinstance(config, dict):
        return {
            key: _drop_time_major(value)
            for key, value in config.items()
            if not (key == "time_major" and value is False)
        }
    if isinstance(config, list):
        return [_drop_time_major(value) for value in config]
    return config


def _copy_with_config(h5_path: Path, config: dict[str, Any], folder: Path) -> Path:
    import h5py

    copy = folder / h5_path.name
    shutil.copyfile(h5_path, copy)
    with h5py.File(copy, "r+") as h5_file:
        h5_file.attrs["model_config"] = json.dumps(config)
    return copy


def _input_specs(tf: Any, model: Any, h5_path: Path) -> list[_InputSpec]:
    """Input name, shape (batch dimension None) and dtype of every model input, in model order."""
    tensors = list(getattr(model, "inputs", None) or [])
    if not tensors:
        raise ConversionError(f"{h5_path}: the model has no defined inputs; build it with keras.Input before saving")
    names = _unique_names([_clean_input_name(tensor.name, index) for index, tensor in enumerate(tensors)])
    specs = []
    for name, tensor in zip(names, tensors, strict=True):
        dtype = tf.as_dtype(tensor.dtype)
        if not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
            raise ConversionError(
                f"{h5_path}: input '{name}' has dtype {dtype.name}; only numeric inputs can be converted"
            )
        dims = tf.TensorShape(tensor.shape).as_list()
        shape = (None, *dims[1:]) if dims else ()
        specs.append(_InputSpec(name=name, shape=shape, dtype=dtype))
    return specs


def _clean_input_name(raw_name: str, index: int) -> str:
    """Keras input name without `:0`, made valid as a TensorFlow op name (`input_<i>` if nothing is left)."""
    name = _TF_OP_NAME.sub("_", str(raw_name).split(":")[0])
    if not name or not (name[0].isalnum() or name[0] == "."):
        return f"input_{index}"
    return name


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, suffix = name, 1
        while candidate in seen:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _make_parity_inputs(
    model: Any, specs: Sequence[_InputSpec], *, batch_size: int, seed: int
) -> dict[str, np.ndarray]:
    """One seeded random array per input.

    Floats are uniform in [0, 1). Integers are token ids in [0, vocabulary) when the input feeds an
    Embedding layer directly, else in [0, smallest Embedding vocabulary of the model), else in [0, 2).
    Open non-batch dimensions get size 32.
    """
    rng = np.random.default_rng(seed)
    vocabulary_by_input, smallest_vocabulary = _embedding_vocabularies(model)
    arrays = {}
    for index, spec in enumerate(specs):
        shape = (batch_size, *(_OPEN_DIM_SIZE if dim is None else dim for dim in spec.shape[1:]))
        numpy_dtype = spec.dtype.as_numpy_dtype
        if spec.dtype.is_floating:
            arrays[spec.name] = rng.random(shape).astype(numpy_dtype)
        elif spec.dtype.is_bool:
            arrays[spec.name] = rng.random(shape) < 0.5
        else:
            high = vocabulary_by_input.get(index) or smallest_vocabulary or _INT_HIGH_WITHOUT_EMBEDDING
            arrays[spec.name] = rng.integers(0, high, size=shape).astype(numpy_dtype)
    return arrays


def _embedding_vocabularies(model: Any) -> tuple[dict[int, int], int | None]:
    """Map input index → `input_dim` of the Embedding it feeds directly; also the smallest `input_dim` of all."""
    index_by_tensor = {id(tensor): index for index, tensor in enumerate(model.inputs)}
    by_input: dict[int, int] = {}
    sizes = []
    for layer in _all_layers(model):
        if not any(cls.__name__ == "Embedding" for cls in type(layer).__mro__):
            continue
        size = int(layer.input_dim)
        sizes.append(size)
        for node in getattr(layer, "_inbound_nodes", None) or []:
            for tensor in _node_input_tensors(node):
                index = index_by_tensor.get(id(tensor))
                if index is not None:
                    by_input[index] = min(size, by_input.get(index, size))
    return by_input, min(sizes, default=None)


def _all_layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", None) or []:
        yield layer
        if getattr(layer, "layers", None):
            yield from _all_layers(layer)


def _node_input_tensors(node: Any) -> list[Any]:
    """Input tensors of a graph node; Keras 3 names them `input_tensors`, tf_keras `keras_inputs`."""
    for attribute in ("input_tensors", "keras_inputs"):
        try:
            tensors = getattr(node, attribute)
        except (AttributeError, ValueError):  # tf_keras raises ValueError for nodes built outside a functional graph
            continue
        if tensors is not None:
            return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
    return []


def _call_model(model: Any, tensors: Sequence[Any]) -> dict[str, Any]:
    """Call the model on its inputs (model order) and name its outputs; used eagerly and in the tf.function."""
    structure = getattr(model, "_inputs_struct", None)  # Keras 3 functional models keep how inputs are nested
    if isinstance(structure, Mapping):
        import tensorflow as tf

        arguments: Any = tf.nest.pack_sequence_as(structure, list(tensors))
    elif len(tensors) == 1:
        arguments = tensors[0]
    else:
        arguments = list(tensors)
    result = model(arguments, training=False)
    if isinstance(result, Mapping):
        return {str(name): value for name, value in result.items()}
    flat = list(result) if isinstance(result, (list, tuple)) else [result]
    return dict(zip(_output_names(model, len(flat)), flat, strict=True))


def _output_names(model: Any, count: int) -> list[str]:
    generic = [f"output_{index}" for index in range(count)]
    if any(cls.__name__ == "Sequential" for cls in type(model).__mro__):
        return generic  # Keras 3 Sequential has no output_names; tf_keras gives the last layer's name
    names = list(getattr(model, "output_names", None) or [])
    if len(names) == count and len(set(names)) == count and all(isinstance(name, str) and name for name in names):
        return names
    return generic


def _keras_reference(
    tf: Any, model: Any, specs: Sequence[_InputSpec], *, batch_size: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The seeded random parity batch by input name, and Keras' outputs on it by output name."""
    inputs = _make_parity_inputs(model, specs, batch_size=batch_size, seed=seed)
    with _quiet_python_warnings():
        reference = _run_keras(tf, model, [inputs[spec.name] for spec in specs])
    return inputs, reference


def _run_keras(tf: Any, model: Any, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    outputs = _call_model(model, [tf.convert_to_tensor(array) for array in arrays])
    return {name: np.asarray(value) for name, value in outputs.items()}


# ---------------------------------------------------------------------------------------------
# ONNX


def _export(
    tf: Any,
    tf2onnx: Any,
    model: Any,
    specs: Sequence[_InputSpec],
    output_names: Sequence[str],
    *,
    opset: int,
    h5_path: Path,
) -> Any:
    """Trace the model with a None batch dimension, convert it with tf2onnx and validate the graph."""
    signature = tuple(tf.TensorSpec(spec.shape, spec.dtype, name=spec.name) for spec in specs)

    @tf.function(input_signature=signature)
    def serve(*tensors: Any) -> dict[str, Any]:
        return _call_model(model, tensors)

    with _captured_logs("tf2onnx") as messages, _quiet_python_warnings():
        try:
            graph_def, input_names, renames = _frozen_graph(serve, signature)
            proto, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                name="serve",
                input_names=input_names,
                output_names=list(renames)[len(input_names) :],
                opset=opset,
                tensors_to_rename=renames,
                custom_op_handlers=_op_handlers(opset),
            )
        except ConversionError as exc:
            raise ConversionError(f"{h5_path}: {exc}") from exc
        except Exception as exc:  # tf2onnx raises anything from KeyError to RuntimeError
            raise ConversionError(f"{h5_path}: tf2onnx failed to convert the model: {_first_line(exc)}") from exc

    _check_ops_defined(proto, opset=opset, h5_path=h5_path)
    _order_outputs(proto, output_names, h5_path)
    _name_batch_dimension(proto)
    # tf2onnx writes the traced function's name, "__inference_serve_<counter>", which changes per call.
    proto.graph.doc_string = f"Keras model {getattr(model, 'name', '')}, converted by converters.keras_to_onnx"
    _check_graph(proto, [spec.name for spec in specs], tf2onnx_messages=messages, h5_path=h5_path)
    return proto


def _check_ops_defined(proto: Any, *, opset: int, h5_path: Path) -> None:
    """Fail on nodes left in TensorFlow ops ONNX does not define: tf2onnx only logs those."""
    import onnx

    unsupported = sorted(
        {
            node.op_type
            for node in _all_nodes(proto.graph)
            if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
        }
    )
    if unsupported:
        raise ConversionError(
            f"{h5_path}: tf2onnx cannot convert TensorFlow op(s) {', '.join(unsupported)} to ONNX opset {opset}; "
            "the layers using them have no ONNX equivalent"
        )


def _check_graph(proto: Any, expected_inputs: list[str], *, tf2onnx_messages: list[str], h5_path: Path) -> None:
    """The graph's inputs are the Keras inputs, in order, and `onnx.checker` accepts it."""
    import onnx

    actual_inputs = [value.name for value in proto.graph.input]
    if actual_inputs != expected_inputs:
        raise ConversionError(
            f"{h5_path}: the ONNX graph has inputs {actual_inputs}, expected the Keras inputs {expected_inputs}"
        )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        logged = f" (tf2onnx: {_first_line(tf2onnx_messages[0])})" if tf2onnx_messages else ""
        raise ConversionError(f"{h5_path}: the converted ONNX graph is invalid: {_first_line(exc)}{logged}") from exc


def _frozen_graph(serve: Any, signature: Sequence[Any]) -> tuple[Any, list[str], dict[str, str]]:
    """Trace `serve` and freeze every value it captures into a constant of the graph.

    `tf2onnx.convert.from_function` freezes variables only: a tensor a layer holds outside any
    variable (an un-adapted `Normalization`'s mean and variance, EfficientNet's) stays a captured
    input and became a required ONNX graph input (measured, tf2onnx 1.17). TensorFlow's
    `convert_variables_to_constants_v2` turns captured tensors and variables alike into constants.

    Returns:
        The frozen graph, its input tensor names (model order), and a map from each input and
        output tensor name to the name the ONNX graph gives it (inputs first, then outputs).
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = serve.get_concrete_function(*signature)
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    input_names = [tensor.name for tensor in frozen.inputs]
    if len(input_names) != len(signature):
        raise ConversionError(
            f"freezing left {len(input_names)} graph inputs ({', '.join(input_names)}), expected the "
            f"{len(signature)} model input(s)"
        )
    renames = {tensor_name: spec.name for tensor_name, spec in zip(input_names, signature, strict=True)}
    frozen_outputs = {tensor.name for tensor in frozen.outputs}
    for key, tensor in concrete.structured_outputs.items():
        if tensor.name not in frozen_outputs:
            raise ConversionError(f"output '{key}' ({tensor.name}) is missing from the frozen graph")
        renames[tensor.name] = key
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    _allow_inlining(graph_def)
    return graph_def, input_names, renames


def _allow_inlining(graph_def: Any) -> None:
    """Let TensorFlow's optimizer inline the functions Keras compiles with XLA.

    Keras 3's TensorFlow backend runs grouped convolutions (ConvNeXt's and RegNet's depthwise
    convolutions are `Conv2D(groups=channels)`) in a `tf.function(jit_compile=True)`, because
    TensorFlow's CPU kernel cannot (keras/src/backend/tensorflow/nn.py, `_conv_xla`). Such a call is
    marked `_XlaMustCompile` and `_noinline`, so it stayed a `StatefulPartitionedCall`, which ONNX
    has no op for. Without the marks, tf2onnx's graph optimizer inlines it into a plain Conv2D,
    which tf2onnx converts to a grouped ONNX Conv.
    """
    marks = ("_XlaMustCompile", "_noinline")
    for function in graph_def.library.function:
        for mark in marks:
            if mark in function.attr:
                del function.attr[mark]
    for node in graph_def.node:
        for mark in marks:
            if mark in node.attr:
                del node.attr[mark]


# First opset with the DFT operator, which `_convert_rfft` maps TensorFlow's RFFT to.
_DFT_OPSET = 17


def _op_handlers(opset: int) -> dict[str, tuple[Any, list]]:
    """tf2onnx handlers for TensorFlow ops it lacks or converts too narrowly (tf2onnx's `custom_op_handlers`)."""
    handlers: dict[str, tuple[Any, list]] = {"Erfc": (_convert_erfc, [])}
    if opset >= _DFT_OPSET:
        # Keras 3's MelSpectrogram takes the real and imaginary parts of tf.signal.stft; tf2onnx's
        # own RFFT only supports a ComplexAbs after it. A complex tensor becomes a float tensor with
        # a trailing axis of 2 (real, imaginary), as ONNX's DFT writes it; the four ops agree on that.
        # (tf2onnx's old handler API: a list's first item is the ONNX op type, the rest go to the handler.)
        handlers.update(
            {
                "RFFT": (_convert_rfft, []),
                "Real": (_convert_complex_part, ["Gather", 0]),
                "Imag": (_convert_complex_part, ["Gather", 1]),
                "ComplexAbs": (_convert_complex_abs, []),
            }
        )
    return handlers


def _convert_rfft(ctx: Any, node: Any, name: str, args: Any) -> None:
    """TensorFlow's RFFT as ONNX's onesided DFT.

    RFFT(x: float[..., n], fft_length: int32[1]) as DFT(x[..., n, 1], onesided) -> float[..., fft_length // 2 + 1, 2].
    """
    from onnx import TensorProto
    from tf2onnx import utils

    shape = ctx.get_shape(node.input[0])
    if shape is None:
        raise ConversionError(f"RFFT node {node.name}: the rank of its input is unknown")
    minus_one = ctx.make_const(utils.make_name(f"{node.name}_axis"), np.array([-1], dtype=np.int64)).output[0]
    zero = ctx.make_const(utils.make_name(f"{node.name}_zero"), np.array([0], dtype=np.int64)).output[0]
    signal = ctx.make_node("Unsqueeze", [node.input[0], minus_one], op_name_scope=node.name).output[0]
    length = ctx.make_node("Squeeze", [node.input[1], zero], op_name_scope=node.name).output[0]
    fft_length = node.inputs[1].get_tensor_value() if node.inputs[1].is_const() else None
    node.type = "DFT"
    node.domain = ""
    ctx.replace_inputs(node, [signal, length])
    node.set_attr("axis", len(shape) - 1)
    node.set_attr("onesided", 1)
    bins = fft_length[0] // 2 + 1 if fft_length is not None else -1
    ctx.set_dtype(node.output[0], TensorProto.FLOAT)
    ctx.set_shape(node.output[0], [*shape[:-1], bins, 2])


def _convert_complex_part(ctx: Any, node: Any, name: str, args: Any) -> None:
    """Real / Imag of a complex tensor held as float[..., 2]: index 0 or 1 of its last axis."""
    from onnx import TensorProto
    from tf2onnx import utils

    index = ctx.make_const(utils.make_name(f"{node.name}_index"), np.array(args[0], dtype=np.int64)).output[0]
    shape = ctx.get_shape(node.input[0])
    node.type = "Gather"
    node.domain = ""
    ctx.replace_inputs(node, [node.input[0], index])
    node.set_attr("axis", -1)
    ctx.set_dtype(node.output[0], TensorProto.FLOAT)
    if shape is not None:
        ctx.set_shape(node.output[0], shape[:-1])


def _convert_complex_abs(ctx: Any, node: Any, name: str, args: Any) -> None:
    """|z| of a complex tensor held as float[..., 2]: the L2 norm over its last axis."""
    from onnx import TensorProto
    from tf2onnx import utils

    shape = ctx.get_shape(node.input[0])
    node.type = "ReduceL2"
    node.domain = ""
    node.set_attr("keepdims", 0)
    if ctx.opset >= 18:  # axes became an input
        axes = ctx.make_const(utils.make_name(f"{node.name}_axes"), np.array([-1], dtype=np.int64)).output[0]
        ctx.replace_inputs(node, [node.input[0], axes])
    else:
        node.set_attr("axes", [-1])
    ctx.set_dtype(node.output[0], TensorProto.FLOAT)
    if shape is not None:
        ctx.set_shape(node.output[0], shape[:-1])


def _convert_erfc(ctx: Any, node: Any, name: str, args: Any) -> None:
    """tf2onnx handler for TensorFlow's `Erfc`, which it lacks: `erfc(x) = 1 - erf(x)`.

    Keras' exact GELU (`gelu(approximate=False)`, ConvNeXt's activation) is `0.5 * x * erfc(-x / sqrt(2))`
    on the TensorFlow backend. `1 - erf(x)` loses relative precision where erfc(x) is tiny (x > 3),
    but there the GELU's value is 0.5 * x * (tiny), so its absolute error stays below float32's ulp of 1.
    """
    from tf2onnx import utils

    np_dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name).output[0]
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, np_dtype)).output[0]
    node.type = "Sub"
    node.domain = ""
    ctx.replace_inputs(node, [one, erf])


def _all_nodes(graph: Any) -> Iterator[Any]:
    """Every node of a graph, including those of subgraphs (Loop and If bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_nodes(subgraph)


def _order_outputs(proto: Any, output_names: Sequence[str], h5_path: Path) -> None:
    """Put the graph outputs in Keras order (tf2onnx sorts the keys of the returned dict)."""
    by_name = {value.name: value for value in proto.graph.output}
    if sorted(by_name) != sorted(output_names):
        raise ConversionError(
            f"{h5_path}: the ONNX graph has outputs {sorted(by_name)}, expected the Keras outputs {list(output_names)}"
        )
    ordered = [type(by_name[name])() for name in output_names]
    for copy, name in zip(ordered, output_names, strict=True):
        copy.CopyFrom(by_name[name])
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)


def _name_batch_dimension(proto: Any) -> None:
    """Call the open first dimension of every graph input and output `batch` (tf2onnx names it `unk__<n>`)."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        shape = value.type.tensor_type.shape
        if shape.dim and not shape.dim[0].HasField("dim_value"):
            shape.dim[0].dim_param = "batch"


def _open_session(proto: Any, h5_path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the session is ours, its warnings are noise to the user
    try:
        return onnxruntime.InferenceSession(
            proto.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ConversionError(f"{h5_path}: onnxruntime cannot load the converted graph: {_first_line(exc)}") from exc


def _check_parity(
    session: Any,
    inputs: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    *,
    atol: float,
    rtol: float,
    h5_path: Path,
) -> tuple[OutputParity, ...]:
    """Run onnxruntime at the full parity batch and at its first row; compare both with Keras."""
    feeds = {}
    for meta in session.get_inputs():
        if meta.name not in inputs:
            raise ConversionError(
                f"{h5_path}: the ONNX graph wants an input '{meta.name}' the Keras model does not have"
            )
        feeds[meta.name] = inputs[meta.name]
    output_names = list(reference)
    full = _run_session(session, output_names, feeds, h5_path)
    single = _run_session(session, output_names, {name: array[:1] for name, array in feeds.items()}, h5_path)

    parity = []
    failures = []
    for name, got_full, got_single in zip(output_names, full, single, strict=True):
        expected = reference[name]
        for got, want, rows in ((got_full, expected, "all"), (got_single, expected[:1], "1")):
            if got.shape != want.shape:
                raise ConversionError(
                    f"{h5_path}: ONNX output '{name}' has shape {got.shape} at batch {rows}, Keras gives {want.shape}"
                )
        both = compare_output(
            name,
            np.concatenate([expected, expected[:1]]),
            np.concatenate([got_full, got_single]),
            atol=atol,
            rtol=rtol,
        )
        output = dataclasses.replace(both, argmax_agreement=compare_output(name, expected, got_full).argmax_agreement)
        parity.append(output)
        if output.failing_elements:
            failures.append(
                f"'{name}' max abs diff {output.max_abs_diff:.3g} (max |keras| {output.max_abs_reference:.3g}), "
                f"{output.failing_elements} element(s) out of tolerance"
            )
    if failures:
        raise ConversionError(
            f"{h5_path}: ONNX output differs from Keras by more than atol={atol:g} + rtol={rtol:g} * |keras|: "
            f"{'; '.join(failures)}"
        )
    return tuple(parity)


def _run_session(
    session: Any, output_names: list[str], feeds: dict[str, np.ndarray], h5_path: Path
) -> list[np.ndarray]:
    rows = len(next(iter(feeds.values()))) if feeds else 0
    try:
        return session.run(output_names, feeds)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ConversionError(
            f"{h5_path}: onnxruntime cannot run the converted graph at batch size {rows} "
            f"(is its batch dimension fixed?): {_first_line(exc)}"
        ) from exc


def _max_abs(values: np.ndarray) -> float:
    as_float = np.abs(np.asarray(values, dtype=np.float64))
    return float(as_float[np.isfinite(as_float)].max(initial=0.0))


def _write_atomically(proto: Any, onnx_path: Path) -> None:
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{onnx_path.name}.", suffix=".tmp", dir=onnx_path.parent)
    temp_path = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(proto.SerializeToString())
        os.replace(temp_path, onnx_path)
    except OSError as exc:
        temp_path.unlink(missing_ok=True)
        raise ConversionError(f"{onnx_path}: cannot write the ONNX file: {exc}") from exc
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Small helpers


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _captured_logs(logger_name: str) -> Iterator[list[str]]:
    """Collect a logger's warnings and errors instead of printing them (tf2onnx logs unsupported ops and goes on)."""
    logger = logging.getLogger(logger_name)
    handler = _ListHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _first_line(error: BaseException | str) -> str:
    """First non-empty line of an error message, shortened: Keras and ORT messages span many lines."""
    text = str(error)
    line = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return line if len(line) <= _ERROR_TEXT_LIMIT else line[: _ERROR_TEXT_LIMIT - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
