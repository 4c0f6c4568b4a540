"""The batch that travels from a loader to the model, and the loaders that build batches.

Batches are built in the main thread (`InProcessBatches`) or by forked worker processes
(`predict.data.workers.WorkerBatches`), neither with torch (it takes 2-4 s to import on the 2-core
development VM; issue 18). Only batches page-locked for CUDA come from a torch `DataLoader`: there
arrays travel as torch tensors (`to_shared`), and `from_shared` turns them back into arrays.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

import numpy as np

from predict.cpus import usable_cpus
from predict.data.context import ChunkContext, Context

if TYPE_CHECKING:
    import pandas as pd
    import torch
    import torch.utils.data

    from predict.data.workers import WorkerBatches


class Batch(NamedTuple):
    """Consecutive rows of the dataframe, ready for the model.

    Attributes:
        row_ids: int64[B] positions of the rows in the dataframe, ascending.
        inputs: model input name to array, first axis = the B rows.
        errors: (row, message) for rows that could not be read; their input slots hold zeros
            and must never reach a prediction file as if they were real.
        context: per-row facts a head needs that are not model inputs, typed by the loader's layout
            (`predict.data.context`: original image sizes, word ids, token offsets, chunk counts),
            or None when the layout has none.
    """

    row_ids: np.ndarray
    inputs: dict[str, np.ndarray]
    errors: list[tuple[int, str]]
    context: Context


class BatchDataset(Protocol):
    """What the modality loaders build (`predict.data.image.ImageBatches`, ...): item i is batch i."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Batch: ...

    def with_rows(self, dataframe: pd.DataFrame) -> BatchDataset:
        """The same loader (tokenizer, sizes, features) over other rows with the same columns."""
        ...


def to_shared(batch: Batch) -> Batch:
    """Worker side (the DataLoader's collate function, run in the worker on each item): wrap arrays
    as tensors (no copy) so they cross processes through shared memory, or get pinned for CUDA."""
    import torch

    return Batch(
        torch.from_numpy(batch.row_ids),
        {name: torch.from_numpy(array) for name, array in batch.inputs.items()},
        batch.errors,
        _map_context(batch.context, _as_tensor),
    )


def from_shared(batch: Batch) -> Batch:
    """Main side: tensors back to NumPy arrays (no copy)."""
    return Batch(
        _as_numpy(batch.row_ids),
        {name: _as_numpy(value) for name, value in batch.inputs.items()},
        list(batch.errors),
        _map_context(batch.context, _as_numpy),
    )


def _map_context(context: Context, convert: Callable) -> Context:
    """The context with `convert` applied to each of its fields; None stays None."""
    if context is None:
        return None
    fields = dataclasses.fields(context)
    return dataclasses.replace(context, **{field.name: convert(getattr(context, field.name)) for field in fields})


def _as_tensor(value: np.ndarray) -> torch.Tensor | np.ndarray:
    import torch

    # Object arrays (strings, ragged lists) cannot become tensors; they are pickled as they are.
    return torch.from_numpy(value) if isinstance(value, np.ndarray) and value.dtype != object else value


def _as_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    # from_shared sees every batch, with or without workers: a value can only be a tensor if torch
    # was imported, so asking never imports it.
    torch = sys.modules.get("torch")
    return value.numpy() if torch is not None and isinstance(value, torch.Tensor) else value


def average_chunks(outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
    """Model outputs per piece to outputs per row: the mean over each row's pieces.

    A no-op for batches whose context is not a `ChunkContext`, so the pipeline can call it on every
    batch and heads always receive one output per row.

    Args:
        outputs: output name to float[P, ...], P = the number of pieces fed.
        batch: the batch that was fed.

    Returns:
        output name to float[B, ...], in the outputs' own dtype.
    """
    if not isinstance(batch.context, ChunkContext):
        return outputs
    counts = batch.context.chunk_counts
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    averaged = {}
    for name, values in outputs.items():
        sums = np.add.reduceat(values.astype(np.float64), starts, axis=0)
        shape = (len(counts),) + (1,) * (values.ndim - 1)
        averaged[name] = (sums / counts.reshape(shape)).astype(values.dtype)
    return averaged


# runtime.num_workers left unset: with the model on the CPU of a machine with this many CPUs or
# fewer, decode on the main thread while the model runs on its own (predict.engines.local). Worker
# processes there take a core from onnxruntime's threads mid-batch: on 2 cores a MobileNetV2 ran
# 1,161-1,316 rows/s decoded on the main thread against 1,065 with 2 workers (batch 32;
# docs/performance.md). A run that turns out decode-bound moves to workers (predict.engines.local.decoder_bound).
FEW_CPUS = 2
DEFAULT_WORKERS = 2


def decoding_workers(configured: int | None, *, model_on_cuda: bool) -> int:
    """How many processes decode: `runtime.num_workers` when set, else 0 or `DEFAULT_WORKERS` (see FEW_CPUS)."""
    if configured is not None:
        return configured
    if not model_on_cuda and not can_fork():  # CPU workers are forked (predict.data.workers)
        return 0
    cpus = usable_cpus()
    return DEFAULT_WORKERS if model_on_cuda or cpus > FEW_CPUS else 0


def can_fork() -> bool:
    """Whether this platform starts processes by forking (Linux, macOS; not Windows): decoding workers need it."""
    return "fork" in multiprocessing.get_all_start_methods()


@dataclass(frozen=True)
class InProcessBatches:
    """Batches `first_batch`.. of a dataset, each built when the loop asks for it, in the calling thread.

    The same items in the same order as a `DataLoader` with `num_workers=0` (which calls
    `dataset[i]` in turn), without importing torch.
    """

    dataset: BatchDataset
    first_batch: int = 0
    num_workers: ClassVar[int] = 0

    def __iter__(self) -> Iterator[Batch]:
        return (self.dataset[index] for index in range(self.first_batch, len(self.dataset)))

    def __len__(self) -> int:
        return max(0, len(self.dataset) - self.first_batch)


def batch_loader(
    dataset: BatchDataset, *, num_workers: int, first_batch: int = 0, pin_memory: bool = False
) -> InProcessBatches | WorkerBatches | torch.utils.data.DataLoader:
    """The batches of a dataset whose item i is batch i, in order, from `first_batch` on.

    With no `num_workers` the batches are built in the calling thread; with some, by that many
    forked processes (`predict.data.workers`). Neither imports torch. `pin_memory` (for CUDA)
    page-locks each batch so the host-to-device copy is a direct DMA: that takes torch's DataLoader.
    Starting later than batch 0 is how a resumed run skips the rows its checkpoint already holds,
    without decoding them.
    """
    if pin_memory:
        import torch.utils.data

        return torch.utils.data.DataLoader(
            dataset,
            batch_size=None,  # items are whole batches already: the collate function gets each one whole
            sampler=range(first_batch, len(dataset)),
            num_workers=num_workers,
            collate_fn=to_shared,
            prefetch_factor=2 if num_workers else None,
            pin_memory=True,
        )
    if num_workers == 0:
        return InProcessBatches(dataset, first_batch)
    from predict.data.workers import WorkerBatches

    return WorkerBatches(dataset, num_workers, first_batch)
