"""Convert a Keras `.h5` model to ONNX, then prove that onnxruntime agrees with Keras.

This is the only module of the project that imports TensorFlow, and it does so inside functions:
`import converters.keras_to_onnx` stays cheap and works where TensorFlow is not installed.

Route (measured with TF 2.21, Keras 3.15, tf2onnx 1.17):
`keras.models.load_model(h5, compile=False)` → a `tf.function` with an explicit input signature whose
batch dimension is `None`, returning a dict `{output_name: tensor}` → `tf2onnx.convert.from_function`.
tf2onnx's own `from_keras` fails on Keras 3 Sequential models (`KeyError: 'keras_tensor_N'`), and
the dict keeps the output names, which would otherwise come out as `Identity:0`, `Identity_1:0`.

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
   dimension is dynamic. Any output further than `atol` from Keras fails the conversion.
The `.onnx` is then written to a temp file in the target folder and moved over the target with
`os.replace`, so a failed conversion never leaves a file behind (an older file there is kept as is).

CLI:
    python -m converters.keras_to_onnx model.h5 -o model.onnx [--opset 17] [--atol 1e-4] [--debug]
prints the report and exits 0; on a `PredictError` it prints one line `error: <message>` to stderr
and exits 2 (with `--debug`, the traceback comes first).
"""

from __future__ import annotations

import argparse
import contextlib
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


@dataclass(frozen=True, kw_only=True)
class OutputParity:
    """How far one ONNX output is from Keras on the parity batch (at both batch sizes).

    `max_rel_diff` is relative to the output's scale: `max_abs_diff / max(max_abs_reference, 1e-12)`.
    An element-wise ratio is not used on purpose: softmax and sigmoid outputs hold values near 1e-8
    whose float32 rounding noise would read as large relative errors.
    """

    name: str
    max_abs_diff: float
    max_rel_diff: float
    max_abs_reference: float


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
        atol: the tolerance every `parity[i].max_abs_diff` was checked against.
        seconds: wall time of loading, converting, checking and writing.
    """

    onnx_path: Path
    keras_version: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    parity: tuple[OutputParity, ...]
    atol: float
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
    atol: float = 1e-4,
    parity_batch_size: int = 4,
    seed: int = 0,
) -> ConversionReport:
    """Convert a full Keras model saved as `.h5` to ONNX with a dynamic batch dimension.

    Args:
        h5_path: a model saved with `model.save("model.h5")` by Keras 3, or by Keras 2 / tf_keras.
        onnx_path: where to write the ONNX graph; its folder must exist. Written only if every check passes.
        opset: ONNX opset to target.
        atol: largest allowed absolute difference between Keras and onnxruntime, per element.
        parity_batch_size: rows of the random parity batch (at least 2: the graph is also run at 1 row).
        seed: seed of the random parity batch.

    Returns:
        The report: names, per-output parity, time taken.

    Raises:
        ConversionError: the file is missing, not HDF5, truncated or holds weights only; TensorFlow
            is not installed; Keras cannot load the model; tf2onnx cannot convert one of its ops;
            the ONNX graph is invalid; or an output differs from Keras by more than `atol`.
    """
    started = time.perf_counter()
    h5_path = Path(h5_path)
    onnx_path = Path(onnx_path)
    _check_arguments(h5_path, onnx_path, opset=opset, atol=atol, parity_batch_size=parity_batch_size)
    header = _read_h5_header(h5_path)
    tf, tf2onnx = _import_tensorflow()
    _check_opset(opset, tf2onnx)

    model = _load_model(h5_path, header)
    specs = _input_specs(tf, model, h5_path)
    inputs = _make_parity_inputs(model, specs, batch_size=parity_batch_size, seed=seed)
    with _quiet_python_warnings():
        reference = _run_keras(tf, model, [inputs[spec.name] for spec in specs])
    output_names = tuple(reference)

    proto = _export(tf, tf2onnx, model, specs, output_names, opset=opset, h5_path=h5_path)
    session = _open_session(proto, h5_path)
    parity = _check_parity(session, inputs, reference, atol=atol, h5_path=h5_path)
    _write_atomically(proto, onnx_path)
    return ConversionReport(
        onnx_path=onnx_path,
        keras_version=header.keras_version,
        input_names=tuple(spec.name for spec in specs),
        output_names=output_names,
        parity=parity,
        atol=atol,
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
        f"onnxruntime vs Keras, tolerance atol={report.atol:g}:",
    ]
    width = max((len(output.name) for output in report.parity), default=0)
    for output in report.parity:
        lines.append(
            f"  {output.name:<{width}}  max abs diff {output.max_abs_diff:.3g}"
            f"  max rel diff {output.max_rel_diff:.3g}  (max |keras| {output.max_abs_reference:.3g})"
        )
    return "\n".join(lines)


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
    parser.add_argument(
        "--atol", type=float, default=1e-4, help="largest allowed |keras - onnxruntime| (default: 1e-4)"
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    args = parser.parse_args(argv)
    output = args.output if args.output is not None else args.h5_path.with_suffix(".onnx")
    try:
        report = convert_keras_to_onnx(args.h5_path, output, opset=args.opset, atol=args.atol)
    except PredictError as exc:
        if args.debug:
            traceback.print_exc()
        # One line: the inference core relays this line when it converts in a subprocess.
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


# ---------------------------------------------------------------------------------------------
# Checks that need neither TensorFlow nor the model


def _check_arguments(h5_path: Path, onnx_path: Path, *, opset: int, atol: float, parity_batch_size: int) -> None:
    problems = []
    if not (np.isfinite(atol) and atol >= 0):
        problems.append(f"atol must be a finite number >= 0 (got {atol})")
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


def _load_model(h5_path: Path, header: _H5Header) -> Any:
    """Load with Keras 3; for a Keras 2 file fall back to tf_keras when Keras 3 cannot load it."""
    import keras

    keras_error: Exception
    with tempfile.TemporaryDirectory(prefix="keras_to_onnx_") as scratch:
        source = h5_path
        if header.is_keras_2:
            config = _drop_time_major(header.model_config)
            if config != header.model_config:
                source = _copy_with_config(h5_path, config, Path(scratch))
        try:
            with _quiet_python_warnings():
                return keras.models.load_model(source, compile=False, custom_objects=_recorded_op_classes())
        except Exception as exc:  # Keras raises ValueError, TypeError, KeyError... for a config it cannot read
            keras_error = exc

    what = f"Keras {keras.__version__} cannot load this model (saved by Keras {header.keras_version})"
    if "safe_mode" in str(keras_error):
        raise ConversionError(
            f"{h5_path}: {what}: it has a Lambda layer holding Python bytecode, which Keras refuses to "
            "load from a file because it can run arbitrary code; replace the Lambda by a built-in or "
            "registered custom layer and save the model again"
        ) from keras_error
    if not header.is_keras_2:
        raise ConversionError(f"{h5_path}: {what}: {_first_line(keras_error)}") from keras_error
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
            return tf_keras.models.load_model(h5_path, compile=False)
    except Exception as exc:  # tf_keras raises as many exception types as Keras 3
        raise ConversionError(
            f"{h5_path}: {what} ({_first_line(keras_error)}), "
            f"nor can tf_keras {tf_keras.__version__} ({_first_line(exc)})"
        ) from exc


def _recorded_op_classes() -> dict[str, Any]:
    """Keras op classes that Keras 3 writes into a functional model's `.h5` config as layers.

    A functional model with `Embedding(mask_zero=True)` records its mask as a `NotEqual` op node;
    Keras 3.15 saves it but its own `load_model` then fails with "Unknown layer: 'NotEqual'"
    (measured). Given the op class, the node is rebuilt and the mask reaches the RNN as in training.
    """
    from keras.src.ops import numpy as keras_numpy  # the op classes have no public import path

    return {name: getattr(keras_numpy, name) for name in ("NotEqual",) if hasattr(keras_numpy, name)}


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
    import onnx

    signature = tuple(tf.TensorSpec(spec.shape, spec.dtype, name=spec.name) for spec in specs)

    @tf.function(input_signature=signature)
    def serve(*tensors: Any) -> dict[str, Any]:
        return _call_model(model, tensors)

    with _captured_logs("tf2onnx") as messages, _quiet_python_warnings():
        try:
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
        except Exception as exc:  # tf2onnx raises anything from KeyError to RuntimeError
            raise ConversionError(f"{h5_path}: tf2onnx failed to convert the model: {_first_line(exc)}") from exc

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
    _order_outputs(proto, output_names, h5_path)
    _name_batch_dimension(proto)
    # tf2onnx writes the traced function's name, "__inference_serve_<counter>", which changes per call.
    proto.graph.doc_string = f"Keras model {getattr(model, 'name', '')}, converted by converters.keras_to_onnx"
    expected_inputs = [spec.name for spec in specs]
    actual_inputs = [value.name for value in proto.graph.input]
    if actual_inputs != expected_inputs:
        raise ConversionError(
            f"{h5_path}: the ONNX graph has inputs {actual_inputs}, expected the Keras inputs {expected_inputs}"
        )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        logged = f" (tf2onnx: {_first_line(messages[0])})" if messages else ""
        raise ConversionError(f"{h5_path}: the converted ONNX graph is invalid: {_first_line(exc)}{logged}") from exc
    return proto


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
        max_abs_diff = max(_max_abs_diff(expected, got_full), _max_abs_diff(expected[:1], got_single))
        max_abs_reference = _max_abs(expected)
        output = OutputParity(
            name=name,
            max_abs_diff=max_abs_diff,
            max_rel_diff=max_abs_diff / max(max_abs_reference, _REL_DIFF_FLOOR),
            max_abs_reference=max_abs_reference,
        )
        parity.append(output)
        if not max_abs_diff <= atol:
            failures.append(f"'{name}' max abs diff {max_abs_diff:.3g} (max |keras| {max_abs_reference:.3g})")
    if failures:
        raise ConversionError(
            f"{h5_path}: ONNX output differs from Keras by more than atol={atol:g}: {'; '.join(failures)}"
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


def _max_abs_diff(expected: np.ndarray, got: np.ndarray) -> float:
    """max |expected - got| in float64; equal infinities and NaN against NaN count as 0, one NaN as inf."""
    want = np.asarray(expected, dtype=np.float64)
    have = np.asarray(got, dtype=np.float64)
    same = (want == have) | (np.isnan(want) & np.isnan(have))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(want - have))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max(initial=0.0))


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
