"""The one place that knows every stage: dataframe, model, loader, runner, head, writers, report.

Stages and their timers: `load` (waiting for the next decoded batch), `inference` (the runner),
`postprocess` (the head) and `write` (the files). Nothing is written until every batch succeeded,
and every file is written atomically, the zip last.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from predict.config import TaskConfig
from predict.data.audio import build_audio_loader
from predict.data.collate import average_chunks, from_shared
from predict.data.dataframe import read_dataframe
from predict.data.image import build_image_loader
from predict.data.text import build_text_loader
from predict.errors import InputError
from predict.heads import HEADS
from predict.heads.base import Head
from predict.model_file import ResolvedModel, resolve_onnx_model
from predict.runners.ort import OrtRunner
from predict.writers._atomic import atomic_path
from predict.writers.archive import write_archive
from predict.writers.csv import write_predictions_csv
from predict.writers.pickle import write_raw_predictions

_LOADERS = {"text": build_text_loader, "image": build_image_loader, "audio": build_audio_loader}


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """What a run did, for the terminal summary and `{split}_report.json`."""

    problem_type: str
    split: str
    rows: int
    seconds: float
    stage_seconds: dict[str, float]
    provider: str
    model: ResolvedModel
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def scoring_seconds(self) -> float:
        """Time from the first batch to the last file: the run less model conversion and loading."""
        return sum(self.stage_seconds.values())

    @property
    def rows_per_second(self) -> float:
        """Scoring throughput: rows per `scoring_seconds`."""
        return self.rows / self.scoring_seconds if self.scoring_seconds > 0 else math.inf


def run_task(task: TaskConfig, *, progress: bool = True) -> RunSummary:
    """Score the task's dataframe and write its prediction files.

    Args:
        task: a validated config from `load_config`.
        progress: show a progress bar (on a terminal).

    Returns:
        The run's summary; the files are in `task.output_dir`.

    Raises:
        PredictError: bad input, named by file, row or key; no prediction file is written then.
    """
    started = time.perf_counter()
    split = task.data.split.value
    output_dir = task.output_dir
    dataframe = read_dataframe(task.data.dataframe)
    model = resolve_onnx_model(task.model, cache_dir=output_dir / "onnx_cache")
    runner = OrtRunner(model.path, device=task.runtime.device, threads=task.runtime.threads)
    head = HEADS[task.problem_type].build(task, outputs=runner.outputs, dataframe=dataframe)
    loader = _LOADERS[task.problem_type.modality](task, dataframe, runner.inputs)

    stages = dict.fromkeys(("load", "inference", "postprocess", "write"), 0.0)
    chunks: list[dict[str, np.ndarray]] = []
    with tqdm(total=len(dataframe), unit="row", desc=split, disable=None if progress else True) as bar:
        batches = iter(loader)
        while True:
            tick = time.perf_counter()
            batch = next(batches, None)
            stages["load"] += time.perf_counter() - tick
            if batch is None:
                break
            batch = from_shared(batch)
            if batch.errors:
                row, message = batch.errors[0]
                more = f" (and {len(batch.errors) - 1} more in rows {row}..{batch.row_ids[-1]})" if len(batch.errors) > 1 else ""
                raise InputError(f"{task.data.dataframe.name}: {message}{more}")
            tick = time.perf_counter()
            # A row fed as several chunks (long audio) gets the mean of its chunks' outputs.
            outputs = average_chunks(runner.run(batch.inputs), batch)
            stages["inference"] += time.perf_counter() - tick
            tick = time.perf_counter()
            chunks.append(head.postprocess(outputs, batch))
            stages["postprocess"] += time.perf_counter() - tick
            bar.update(len(batch.row_ids))

    predictions = head.finalize({key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]})
    metrics = head.metrics(predictions)
    notes = [*model_notes(model), *runner.notes, *head.notes]
    if not metrics and not set(task.data.label_columns) <= set(dataframe.columns):
        notes.append("no metrics: the dataframe has no label columns")

    tick = time.perf_counter()
    files = _write_files(output_dir, split, dataframe, head, predictions, metrics)
    stages["write"] = time.perf_counter() - tick
    summary = RunSummary(
        problem_type=task.problem_type.value,
        split=split,
        rows=len(dataframe),
        seconds=time.perf_counter() - started,
        stage_seconds=stages,
        provider=runner.provider,
        model=model,
        metrics=metrics,
        notes=notes,
        files=files,
    )
    report_path = output_dir / f"{split}_report.json"
    _write_json(report_path, _report(summary, task))
    files["report"] = report_path
    return summary


def model_notes(model: ResolvedModel) -> list[str]:
    """A line on where the ONNX file came from, when it is not the configured file itself."""
    if model.origin == "converted":
        return [f"converted to {model.path}"]
    if model.origin == "cached":
        return [f"using the cached conversion {model.path}"]
    return []


def _write_files(
    output_dir: Path,
    split: str,
    dataframe: pd.DataFrame,
    head: Head,
    predictions: dict[str, np.ndarray],
    metrics: dict[str, float],
) -> dict[str, Path]:
    csv_path = output_dir / f"{split}_predictions.csv"
    pkl_path = output_dir / f"{split}_raw_predictions.pkl"
    metrics_path = output_dir / f"{split}_metrics.json"
    write_predictions_csv(csv_path, dataframe, head.prediction_columns(predictions))
    write_raw_predictions(pkl_path, head.raw_predictions(predictions, dataframe))
    files = {"csv": csv_path, "pkl": pkl_path}
    if metrics:
        _write_json(metrics_path, metrics)
        files["metrics"] = metrics_path
    else:
        # A metrics file from an earlier run would describe other predictions: it must not stay.
        metrics_path.unlink(missing_ok=True)
    zip_path = output_dir / f"{split}_predictions.zip"
    write_archive(zip_path, [csv_path, pkl_path])
    files["zip"] = zip_path
    return files


def _report(summary: RunSummary, task: TaskConfig) -> dict[str, Any]:
    return {
        "config": str(task.source),
        "problem_type": summary.problem_type,
        "split": summary.split,
        # What `predict show` / `predict report` need to pair predictions with labels and inputs.
        "input_column": task.input_column,
        "label_columns": list(task.data.label_columns),
        "data_folder": str(task.data.data_folder or task.data.dataframe.parent),
        "rows": summary.rows,
        "seconds": round(summary.seconds, 4),
        "scoring_seconds": round(summary.scoring_seconds, 4),
        "rows_per_second": round(summary.rows_per_second, 2),
        "stage_seconds": {name: round(value, 4) for name, value in summary.stage_seconds.items()},
        "provider": summary.provider,
        "model": str(task.model),
        "onnx_model": str(summary.model.path),
        "metrics": summary.metrics,
        "notes": summary.notes,
        "files": {name: str(path) for name, path in summary.files.items()},
        "task": _plain(task),  # the config as run, `--set` overrides included
    }


def _plain(value: Any) -> Any:
    """A config dataclass as JSON-ready dicts, lists and strings."""
    if dataclasses.is_dataclass(value):
        return {item.name: _plain(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
