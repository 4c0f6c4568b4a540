"""Everything a run writes: checkpoints while it scores, then the prediction files, `errors.csv` and `report.json`.

Every `output.checkpoint_rows` rows (rounded up to whole batches) the finished predictions are saved
as a checkpoint chunk, so `--resume` continues a killed run where it stopped and writes the same
files an uninterrupted run would. Big per-row arrays (masks) go to disk batch by batch
(predict.writers.row_arrays). The prediction files are written only once every row is done, each
atomically, the zip last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.errors import ConfigError
from predict.heads.base import Head, NamesByRow, RowsByBlock, object_array
from predict.heap import return_freed_memory
from predict.model_file import file_sha256
from predict.summary import RunSummary
from predict.writers._atomic import atomic_path
from predict.writers.archive import write_archive
from predict.writers.checkpoint import Checkpoint, Chunk, RowArrays, save_arrays
from predict.writers.csv import write_predictions_csv
from predict.writers.pickle import write_raw_predictions
from predict.writers.row_arrays import DiskRows


def check_output_dir(output_dir: Path, split: str, *, resume: bool, overwrite: bool) -> None:
    """Refuse to write over a split's predictions or an interrupted run unless told to.

    Raises:
        ConfigError: naming the folder, what it holds and the flag that would proceed.
    """
    if resume or overwrite:
        return
    existing = [
        name for name in (f"{split}_predictions.csv", f"{split}_predictions.zip") if (output_dir / name).exists()
    ]
    if existing:
        raise ConfigError(
            f"output.dir {output_dir} already has {split} predictions ({', '.join(existing)}); "
            "pass --overwrite to replace them, or set another output.dir"
        )
    if (output_dir / f".{split}.partial").exists():
        raise ConfigError(
            f"output.dir {output_dir} holds an interrupted {split} run; "
            "pass --resume to continue it or --overwrite to start over"
        )


# Every this many batches kept, the C heap's free pages go back to the OS: a batch's big temporary arrays
# (resized masks) come from the heap, and the small rows kept between them until the next checkpoint chunk
# pinned their pages (semantic segmentation: RSS grew 70 MB per 4,096 rows, for 11 MB kept; issue 18).
TRIM_BATCHES = 16


class RunWriter:
    """One split's files in `task.output_dir`: checkpoints as batches finish, then the prediction files.

    Attributes:
        first_batch: the batch a resumed run starts from (0 for a fresh run).
        resumed_from: the rows the checkpoint already held.
        seconds: time spent writing (the `write` stage).
    """

    def __init__(
        self, task: TaskConfig, dataframe: pd.DataFrame, *, resume: bool, rows_on_disk: tuple[str, ...] = ()
    ) -> None:
        """`rows_on_disk`: the predictions written to disk whatever their size (`Head.rows_on_disk`)."""
        self.task = task
        self.dataframe = dataframe
        self.output_dir = task.output_dir
        self.split = task.data.split.value
        self.checkpoint = Checkpoint.open(
            self.output_dir, self.split, run_key(task), resume=resume, rows_on_disk=rows_on_disk
        )
        self.chunks = self.checkpoint.load()
        self.resumed_from = self.checkpoint.rows_done
        self.disk_rows = DiskRows(self.checkpoint.folder, len(dataframe), keys=rows_on_disk)
        batch_size = task.runtime.batch_size
        # Chunks end on batch boundaries, so a resumed run feeds the model exactly the batches it would have.
        self.first_batch = self.resumed_from // batch_size
        self.chunk_batches = max(1, -(-task.output.checkpoint_rows // batch_size))
        self.pending: list[Chunk] = []
        self.seconds = 0.0

    def add(self, batch: Batch, predictions: dict[str, np.ndarray]) -> None:
        """Keep one batch's predictions; every `chunk_batches` batches, save them as a checkpoint chunk."""
        chunk = _chunk_of(batch, predictions)
        kept = self.disk_rows.take(predictions, start=chunk.start, valid=chunk.valid)
        self.pending.append(dataclasses.replace(chunk, predictions=kept))
        if len(self.pending) % TRIM_BATCHES == 0:
            return_freed_memory()
        if len(self.pending) == self.chunk_batches:
            started = time.perf_counter()
            self.chunks.append(self.checkpoint.save(merge_chunks(self.pending, release=True)))
            self.pending.clear()
            self.seconds += time.perf_counter() - started

    def rows(self) -> Chunk:
        """Every row's predictions once all batches are in: rows that could not be read are NaN in every
        float prediction, and big arrays are read-only memory maps of their files."""
        if self.pending:
            self.chunks.append(merge_chunks(self.pending, release=True))
            self.pending = []
        whole = merge_chunks(self.chunks, release=True)
        self.chunks = [whole]
        predictions = {**_blank_rows(whole.predictions, whole.valid), **self.disk_rows.close()}
        return dataclasses.replace(whole, predictions=predictions)

    def write(self, head: Head, rows: Chunk, metrics: dict[str, float]) -> dict[str, Path]:
        """The prediction files, the metrics and `{split}_errors.csv`; the checkpoint goes."""
        started = time.perf_counter()
        files = _write_files(self.output_dir, self.split, self.dataframe, head, rows, metrics, task=self.task)
        _write_errors(self.output_dir / f"{self.split}_errors.csv", rows.errors, files)
        self.checkpoint.discard()
        self.seconds += time.perf_counter() - started
        return files

    def write_report(self, summary: RunSummary) -> Path:
        """`{split}_report.json`: the summary, the config as run, and what views need to read the files."""
        path = self.output_dir / f"{self.split}_report.json"
        _write_json(path, _report(summary, self.task))
        return path


def run_key(task: TaskConfig) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the config as it affects predictions, and the
    content hash of every file it names (model, decoder, tokenizer, dataframe, ...)."""
    settings = plain(task)
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


def _chunk_of(batch: Batch, predictions: dict[str, np.ndarray]) -> Chunk:
    start, stop = int(batch.row_ids[0]), int(batch.row_ids[-1]) + 1
    valid = np.ones(stop - start, dtype=bool)
    for row, _ in batch.errors:
        valid[row - start] = False
    return Chunk(start=start, stop=stop, predictions=predictions, valid=valid, errors=list(batch.errors))


def merge_chunks(chunks: list[Chunk], *, release: bool = False) -> Chunk:
    """Consecutive chunks as one.

    Args:
        release: take each array out of its chunk's predictions as it is copied, so that its memory goes as
            the merged array's fills: merging holds about one copy of the rows, not two (the chunks are left
            without predictions). Object detection's 100,000 rows held 280 MB twice (issue 18).
    """
    keys = list(chunks[0].predictions)
    return Chunk(
        start=chunks[0].start,
        stop=chunks[-1].stop,
        predictions={key: _concatenate(chunks, key, release=release) for key in keys},
        valid=np.concatenate([chunk.valid for chunk in chunks]),
        errors=[error for chunk in chunks for error in chunk.errors],
    )


def _concatenate(chunks: list[Chunk], key: str, *, release: bool) -> np.ndarray | RowArrays:
    arrays = [chunk.predictions[key] for chunk in chunks]
    if not all(isinstance(array, np.ndarray) for array in arrays):
        return RowArrays(arrays)  # per-row arrays, some of them still in the checkpoint's files
    if arrays[0].dtype == object:  # object arrays of equal-length lists must not become 2-D arrays
        return object_array([item for array in arrays for item in array])
    if not release or len({array.shape[1:] for array in arrays}) > 1:
        return np.concatenate(arrays)  # (which names the shapes that do not fit)
    if len(arrays) == 1:
        return chunks[0].predictions.pop(key)
    # Pages of np.empty are backed only once written: each part is copied in, then let go. A part of a few MB
    # may sit in the C heap, whose freed pages stay resident unless handed back (100,000 rows of detection
    # peaked at 797 MB while merging without that, 531 MB with it).
    merged = np.empty((sum(len(array) for array in arrays), *arrays[0].shape[1:]), dtype=np.result_type(*arrays))
    del arrays
    start = 0
    for chunk in chunks:
        part = chunk.predictions.pop(key)
        merged[start : start + len(part)] = part
        start += len(part)
        if part.nbytes >= 2**20:  # not after each of a chunk's batches: 0.1 ms a call adds up
            del part
            return_freed_memory()
    return merged


def _blank_rows(predictions: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, np.ndarray]:
    """Rows that could not be read get NaN in every float prediction (their inputs were zeros)."""
    if valid.all():
        return predictions
    blanked = {}
    for key, values in predictions.items():
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            values = values.copy()
            values[~valid] = np.nan
        blanked[key] = values
    return blanked


def _write_files(
    output_dir: Path,
    split: str,
    dataframe: pd.DataFrame,
    head: Head,
    rows: Chunk,
    metrics: dict[str, float],
    *,
    task: TaskConfig,
) -> dict[str, Path]:
    csv_path = output_dir / f"{split}_predictions.csv"
    pkl_path = output_dir / f"{split}_raw_predictions.pkl"
    return_freed_memory()  # what finalize and the metrics freed, before the files' own buffers come on top
    _write_csv(csv_path, dataframe, head, rows)
    raw = head.raw_predictions(rows.predictions, dataframe)
    write_raw_predictions(pkl_path, raw)  # arrays on disk (np.memmap) go into the pkl straight from their files
    for key in raw:  # earlier versions left big arrays beside the pkl as {split}_{key}.npy: such a file would be stale
        (output_dir / f"{split}_{key}.npy").unlink(missing_ok=True)
    files = {"csv": csv_path, "pkl": pkl_path}
    _write_npz(output_dir / f"{split}_raw_predictions.npz", raw, files, wanted=task.output.write_npz)
    metrics_path = output_dir / f"{split}_metrics.json"
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


def _write_csv(path: Path, dataframe: pd.DataFrame, head: Head, rows: Chunk) -> None:
    """The CSV, in a call of its own: its prediction columns (a string per row) are gone before the pkl is
    made (held until the end, they were 9 MB of the writing's peak at 100,000 rows of text, issue 18)."""
    table, columns, blank_rows = head.csv_table(dataframe, rows.predictions, valid=rows.valid)
    write_predictions_csv(path, table, columns, blank_rows=blank_rows)


def _write_npz(path: Path, raw: dict[str, Any], files: dict[str, Path], *, wanted: bool) -> None:
    """`output.write_npz`: the pkl's arrays, loadable without pickle; removed when not wanted (it would be stale)."""
    if not wanted:
        path.unlink(missing_ok=True)
        return
    arrays = {}
    for key, value in raw.items():
        if isinstance(value, RowsByBlock):
            arrays[key] = value.whole()
        elif isinstance(value, (list, RowArrays, NamesByRow)):
            arrays[key] = object_array(list(value))
        else:
            arrays[key] = np.asarray(value)
    save_arrays(path, arrays)
    files["npz"] = path


def _write_errors(path: Path, errors: list[tuple[int, str]], files: dict[str, Path]) -> None:
    """`{split}_errors.csv`: each row left out and why; removed when there are none (it would be stale)."""
    if not errors:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as temp:
        frame = pd.DataFrame({"row": [row for row, _ in errors], "error": [message for _, message in errors]})
        frame.to_csv(temp, index=False)
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
        # runtime.num_workers as run (unset: chosen by the machine's CPUs and the probe, see predict.engines.local)
        "decoding_workers": summary.decoding_workers,
        "model": str(task.model),
        "onnx_model": str(summary.model.path),
        "fidelity": summary.fidelity,
        "metrics": summary.metrics,
        "notes": summary.notes,
        "files": {name: str(path) for name, path in summary.files.items()},
        "task": plain(task),  # the config as run, `--set` overrides included
    }


def plain(value: Any) -> Any:
    """A config dataclass as JSON-ready dicts, lists and strings."""
    if dataclasses.is_dataclass(value):
        return {item.name: plain(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
