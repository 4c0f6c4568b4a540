"""Which ONNX file runs: the configured `.onnx`, or a Keras `.h5` converted once and cached by content hash.

The conversion runs `python -m converters.keras_to_onnx` in a child process: TensorFlow's memory and
thread pools never enter the inference process, and the core never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from predict.errors import ConversionError

KERAS_SUFFIXES = (".h5", ".hdf5")


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    """The ONNX file to run and how it was obtained (`onnx`, `converted` or `cached`)."""

    path: Path
    origin: str
    conversion_log: str = ""


def resolve_onnx_model(model: Path, *, cache_dir: Path) -> ResolvedModel:
    """Return the ONNX file for `model`, converting a Keras `.h5` into `cache_dir` unless already there.

    The cache key is the SHA-256 of the `.h5` bytes, so an edited model converts again and an
    unchanged one never does.

    Raises:
        ConversionError: TensorFlow is missing, or the conversion or its parity check failed.
    """
    if model.suffix.lower() not in KERAS_SUFFIXES:
        return ResolvedModel(path=model, origin="onnx")
    cached = cache_dir / f"{model.stem}-{file_sha256(model)[:16]}.onnx"
    if cached.is_file():
        return ResolvedModel(path=cached, origin="cached")
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:
        raise ConversionError(
            f"model {model.name} is a Keras file and converting it needs TensorFlow and tf2onnx: "
            "pip install 'predict[convert]' (or convert it elsewhere with `predict convert` and set model: to the .onnx)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "converters.keras_to_onnx", str(model), "-o", str(cached)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        reason = errors[-1] if errors else (lines[-1] if lines else f"exit code {completed.returncode}")
        raise ConversionError(f"model {model.name}: conversion to ONNX failed: {reason}")
    return ResolvedModel(path=cached, origin="converted", conversion_log=completed.stdout.strip())


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
