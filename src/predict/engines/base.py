"""What every engine provides (see predict.engines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from predict.data.collate import Batch
from predict.enums import OnError
from predict.errors import InputError

if TYPE_CHECKING:
    from predict.config import TaskConfig
    from predict.plan import Plan


class Scored(NamedTuple):
    """One batch and the model's raw outputs on it (output name -> array, first axis = what was fed).

    `loading_started` is when the engine began to wait for the batch (time.perf_counter), for its latency.
    """

    batch: Batch
    outputs: dict[str, np.ndarray]
    loading_started: float


class BatchEngine(Protocol):
    """What drives a plan's batches through its model.

    Attributes:
        stage_seconds: the main thread's time waiting for decoded batches (`load`) and for the model
            (`inference`).
        model_seconds: the model's own busy time, which overlaps the caller's work.
        decoding_workers: decoding processes at the end of the stream (None: not this process's to say).
        provider: what ran the model (e.g. `CPUExecutionProvider`), known once the stream is done.
        notes: decisions the user should see in the summary.
    """

    stage_seconds: dict[str, float]
    model_seconds: float
    decoding_workers: int | None
    provider: str
    notes: list[str]

    def stream(self, plan: Plan, first_batch: int) -> Iterator[Scored]:
        """Batches `first_batch`.. of the plan's rows with their outputs, in row order."""
        ...


def check_readable(batch: Batch, task: TaskConfig) -> None:
    """Stop at a batch with unreadable rows unless `data.on_error: skip` leaves them out.

    Raises:
        InputError: naming the file, the first bad row and how many more there are.
    """
    if not batch.errors or task.data.on_error is OnError.SKIP:
        return
    row, message = batch.errors[0]
    more = ""
    if len(batch.errors) > 1:
        more = f" (and {len(batch.errors) - 1} more in rows {row}..{batch.row_ids[-1]})"
    raise InputError(f"{task.data.rows_file.name}: {message}{more} (data.on_error: skip leaves such rows out)")
