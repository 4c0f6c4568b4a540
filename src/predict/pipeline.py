"""The batch job: a task's rows through its plan, then its prediction files.

    read rows -> plan (model, head) -> engine.stream: decode, model -> head.postprocess -> RunWriter
    (checkpoints) -> head.finalize -> metrics -> RunWriter (files, report.json)

Stages and their timers: `load` (waiting for the next decoded batch), `inference` (waiting for the
model), `postprocess` (the head) and `write` (checkpoints and files); see predict.engines for the
first two, predict.writers.run for the last.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import closing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from predict.config import TaskConfig
from predict.data.collate import average_chunks
from predict.engines import engine_for
from predict.engines.base import BatchEngine, Scored
from predict.fidelity import FidelityCheck
from predict.heads.base import Head
from predict.model_file import ResolvedModel
from predict.plan import Plan, build_plan, read_rows
from predict.report import metrics as metrics_library
from predict.runners.backend import resolve_model
from predict.summary import RunSummary
from predict.writers.checkpoint import Chunk, KeptRows, RowArrays
from predict.writers.run import RunWriter, check_output_dir

__all__ = ["RunSummary", "run_task"]


def run_task(task: TaskConfig, *, progress: bool = True, resume: bool = False, overwrite: bool = False) -> RunSummary:
    """Score the task's dataframe and write its prediction files.

    Args:
        task: a validated config from `load_config`.
        progress: show a progress bar (on a terminal).
        resume: continue a killed run from its last complete checkpoint chunk.
        overwrite: replace this split's prediction files if the output folder already has them.

    Returns:
        The run's summary; the files are in `task.output_dir`.

    Raises:
        PredictError: bad input, named by file, row or key; no prediction file is written then.
    """
    started = time.perf_counter()
    check_output_dir(task.output_dir, task.data.split.value, resume=resume, overwrite=overwrite)
    task, dataframe = read_rows(task)
    labelled = task.data.label_columns and set(task.data.label_columns) <= set(dataframe.columns)
    helper_started = False
    if labelled and task.problem_type.scikit_learn_metrics:
        helper_started = metrics_library.start_import()  # metrics will be computed: their library loads meanwhile
    else:
        metrics_library.stop_helper()  # started by the CLI for labels this split does not have
    model = resolve_model(task, output_dir=task.output_dir)  # the .onnx, a .pt/.pt2, or a converted .h5
    fidelity = FidelityCheck(task, converted=model.path)  # an .h5: the first batch also goes through Keras, once
    plan = build_plan(task, dataframe, model, output_dir=task.output_dir)
    writer = RunWriter(plan.task, dataframe, resume=resume, rows_on_disk=plan.head.rows_on_disk)
    engine = engine_for(plan.task)
    postprocess = _Postprocess(plan, fidelity)
    split = plan.task.data.split.value
    bar = tqdm(
        total=len(dataframe), initial=writer.resumed_from, unit="row", desc=split, disable=None if progress else True
    )
    with closing(engine.stream(plan, writer.first_batch)) as stream, bar:
        for scored in stream:
            writer.add(scored.batch, postprocess(scored))
            bar.update(len(scored.batch.row_ids))
    rows = writer.rows()
    rows = dataclasses.replace(rows, predictions=plan.head.finalize(rows.predictions))
    metrics = _metrics(plan.head, rows.predictions, rows.valid)
    if helper_started:
        metrics_library.stop_helper()
    files = writer.write(plan.head, rows, metrics)
    summary = _summary(plan, engine, postprocess, writer, rows, metrics, fidelity, files, started=started)
    files["report"] = writer.write_report(summary)
    return summary


class _Postprocess:
    """The head on each scored batch, timed (stage `postprocess`), with the first batch's Keras check."""

    def __init__(self, plan: Plan, fidelity: FidelityCheck) -> None:
        self.head = plan.head
        self.fidelity = fidelity
        self.seconds = 0.0
        self.batch_seconds: list[float] = []  # per batch: from loading it to its post-processing

    def __call__(self, scored: Scored) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        self.fidelity.observe(scored.batch.inputs, scored.outputs)  # the first batch only
        # A row fed as several chunks (long audio) gets the mean of its chunks' outputs.
        predictions = self.head.postprocess(average_chunks(scored.outputs, scored.batch), scored.batch)
        done = time.perf_counter()
        self.seconds += done - started
        self.batch_seconds.append(done - scored.loading_started)
        return predictions


def _summary(
    plan: Plan,
    engine: BatchEngine,
    postprocess: _Postprocess,
    writer: RunWriter,
    rows: Chunk,
    metrics: dict[str, float],
    fidelity: FidelityCheck,
    files: dict[str, Path],
    *,
    started: float,
) -> RunSummary:
    """What the run did, from the stages that did it."""
    return RunSummary(
        problem_type=plan.task.problem_type.value,
        split=plan.task.data.split.value,
        rows=len(plan.dataframe),
        seconds=time.perf_counter() - started,
        stage_seconds={**engine.stage_seconds, "postprocess": postprocess.seconds, "write": writer.seconds},
        provider=engine.provider,
        model=plan.model,
        metrics=metrics,
        notes=_notes(plan, fidelity, engine.notes, writer, rows, metrics),
        files=files,
        skipped_rows=len(rows.errors),
        batch_seconds=postprocess.batch_seconds,
        model_seconds=engine.model_seconds,
        decoding_workers=engine.decoding_workers,
        model_inputs={spec.name: list(spec.shape) for spec in plan.runner.inputs},
        fidelity=fidelity.result(),
    )


def _metrics(head: Head, predictions: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, float]:
    """The head's metrics; with rows left out, those of the rows that were read (a copy of the head
    restricted to them scores them)."""
    if valid.all():
        return head.metrics(predictions)
    # Arrays on disk are not subset (an np.memmap would be read whole), nor per-row arrays in the checkpoint's
    # files: their rows are skipped as they are read, a block at a time.
    subset = {}
    for key, values in predictions.items():
        if isinstance(values, (RowArrays, np.memmap)):
            subset[key] = KeptRows(values, valid)
        elif isinstance(values, np.ndarray):
            subset[key] = values[valid]
    return head.restricted_to(valid).metrics(subset)


def _notes(
    plan: Plan,
    fidelity: FidelityCheck,
    engine_notes: list[str],
    writer: RunWriter,
    rows: Chunk,
    metrics: dict[str, float],
) -> list[str]:
    """The decisions and facts the summary shows, in the order they happened."""
    notes = [*model_notes(plan.model), *fidelity.notes(), *plan.runner.notes, *plan.head.notes, *engine_notes]
    if writer.resumed_from:
        notes.append(f"resumed at row {writer.resumed_from}: rows before it came from the checkpoint")
    if rows.errors:
        split = plan.task.data.split.value
        notes.append(f"{len(rows.errors)} row(s) could not be read and were left out: see {split}_errors.csv")
    if not metrics and not set(plan.task.data.label_columns) <= set(plan.dataframe.columns):
        notes.append("no metrics: the dataframe has no label columns")
    return notes


def model_notes(model: ResolvedModel) -> list[str]:
    """A line on where the ONNX file came from, when it is not the configured file itself."""
    if model.origin == "converted":
        return [f"converted to {model.path}"]
    if model.origin == "cached":
        return [f"using the cached conversion {model.path}"]
    return []
