"""Which ONNX file runs: the configured `.onnx`, or a Keras `.h5` converted once and cached by content hash.

The conversion runs `python -m converters.keras_to_onnx` in a child process: TensorFlow's memory and
thread pools never enter the inference process, and the core never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from predict.errors import ConversionError

if TYPE_CHECKING:
    from predict.config import ModelOptionsConfig

KERAS_SUFFIXES = (".h5", ".hdf5")


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    """The ONNX file to run and how it was obtained (`onnx`, `converted` or `cached`)."""

    path: Path
    origin: str
    conversion_log: str = ""
    warnings: tuple[str, ...] = field(default=())  # `warning:` lines the converter printed (unsafe deserialization)


def resolve_onnx_model(model: Path, *, cache_dir: Path, options: ModelOptionsConfig | None = None) -> ResolvedModel:
    """Return the ONNX file for `model`, converting a Keras `.h5` into `cache_dir` unless already there.

    The cache key is the SHA-256 of the `.h5` bytes (and of `options`, the custom objects file's
    bytes included), so an edited model converts again and an unchanged one never does.

    Raises:
        ConversionError: TensorFlow is missing, or the conversion or its parity check failed.
    """
    if model.suffix.lower() not in KERAS_SUFFIXES:
        return ResolvedModel(path=model, origin="onnx")
    cached = cache_dir / f"{model.stem}-{cache_key(model, options)}.onnx"
    if cached.is_file():
        return ResolvedModel(path=cached, origin="cached")
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:
        raise ConversionError(
            f"model {model.name} is a Keras file and converting it needs TensorFlow and tf2onnx: "
            "pip install 'predict[convert]' (or convert it elsewhere with `predict convert` and set model: to the "
            ".onnx)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "converters.keras_to_onnx",
        str(model),
        "-o",
        str(cached),
        *load_arguments(options),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        reason = errors[-1] if errors else (lines[-1] if lines else f"exit code {completed.returncode}")
        raise ConversionError(f"model {model.name}: conversion to ONNX failed: {reason}")
    return ResolvedModel(
        path=cached,
        origin="converted",
        conversion_log=completed.stdout.strip(),
        warnings=relay_warnings(completed.stderr),
    )


def load_arguments(options: ModelOptionsConfig | None) -> list[str]:
    """The converters' `--custom-objects FILE` / `--allow-unsafe-deserialization` for `model_options`."""
    if options is None:
        return []
    arguments = ["--custom-objects", str(options.custom_objects)] if options.custom_objects is not None else []
    return arguments + (["--allow-unsafe-deserialization"] if options.allow_unsafe_deserialization else [])


def cache_key(model: Path, options: ModelOptionsConfig | None) -> str:
    """16 hex digits: the model's SHA-256, mixed with the load options (and the custom objects file's bytes)
    when set."""
    key = file_sha256(model)[:16]
    arguments = load_arguments(options)
    if not arguments:
        return key  # the key of conversions cached before model_options existed
    digest = hashlib.sha256(key.encode())
    digest.update("\0".join(arguments).encode())
    if options is not None and options.custom_objects is not None and options.custom_objects.is_file():
        digest.update(file_sha256(options.custom_objects).encode())
    return digest.hexdigest()[:16]


def relay_warnings(stderr: str) -> tuple[str, ...]:
    """A converter's `warning: ...` lines, printed here too (to stderr) so the user sees them, and returned."""
    found = tuple(line.removeprefix("warning: ") for line in stderr.splitlines() if line.startswith("warning: "))
    for line in found:
        print(f"warning: {line}", file=sys.stderr)
    return found


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
