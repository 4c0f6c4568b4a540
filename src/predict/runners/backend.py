"""Which runner runs a task's model, from `runtime.backend`: onnxruntime (the default) or torch.

Both steps are separate so that the Ray engine can resolve (convert, cache) once on the driver and
load the resolved file in every model actor.
"""

from __future__ import annotations

from pathlib import Path

from predict.config import TaskConfig
from predict.enums import Backend, ProblemType
from predict.model_file import ResolvedModel, resolve_onnx_model
from predict.runners.base import Runner


def resolve_model(task: TaskConfig, *, output_dir: Path) -> ResolvedModel:
    """The file the backend loads: the model itself, or its conversion cached under `output_dir`.

    Raises:
        ConversionError: a Keras `.h5` could not be converted for the backend.
    """
    if task.runtime.backend is Backend.TORCH:
        from predict.runners.torch import resolve_torch_model

        return resolve_torch_model(task.model, cache_dir=output_dir / "torch_cache", options=task.model_options)
    return resolve_onnx_model(task.model, cache_dir=output_dir / "onnx_cache", options=task.model_options)


def load_runner(task: TaskConfig, model_path: Path) -> Runner:
    """Open `model_path` (from `resolve_model`) with the task's backend, device and threads.

    Raises:
        ConfigError: the file cannot be loaded, or the device cannot be had.
    """
    runtime = task.runtime
    if runtime.backend is Backend.TORCH:
        from predict.runners.torch import TorchRunner

        return TorchRunner(
            model_path,
            device=runtime.device,
            input_spec=runtime.input_spec,
            precision=runtime.precision,
            threads=runtime.threads,
        )
    from predict.runners.ort import OrtRunner

    return OrtRunner(
        model_path,
        device=runtime.device,
        threads=runtime.threads,
        precision=runtime.precision,
        io_binding=runtime.io_binding,
        # onnxruntime's memory pattern plans one block per input shape and keeps it. Span prediction's batches
        # are windows, a different count in nearly every batch: its plans and the arena they came from grew with
        # the rows a run read (100,000 rows: 120 MB more peak RSS than without; issue 18). Elsewhere shapes repeat
        # and the pattern pays: without it a small Keras LSTM's batches took 30 % longer.
        memory_pattern=task.problem_type is not ProblemType.TEXT_SPAN_PREDICTION,
    )
