"""The batch that travels from a loader worker to the main process.

Arrays travel as torch tensors: torch moves them through shared memory instead of pickling them
through a pipe, and `.numpy()` on the other side is free.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    """Consecutive rows of the dataframe, ready for the model.

    Attributes:
        row_ids: int64[B] positions of the rows in the dataframe, ascending.
        inputs: model input name to array, first axis = the B rows.
        errors: (row, message) for rows that could not be read; their input slots hold zeros
            and must never reach a prediction file as if they were real.
        context: per-row facts a head needs that are not model inputs (first axis = rows), e.g.
            original image sizes or token offsets.
    """

    row_ids: np.ndarray
    inputs: dict[str, np.ndarray]
    errors: list[tuple[int, str]]
    context: dict[str, np.ndarray]


def to_shared(batch: Batch) -> Batch:
    """Worker side: wrap arrays as tensors (no copy) so they cross processes through shared memory."""
    return Batch(
        torch.from_numpy(batch.row_ids),
        {name: torch.from_numpy(array) for name, array in batch.inputs.items()},
        batch.errors,
        {name: _as_tensor(value) for name, value in batch.context.items()},
    )


def from_shared(batch: Batch) -> Batch:
    """Main side: tensors back to NumPy arrays (no copy)."""
    return Batch(
        _as_numpy(batch.row_ids),
        {name: _as_numpy(value) for name, value in batch.inputs.items()},
        list(batch.errors),
        {name: _as_numpy(value) for name, value in batch.context.items()},
    )


def _as_tensor(value: np.ndarray) -> torch.Tensor | np.ndarray:
    # Object arrays (strings, ragged lists) cannot become tensors; they are pickled as they are.
    return torch.from_numpy(value) if isinstance(value, np.ndarray) and value.dtype != object else value


def _as_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else value


def keep_as_is(batch: Batch) -> Batch:
    """DataLoader collate function: items are already whole batches."""
    return batch
