"""What every head does, and the steps heads share."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.context import ChunkContext, ImageContext, WindowContext, WordContext
from predict.data.spilled import SpilledTexts
from predict.enums import ROW_COLUMN
from predict.errors import ConfigError
from predict.runners.base import TensorSpec
from predict.writers.row_arrays import read_rows


class Head(ABC):
    """Turns raw model outputs into the arrays, CSV columns and metrics of one problem type.

    `build` reads and checks everything up front (the model's outputs, the labels), so a bad label
    fails before any image is decoded; `postprocess` is then pure NumPy, batch by batch.

    Attributes:
        context_type: the `Batch.context` class `postprocess` reads (`predict.data.context`), or None
            for heads that read no context; the problem type's loader must build it.
        notes: decisions a user should see in the summary (e.g. which activation was applied and why).
    """

    Config: ClassVar[type]
    context_type: ClassVar[type | None] = None
    # Attributes holding one label per dataframe row (read in `build`), subset by `restricted_to`.
    row_attributes: ClassVar[tuple[str, ...]] = ("labels",)
    # pkl keys that describe the model, not a row (class names, label column names): a server states
    # them once, in the model's metadata, instead of answering them with every request.
    model_keys: ClassVar[tuple[str, ...]] = ()
    # Predictions a run keeps on disk, not in memory, whatever the size of their rows (predict.writers.row_arrays):
    # they come back as read-only memory maps, which the head reads a block of rows at a time (`iter_rows`,
    # `read_rows`); object arrays (ragged lists) stay in the checkpoint's chunk files, and come back as a
    # `checkpoint.RowArrays` that reads a chunk at a time.
    rows_on_disk: ClassVar[tuple[str, ...]] = ()
    # Whether the pkl and CSV need every row of the split at once (`finalize`: nearest neighbours); a
    # server then answers `row_predictions` only.
    split_level: ClassVar[bool] = False
    notes: list[str]

    @classmethod
    @abstractmethod
    def build(cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame) -> Head:
        """Check the model's outputs against the config and read the labels, if any.

        Raises:
            ConfigError: the model's outputs do not fit the config.
            InputError: a label cell is empty or invalid, naming its row.
        """

    @abstractmethod
    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """Raw outputs of one batch to per-row arrays (first axis = rows); `batch.context` has per-row facts."""

    def finalize(self, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Split-level step on all rows' predictions at once (e.g. nearest neighbours); none by default."""
        return predictions

    @abstractmethod
    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        """The `pred_*` columns added to the CSV, in order, one value per row."""

    @abstractmethod
    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        """The dict pickled into `{split}_raw_predictions.pkl`, keys exactly as FORMATS.md names them."""

    def csv_table(
        self, dataframe: pd.DataFrame, predictions: dict[str, np.ndarray], *, valid: np.ndarray
    ) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray]:
        """The CSV's input part, its prediction columns and its rows left blank (bool), one CSV row each.

        By default the input dataframe as it is, `prediction_columns`, and the rows that were not
        read. Heads whose CSV repeats rows (semantic segmentation: one per class) or replaces label
        columns by predictions of the same name (detection) override it.
        """
        return dataframe, self.prediction_columns(predictions), ~valid

    def row_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        """The pkl's keys for these rows alone, from `postprocess` with no split-level step: what a server
        answers per request. By default `raw_predictions` without the `model_keys`."""
        raw = self.raw_predictions(predictions, dataframe)
        return {
            key: value.whole() if isinstance(value, RowsByBlock) else value
            for key, value in raw.items()
            if key not in self.model_keys
        }

    @abstractmethod
    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics under their H2O names, against the labels read in `build`; empty without labels."""

    def unlabelled(self) -> Head:
        """A copy without the dataframe's labels, for rows that are not the dataframe's (a server's requests):
        `postprocess` then compares nothing with them and `csv_table` adds no label columns."""
        copied = copy.copy(self)
        for name in self.row_attributes:
            setattr(copied, name, None)
        return copied

    def restricted_to(self, rows: np.ndarray) -> Head:
        """A copy whose per-row labels keep only `rows` (bool[n]): metrics of the rows that were read."""
        restricted = copy.copy(self)
        for name in self.row_attributes:
            values = getattr(self, name)
            if isinstance(values, np.ndarray):
                setattr(restricted, name, values[rows])
            elif isinstance(values, (pd.Series, pd.DataFrame)):
                # label columns as read (token classification, seq2seq, semantic segmentation)
                setattr(restricted, name, values[rows].reset_index(drop=True))
            elif values is not None:
                setattr(restricted, name, [value for value, keep in zip(values, rows) if keep])
        return restricted


_ContextT = TypeVar("_ContextT", ImageContext, WordContext, WindowContext, ChunkContext)


def context_of(batch: Batch, expected: type[_ContextT], *, head: Head) -> _ContextT:
    """The batch's context, checked to be the class a head reads.

    Raises:
        TypeError: the batch's loader built another context (or none), so the head and the loader
            of its problem type disagree; caught at the first batch.
    """
    context = batch.context
    if not isinstance(context, expected):
        got = "no context (None)" if context is None else type(context).__name__
        raise TypeError(
            f"{type(head).__name__} reads a batch context {expected.__name__} but its loader built {got}: "
            "the problem type's loader and head do not match"
        )
    return context


def select_output(outputs: tuple[TensorSpec, ...], name: str | None, *, model_name: str) -> TensorSpec:
    """The model output a head reads: the one named by `head.output_name`, or the only one.

    Raises:
        ConfigError: the name is unknown, or the model has several outputs and none was named.
    """
    names = [spec.name for spec in outputs]
    if name is not None:
        for spec in outputs:
            if spec.name == name:
                return spec
        raise ConfigError(f"head.output_name: model {model_name} has no output '{name}' (outputs: {', '.join(names)})")
    if len(outputs) != 1:
        raise ConfigError(
            f"head.output_name is missing: model {model_name} has {len(outputs)} outputs ({', '.join(names)}); name one"
        )
    return outputs[0]


def output_width(spec: TensorSpec, *, model_name: str) -> int | None:
    """Values per row of a (batch,) or (batch, k) output; None when k is dynamic.

    Raises:
        ConfigError: the output has more than two axes.
    """
    if len(spec.shape) == 1:
        return 1
    if len(spec.shape) == 2:
        return spec.shape[1]
    shape = ", ".join("?" if dim is None else str(dim) for dim in spec.shape)
    raise ConfigError(f"model {model_name}: output '{spec.name}' has shape ({shape}); expected (batch, values)")


def column_values(dataframe: pd.DataFrame, column: str) -> np.ndarray:
    """A dataframe column as the 1-D array stored under its name in the pkl; `row` (an array task's
    rows without an id column, FORMATS.md "Arrays and tables") is 0..n-1 unless the dataframe has one."""
    if column == ROW_COLUMN and column not in dataframe.columns:
        return np.arange(len(dataframe))
    values = dataframe[column].array
    if isinstance(values, SpilledTexts):  # long texts stay in their file: the pkl writer reads them in blocks
        return values
    return dataframe[column].to_numpy()


def object_array(values: list) -> np.ndarray:
    """A 1-D object array holding `values` as they are (lists stay lists, even of equal length)."""
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        array[index] = value
    return array


def rows_by_values(raw: np.ndarray, *, rows: int) -> np.ndarray:
    """A (batch,) or (batch, k) output as a float32 (batch, k) array."""
    return np.asarray(raw, dtype=np.float32).reshape(rows, -1)


class NamesByRow(Sequence):
    """Per row, the list of names its index array picks from `names` (token classification's predicted tags).

    The lists are made when read, one row at a time: the index arrays stay where they are (a run's, in the
    checkpoint's files: `predict.writers.checkpoint.RowArrays`). Every row's list of tags, held from scoring
    to the last file, was 18 MB at 100,000 rows (issue 18). The pkl writer pickles this as the object array
    of lists it stands for (`predict.writers.pickle`).
    """

    def __init__(self, indices: Sequence[np.ndarray], names: np.ndarray) -> None:
        self.indices = indices
        self.names = names  # object[k]: the same string objects in every row

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, row: int) -> list[str]:
        return list(self.names[self.indices[row]])

    def __iter__(self) -> Iterator[list[str]]:
        for indices in self.indices:
            yield list(self.names[indices])


class RowsByBlock(Sequence):
    """Per-row values made a block of rows at a time when read (span prediction's answers, cut from contexts kept
    on disk; semantic segmentation's RLE strings, made from runs kept on disk), never all at once: the CSV writer
    takes a block per chunk of rows, the pkl writer pickles them as the object array they stand for, without the
    memo (`predict.writers.pickle`).

    Attributes:
        item_shape: () when each row's value is one item of a 1-D object array (a string, a list); (k,) when it
            is a list of k items that make the object array's second axis (semantic segmentation's (n, classes)).
    """

    BLOCK_ROWS = 4096
    item_shape: tuple[int, ...] = ()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def block(self, start: int, stop: int) -> list:
        """The values of rows `start:stop`, in order."""

    def __getitem__(self, row: int) -> Any:
        if not -len(self) <= row < len(self):
            raise IndexError(row)
        row %= len(self)
        return self.block(row, row + 1)[0]

    def __iter__(self) -> Iterator[Any]:
        for start in range(0, len(self), self.BLOCK_ROWS):
            yield from self.block(start, min(start + self.BLOCK_ROWS, len(self)))

    def whole(self) -> np.ndarray:
        """The object array these rows stand for, all at once (a server's few rows, the npz)."""
        if not self.item_shape:
            return object_array(list(self))
        array = np.empty((len(self), *self.item_shape), dtype=object)
        for row, items in enumerate(self):
            array[row] = items
        return array


class LastBlock:
    """Values made for a block of rows at a time by `make(start, stop)`, the last block kept: the CSV writer asks
    each of several columns made from one block (span prediction's answers, detection's six columns) in turn."""

    def __init__(self, rows: int, make: Callable[[int, int], Any]) -> None:
        self.rows = rows
        self.make = make
        self.last: tuple[int, int, Any] | None = None

    def __len__(self) -> int:
        return self.rows

    def block(self, start: int, stop: int) -> Any:
        if self.last is None or self.last[:2] != (start, stop):
            self.last = (start, stop, self.make(start, stop))
        return self.last[2]


class BlockColumn(RowsByBlock):
    """One column's values, picked by `pick` from what `blocks` (a `LastBlock`, or rows by block) gives for the
    same rows."""

    def __init__(self, blocks: LastBlock | RowsByBlock, pick: Callable[[Any], list]) -> None:
        self.blocks = blocks
        self.pick = pick

    def __len__(self) -> int:
        return len(self.blocks)

    def block(self, start: int, stop: int) -> list:
        return self.pick(self.blocks.block(start, stop))


class NamesByCode(RowsByBlock):
    """Per row, the k names its codes pick from `names` (object detection's class names of its 100 boxes; code -1
    picks the last name): the (n, k) object array they stand for, made a block of rows at a time from codes that may
    be on disk. The pkl writer pickles it as that array, each name written once (`predict.writers.pickle`)."""

    def __init__(self, codes: np.ndarray, names: np.ndarray) -> None:
        self.codes = codes  # int[n, k], in memory or a memory map
        self.names = names  # object[m]: the same string objects in every row
        self.item_shape = tuple(codes.shape[1:])

    def __len__(self) -> int:
        return len(self.codes)

    def block(self, start: int, stop: int) -> list:
        return list(self.names[read_rows(self.codes, start, stop)])

    def code_blocks(self) -> Iterator[np.ndarray]:
        """The codes of every row, flat in C order, a block of rows at a time, each an index into `names`."""
        for start in range(0, len(self), self.BLOCK_ROWS):
            codes = read_rows(self.codes, start, start + self.BLOCK_ROWS).reshape(-1)
            yield np.where(codes < 0, codes + len(self.names), codes)


class TableByBlock(ABC):
    """A CSV's input part made a block of its rows at a time, never whole (semantic segmentation's: each input
    row once per class, with that class's true RLE); the CSV writer takes a block per chunk of rows."""

    columns: list[str]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def block(self, start: int, stop: int) -> pd.DataFrame:
        """Rows `start:stop` (the writer sets their index)."""
