"""Parity on the user's own data: the first batch of real rows also goes through Keras.

A Keras `.h5` is converted (to ONNX, or to a `.pt2` for the torch backend) with a parity check on a
seeded random batch. Random noise is not the user's data, so when the configured model is an `.h5`
and TensorFlow is installed, the first batch a run scores is written to a temp `.npz` with the
converted model's raw outputs, and `python -m converters.keras_fidelity` runs Keras on it in a
child process, alongside the run (TensorFlow never enters this process). Its result goes to
`{split}_report.json` (`fidelity`) and to the summary; over the tolerance it is a loud note.

The result is kept beside the converted model, keyed by the converted file (whose name holds the
`.h5`'s hash) and a hash of the batch's inputs: a rerun on the same model and rows reuses it and
starts no TensorFlow (importing it and loading the model take several seconds on 2 cores, more than
scoring a small split).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from predict.config import TaskConfig
from predict.enums import Engine, ProblemType
from predict.model_file import KERAS_SUFFIXES, load_arguments
from predict.writers._atomic import atomic_path

# Seconds the end of a run waits for Keras on the first batch: importing TensorFlow and loading a
# large model take tens of seconds on 2 cores (measured: ResNet50 about 15 s).
_TIMEOUT_SECONDS = 600


class FidelityCheck:
    """Sends the first batch it sees through Keras in a child process; `result()` collects the comparison.

    Does nothing when the model is not a Keras `.h5`, when TensorFlow is not installed, for
    sequence to sequence models (an encoder and a decoder run many times per batch), or on the Ray
    engine (the inputs stay on the Ray workers; only outputs come back to this process).
    """

    def __init__(self, task: TaskConfig, *, converted: Path) -> None:
        self.model = task.model
        self.converted = converted  # the ONNX or .pt2 file the run scores with, in the conversion cache
        self.options = task.model_options
        self.enabled = (
            task.model.suffix.lower() in KERAS_SUFFIXES
            and task.problem_type is not ProblemType.TEXT_SEQUENCE_TO_SEQUENCE
            and task.runtime.engine is Engine.LOCAL
            and importlib.util.find_spec("tensorflow") is not None
        )
        self._process: subprocess.Popen | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._result: dict[str, Any] | None = None
        self._recorded: Path | None = None

    def observe(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Start Keras on the first batch's inputs (later batches are ignored).

        Args:
            inputs: the model inputs by name, as the runner was fed them.
            outputs: the runner's raw outputs by name on those inputs.
        """
        if not self.enabled or self._process is not None or self._result is not None:
            return
        self._recorded = self._record_path(inputs)
        if self._recorded.is_file():
            self._result = json.loads(self._recorded.read_text(encoding="utf-8"))
            return
        self._folder = tempfile.TemporaryDirectory(prefix="predict_fidelity_")
        arrays_path = Path(self._folder.name) / "batch.npz"
        arrays = {f"input:{name}": np.asarray(value) for name, value in inputs.items()}
        arrays.update({f"output:{name}": np.asarray(value) for name, value in outputs.items()})
        np.savez(arrays_path, **arrays)
        command = [
            sys.executable, "-m", "converters.keras_fidelity", str(self.model), "--arrays", str(arrays_path),
            *load_arguments(self.options),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> dict[str, Any] | None:
        """The comparison (see `converters.keras_fidelity.check_batch`), `{"error": ...}` if Keras failed,
        or None when the check did not run."""
        if self._process is None:
            return self._result
        process, self._process = self._process, None
        try:
            stdout, stderr = process.communicate(timeout=_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            self._result = {"error": f"Keras took more than {_TIMEOUT_SECONDS} s on the first batch"}
        else:
            lines = [line for line in stderr.splitlines() if line.strip()]
            errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
            if process.returncode == 0 and stdout.strip():
                self._result = json.loads(stdout.strip().splitlines()[-1])
                with atomic_path(self._recorded) as temp:
                    temp.write_text(json.dumps(self._result) + "\n", encoding="utf-8")
            else:
                reason = errors[-1] if errors else (lines[-1] if lines else f"exit code {process.returncode}")
                self._result = {"error": reason}
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
        return self._result

    def _record_path(self, inputs: dict[str, np.ndarray]) -> Path:
        """Where the check of this converted model on these inputs is kept."""
        digest = hashlib.sha256()
        for name in sorted(inputs):
            array = np.ascontiguousarray(inputs[name])
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.data)
        return self.converted.with_name(f"{self.converted.stem}.fidelity-{digest.hexdigest()[:16]}.json")

    def notes(self) -> list[str]:
        """The summary's line on the check; loud when over the tolerance."""
        result = self.result()
        if result is None:
            return []
        if "error" in result:
            return [f"Keras could not check the first batch: {result['error']}"]
        line = describe(result)
        if result["within_tolerance"]:
            return [line]
        warning = (
            f"WARNING: the converted model differs from Keras on your data beyond the tolerance: {line}. "
            "Parity on the converter's random batch is not parity on your data: check the predictions "
            "(predict convert prints the random-batch figures)"
        )
        return [warning]


def describe(result: dict[str, Any]) -> str:
    """One line: rows, worst max abs and relative diffs, lowest argmax agreement, tolerance."""
    outputs = result["outputs"].values()
    abs_diff = max((output["max_abs_diff"] for output in outputs), default=0.0)
    rel_diff = max((output["max_rel_diff"] for output in outputs), default=0.0)
    agreements = [output["argmax_agreement"] for output in outputs if output["argmax_agreement"] is not None]
    agreement = f", argmax agreement {min(agreements):.1%}" if agreements else ""
    verdict = "within" if result["within_tolerance"] else "OVER"
    return (
        f"Keras vs the converted model on the first {result['rows']} real rows: max abs diff {abs_diff:.3g}, "
        f"max rel diff {rel_diff:.3g}{agreement} ({verdict} tolerance {result['atol']:g} + {result['rtol']:g} * "
        "|keras|)"
    )
