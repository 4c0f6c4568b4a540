"""The one place that knows every stage: dataframe, model, loader, runner, head, writers, report.

Stages and their timers: `load` (waiting for the next decoded batch), `inference` (the runner),
`postprocess` (the head) and `write` (checkpoints and files). Every `output.checkpoint_rows` rows the
finished predictions are saved as a checkpoint chunk, so `--resume` continues a killed run where it
stopped and writes the same files an uninterrupted run would. The prediction files are written only
once every row is done, each atomically, the zip last.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from predict.config import TaskConfig
from predict.data.arrays import build_array_dataset, name_unlabelled_outputs, read_array_rows
from predict.data.collate import (
    DEFAULT_WORKERS,
    Batch,
    BatchDataset,
    InProcessBatches,
    average_chunks,
    batch_loader,
    decoding_workers,
    from_shared,
)
from predict.data.dataframe import read_dataframe
from predict.enums import Engine, OnError, ProblemType
from predict.errors import ConfigError, InputError
from predict.fidelity import FidelityCheck
from predict.heads import HEADS
from predict.heads.base import Head
from predict.model_file import ResolvedModel, file_sha256
from predict.report import metrics as metrics_library
from predict.runners.backend import load_runner, resolve_model
from predict.runners.generation import build_generation_runner
from predict.writers._atomic import atomic_path
from predict.writers.archive import write_archive
from predict.writers.checkpoint import Checkpoint, Chunk, save_arrays
from predict.writers.csv import write_predictions_csv
from predict.writers.pickle import write_raw_predictions
from predict.writers.row_arrays import DiskRows

if TYPE_CHECKING:
    import torch.utils.data


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
    skipped_rows: int = 0
    batch_seconds: list[float] = field(default_factory=list)  # per batch: from loading it to its post-processing
    model_seconds: float = 0.0  # the model's own busy time (it overlaps loading and post-processing)
    decoding_workers: int = 0  # decoding processes at the end of the run (0: the main thread)
    model_inputs: dict[str, list[int | None]] = field(default_factory=dict)  # input name -> shape (None: any size)
    fidelity: dict[str, Any] | None = None  # Keras vs the converted model on the first batch (predict.fidelity)

    @property
    def scoring_seconds(self) -> float:
        """Time from the first batch to the last file: the run less model conversion and loading."""
        return sum(self.stage_seconds.values())

    @property
    def rows_per_second(self) -> float:
        """Scoring throughput: rows per `scoring_seconds`."""
        return self.rows / self.scoring_seconds if self.scoring_seconds > 0 else math.inf


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
    split = task.data.split.value
    output_dir = task.output_dir
    _check_output_dir(output_dir, split, resume=resume, overwrite=overwrite)
    task, dataframe = read_rows(task)
    if task.data.label_columns and set(task.data.label_columns) <= set(dataframe.columns):
        metrics_library.start_import()  # metrics will be computed: their library loads while the model does
    model = resolve_model(task, output_dir=output_dir)  # runtime.backend: the .onnx, a .pt/.pt2, or a converted .h5
    fidelity = FidelityCheck(task, converted=model.path)  # an .h5: the first batch also goes through Keras, once
    if (
        task.problem_type is ProblemType.TEXT_SEQUENCE_TO_SEQUENCE
    ):  # an encoder/decoder pair, many decoder calls per batch
        runner = build_generation_runner(task, model.path, cache_dir=output_dir / "onnx_cache")
    else:
        runner = load_runner(task, model.path)
    task = name_unlabelled_outputs(task, runner.outputs)
    head = HEADS[task.problem_type].build(task, outputs=runner.outputs, dataframe=dataframe)
    checkpoint = Checkpoint.open(output_dir, split, run_key(task), resume=resume)
    chunks = checkpoint.load()
    resumed_from = checkpoint.rows_done
    # Big per-row arrays (masks) go to disk batch by batch; see predict.writers.row_arrays.
    disk_rows = DiskRows(checkpoint.folder, len(dataframe))
    batch_size = task.runtime.batch_size
    # Chunks end on batch boundaries, so a resumed run feeds the model exactly the batches it would have.
    first_batch = checkpoint.rows_done // batch_size
    loader = build_loader(
        task,
        dataframe,
        runner.inputs,
        first_batch=first_batch,
        model_on_cuda=runner.provider == "CUDAExecutionProvider",
    )
    decoders = loader.num_workers
    # num_workers unset and decoding on the main thread (few CPUs): check after a few batches that the
    # model, not the decoder, is the bottleneck; if not, parallel worker processes decode the rest.
    probe = (
        task.runtime.num_workers is None
        and decoders == 0
        and task.runtime.engine is Engine.LOCAL
        and task.problem_type.modality not in _READ_NOT_DECODED
    )
    notes: list[str] = []
    if task.runtime.engine is Engine.RAY:  # decoding and inference on Ray; the head, checkpoints and files stay here
        from predict.engines.ray import ray_batches

        loader, runner = ray_batches(task, loader.dataset, model=model, runner=runner, first_batch=first_batch)
    skip = task.data.on_error is OnError.SKIP
    chunk_batches = max(1, -(-task.output.checkpoint_rows // batch_size))

    # Main-thread time per stage (they sum to the scoring time); the model's own busy time, which
    # overlaps loading and post-processing, is `model_seconds`.
    stages = dict.fromkeys(("load", "inference", "postprocess", "write"), 0.0)
    batch_seconds: list[float] = []
    pending: list[Chunk] = []
    model_thread = _ModelThread(runner)
    in_flight: collections.deque[tuple[Batch, Future, float]] = collections.deque()

    def finish_oldest() -> None:
        batch, future, tick = in_flight.popleft()
        waited = time.perf_counter()
        fidelity.observe(batch.inputs, future.result())  # the first batch only
        # A row fed as several chunks (long audio) gets the mean of its chunks' outputs.
        outputs = average_chunks(future.result(), batch)
        stages["inference"] += time.perf_counter() - waited
        postprocess_started = time.perf_counter()
        predictions = head.postprocess(outputs, batch)
        stages["postprocess"] += time.perf_counter() - postprocess_started
        batch_seconds.append(time.perf_counter() - tick)
        chunk = _chunk_of(batch, predictions)
        pending.append(
            dataclasses.replace(chunk, predictions=disk_rows.take(predictions, start=chunk.start, valid=chunk.valid))
        )
        if len(pending) == chunk_batches:
            write_started = time.perf_counter()
            chunks.append(_merge_chunks(pending))
            checkpoint.save(chunks[-1])
            pending.clear()
            stages["write"] += time.perf_counter() - write_started
        bar.update(len(batch.row_ids))

    with (
        model_thread,
        tqdm(
            total=len(dataframe),
            initial=checkpoint.rows_done,
            unit="row",
            desc=split,
            disable=None if progress else True,
        ) as bar,
    ):
        batches = iter(loader)
        fed = 0
        while True:
            tick = time.perf_counter()
            batch = next(batches, None)
            stages["load"] += time.perf_counter() - tick
            if batch is None:
                break
            batch = from_shared(batch)
            if batch.errors and not skip:
                row, message = batch.errors[0]
                more = (
                    f" (and {len(batch.errors) - 1} more in rows {row}..{batch.row_ids[-1]})"
                    if len(batch.errors) > 1
                    else ""
                )
                raise InputError(
                    f"{task.data.rows_file.name}: {message}{more} (data.on_error: skip leaves such rows out)"
                )
            in_flight.append((batch, model_thread.submit(batch.inputs), tick))
            fed += 1
            if probe and fed == PROBE_BATCHES:
                probe = False
                # The verdict needs the model's time per batch: wait for its oldest batch, whatever the
                # threads' scheduling (a busy machine may not have finished one yet; issue 20). A model
                # error is raised here, as it would be when that batch is finished.
                waited = time.perf_counter()
                in_flight[0][1].result()
                stages["inference"] += time.perf_counter() - waited
                if decoder_bound(stages["load"] / fed, model_thread.busy_seconds / model_thread.runs):
                    decoders = DEFAULT_WORKERS
                    batches = iter(batch_loader(loader.dataset, num_workers=decoders, first_batch=first_batch + fed))
                    notes.append(
                        f"decoding moved to {decoders} worker processes after {fed} batches: "
                        "the decoder, not the model, was the bottleneck (set runtime.num_workers to choose)"
                    )
            if (
                len(in_flight) > 1
            ):  # the model runs this batch while the last one is post-processed and the next decoded
                finish_oldest()
        while in_flight:
            finish_oldest()
    if pending:
        chunks.append(_merge_chunks(pending))

    whole = _merge_chunks(chunks)
    valid = whole.valid
    predictions = head.finalize({**_blank_rows(whole.predictions, valid), **disk_rows.close()})
    metrics = head.metrics(predictions) if valid.all() else _metrics_of_valid_rows(head, predictions, valid)
    notes = [*model_notes(model), *fidelity.notes(), *runner.notes, *head.notes, *notes]
    if resumed_from:
        notes.append(f"resumed at row {resumed_from}: rows before it came from the checkpoint")
    if whole.errors:
        notes.append(f"{len(whole.errors)} row(s) could not be read and were left out: see {split}_errors.csv")
    if not metrics and not set(task.data.label_columns) <= set(dataframe.columns):
        notes.append("no metrics: the dataframe has no label columns")

    tick = time.perf_counter()
    files = _write_files(output_dir, split, dataframe, head, predictions, metrics, valid=valid, task=task)
    _write_errors(output_dir / f"{split}_errors.csv", whole.errors, files)
    checkpoint.discard()
    stages["write"] += time.perf_counter() - tick
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
        skipped_rows=len(whole.errors),
        batch_seconds=batch_seconds,
        model_seconds=model_thread.busy_seconds,
        decoding_workers=decoders,
        model_inputs={spec.name: list(spec.shape) for spec in runner.inputs},
        fidelity=fidelity.result(),
    )
    report_path = output_dir / f"{split}_report.json"
    _write_json(report_path, _report(summary, task))
    files["report"] = report_path
    return summary


# Array rows are read from memory or a file, not decoded: handing a batch over from a worker process
# costs more than reading it (1,000,000 x 32 float32, batch 1024: 0.49M rows/s through 2 workers,
# against 6.5M rows/s for raw session.run). With runtime.num_workers unset they are read on the main thread.
_READ_NOT_DECODED = {"array"}

# num_workers unset on few CPUs: batches decoded on the main thread before run_task compares the
# decoder's time per batch with the model's (see decoder_bound).
PROBE_BATCHES = 8


def decoder_bound(load_seconds_per_batch: float, model_seconds_per_batch: float) -> bool:
    """Whether the model waits on the decoder: then parallel decoding processes pay off, since they
    take CPU the model leaves idle (measured: a small CNN on 2 cores, 4,214 vs 3,621 rows/s)."""
    return load_seconds_per_batch > model_seconds_per_batch


class _ModelThread:
    """Runs the model on one background thread, so the main thread decodes the next batch and
    post-processes the last one meanwhile (measured on 2 cores: 1.1-1.2x the throughput of taking
    turns, and no copies, unlike worker processes; see docs/performance.md). Batches run in
    submission order; onnxruntime and torch release the GIL while they compute."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.busy_seconds = 0.0
        self.runs = 0  # finished
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-model")

    def submit(self, inputs: dict[str, np.ndarray]) -> Future:
        return self.executor.submit(self._run, inputs)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = self.runner.run(inputs)
        self.busy_seconds += time.perf_counter() - started
        self.runs += 1
        return outputs

    def __enter__(self) -> _ModelThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # On an error, batches not yet started are dropped; the one running finishes first.
        self.executor.shutdown(wait=True, cancel_futures=True)


def build_loader(
    task: TaskConfig, dataframe: pd.DataFrame, model_inputs: tuple, *, first_batch: int, model_on_cuda: bool = False
) -> InProcessBatches | torch.utils.data.DataLoader:
    """The modality's batches from batch `first_batch` on; pinned for a CUDA model (see `decoding_workers`)."""
    dataset = build_dataset(task, dataframe, model_inputs)
    configured = task.runtime.num_workers
    if configured is None and task.problem_type.modality in _READ_NOT_DECODED:
        configured = 0
    workers = decoding_workers(configured, model_on_cuda=model_on_cuda)
    return batch_loader(dataset, num_workers=workers, first_batch=first_batch, pin_memory=model_on_cuda)


def build_dataset(task: TaskConfig, dataframe: pd.DataFrame, model_inputs: tuple) -> BatchDataset:
    """The modality's dataset (item i is batch i). Each modality's module is imported only for its
    own tasks: an image run never loads the audio (torch) or text (tokenizers) code (issue 18)."""
    modality = task.problem_type.modality
    if modality == "image":
        from predict.data.image import build_image_dataset as build
    elif modality == "text":
        from predict.data.text import build_text_dataset as build
    elif modality == "audio":
        from predict.data.audio import build_audio_dataset as build
    else:
        build = build_array_dataset
    return build(task, dataframe, model_inputs)


def read_rows(task: TaskConfig) -> tuple[TaskConfig, pd.DataFrame]:
    """The rows to score as a dataframe, and the task as they complete it (array tasks name their
    id and label columns from their files; see predict.data.arrays)."""
    if task.problem_type.modality == "array":
        return read_array_rows(task)
    return task, read_dataframe(task.data.dataframe)


def run_key(task: TaskConfig) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the config as it affects predictions, and the
    content hash of every file it names (model, decoder, tokenizer, dataframe, ...)."""
    settings = _plain(task)
    settings.pop("output", None)
    settings.pop("source", None)
    settings["runtime"].pop("num_workers", None)  # decoding processes change speed, not results
    for key in ("engine", "ray_actors"):  # so do the engine and its actors: a local run resumes on Ray
        settings["runtime"].pop(key, None)
    key = {"config": hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]}
    for name, path in _named_files(task):
        key[name] = file_sha256(path)[:16]
    return key


def _named_files(value: Any, prefix: str = "") -> list[tuple[str, Path]]:
    """(key, path) of every existing file a config names, found by walking its dataclasses."""
    if dataclasses.is_dataclass(value):
        found = []
        for item in dataclasses.fields(value):
            if item.name not in ("source", "output"):
                found += _named_files(getattr(value, item.name), f"{prefix}{item.name}.")
        return found
    if isinstance(value, Path) and value.is_file():
        return [(prefix.rstrip("."), value)]
    return []


def _check_output_dir(output_dir: Path, split: str, *, resume: bool, overwrite: bool) -> None:
    existing = [
        name for name in (f"{split}_predictions.csv", f"{split}_predictions.zip") if (output_dir / name).exists()
    ]
    partial = (output_dir / f".{split}.partial").exists()
    if resume or overwrite:
        return
    if existing:
        raise ConfigError(
            f"output.dir {output_dir} already has {split} predictions ({', '.join(existing)}); "
            "pass --overwrite to replace them, or set another output.dir"
        )
    if partial:
        raise ConfigError(
            f"output.dir {output_dir} holds an interrupted {split} run; pass --resume to continue it or --overwrite to start over"
        )


def _chunk_of(batch: Batch, predictions: dict[str, np.ndarray]) -> Chunk:
    start, stop = int(batch.row_ids[0]), int(batch.row_ids[-1]) + 1
    valid = np.ones(stop - start, dtype=bool)
    for row, _ in batch.errors:
        valid[row - start] = False
    return Chunk(start=start, stop=stop, predictions=predictions, valid=valid, errors=list(batch.errors))


def _merge_chunks(chunks: list[Chunk]) -> Chunk:
    keys = chunks[0].predictions
    return Chunk(
        start=chunks[0].start,
        stop=chunks[-1].stop,
        predictions={key: _concatenate([chunk.predictions[key] for chunk in chunks]) for key in keys},
        valid=np.concatenate([chunk.valid for chunk in chunks]),
        errors=[error for chunk in chunks for error in chunk.errors],
    )


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    if arrays[0].dtype != object:
        return np.concatenate(arrays)
    # Object arrays of equal-length lists must not be turned into 2-D arrays on the way.
    return _object_array([item for array in arrays for item in array])


def _blank_rows(predictions: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, np.ndarray]:
    """Rows that could not be read get NaN in every float prediction (their inputs were zeros)."""
    if valid.all():
        return predictions
    blanked = {}
    for key, values in predictions.items():
        if values.dtype.kind == "f":
            values = values.copy()
            values[~valid] = np.nan
        blanked[key] = values
    return blanked


def _metrics_of_valid_rows(head: Head, predictions: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, float]:
    """Metrics on the rows that were read: the head scores a copy of itself restricted to them."""
    # Arrays on disk (np.memmap) are not subset: that would read them whole. Heads compute what their
    # metrics need from such arrays in `postprocess`.
    subset = {key: values[valid] for key, values in predictions.items() if not isinstance(values, np.memmap)}
    return head.restricted_to(valid).metrics(subset)


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
    *,
    valid: np.ndarray,
    task: TaskConfig,
) -> dict[str, Path]:
    csv_path = output_dir / f"{split}_predictions.csv"
    pkl_path = output_dir / f"{split}_raw_predictions.pkl"
    metrics_path = output_dir / f"{split}_metrics.json"
    table, columns, blank_rows = head.csv_table(dataframe, predictions, valid=valid)
    write_predictions_csv(csv_path, table, columns, blank_rows=blank_rows)
    raw = head.raw_predictions(predictions, dataframe)
    write_raw_predictions(pkl_path, raw)  # arrays on disk (np.memmap) go into the pkl straight from their files
    for key in raw:  # earlier versions left big arrays beside the pkl as {split}_{key}.npy: such a file would be stale
        (output_dir / f"{split}_{key}.npy").unlink(missing_ok=True)
    files = {"csv": csv_path, "pkl": pkl_path}
    npz_path = output_dir / f"{split}_raw_predictions.npz"
    if task.output.write_npz:
        save_arrays(
            npz_path,
            {
                key: np.asarray(value) if not isinstance(value, list) else _object_array(value)
                for key, value in raw.items()
            },
        )
        files["npz"] = npz_path
    else:
        npz_path.unlink(missing_ok=True)
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


def _object_array(values: list) -> np.ndarray:
    """A 1-D object array holding `values` as they are (lists stay lists, even of equal length)."""
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        array[index] = value
    return array


def _write_errors(path: Path, errors: list[tuple[int, str]], files: dict[str, Path]) -> None:
    """`{split}_errors.csv`: each row left out and why; removed when there are none (it would be stale)."""
    if not errors:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as temp:
        pd.DataFrame({"row": [row for row, _ in errors], "error": [message for _, message in errors]}).to_csv(
            temp, index=False
        )
    files["errors"] = path


def _report(summary: RunSummary, task: TaskConfig) -> dict[str, Any]:
    return {
        "config": str(task.source),
        "problem_type": summary.problem_type,
        "split": summary.split,
        # What `predict show` / `predict report` need to pair predictions with labels and inputs.
        "input_column": task.input_column,
        "label_columns": list(task.data.label_columns),
        "data_folder": str(task.data.data_folder or task.data.rows_file.parent),
        "rows": summary.rows,
        "skipped_rows": summary.skipped_rows,
        "seconds": round(summary.seconds, 4),
        "scoring_seconds": round(summary.scoring_seconds, 4),
        "rows_per_second": round(summary.rows_per_second, 2),
        "stage_seconds": {name: round(value, 4) for name, value in summary.stage_seconds.items()},
        "model_seconds": round(summary.model_seconds, 4),
        "provider": summary.provider,
        "model_inputs": summary.model_inputs,
        # runtime.num_workers as run (unset: chosen by the machine's CPUs and the probe, see run_task)
        "decoding_workers": summary.decoding_workers if task.runtime.engine is Engine.LOCAL else None,
        "model": str(task.model),
        "onnx_model": str(summary.model.path),
        "fidelity": summary.fidelity,
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
