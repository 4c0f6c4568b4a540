"""Long text columns kept in a file while a run reads them, not in memory.

A dataframe column of long texts (span prediction's contexts: 175 MB at 100,000 rows) held in memory
made a run's peak grow with its rows; with pandas' copies for the pkl it took 806 MB at 100,000 rows
against 390 MB at 10,000 (issue 18). `read_dataframe` moves such a column, block by block as it
parses the CSV, into an unlinked temporary file: its cells' UTF-8 bytes one after another, and their
offsets in memory (8 bytes a row). The dataframe keeps it as a `SpilledTexts` column, a pandas
extension array whose slices read their cells with `os.pread` when asked: the loader's batches, the
CSV's blocks of rows, the pkl's strings one at a time. Reads go through the page cache, which is not
the process's RSS.

The file has no name once created, so nothing is left behind however the run ends; forked decoding
workers inherit its descriptor (`pread` takes no shared position). Pickled (Ray actors), a column
becomes an ordinary string array of its cells.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.extensions import ExtensionArray, ExtensionDtype, take

_READ_ROWS = 4096  # cells read with one pread when a column is iterated


class TextStore:
    """Texts appended to an unlinked temporary file; cell i is bytes `offsets[i]:offsets[i + 1]`."""

    def __init__(self) -> None:
        handle, path = tempfile.mkstemp(prefix="predict-texts-")
        os.unlink(path)
        self.descriptor = handle
        self._offsets = np.zeros(1, dtype=np.int64)
        self.size = 0

    def append(self, texts: Sequence[str] | pd.Series) -> np.ndarray:
        """Write `texts` at the end, their UTF-8 bytes as Arrow holds them (no Python string made); their rows here.

        Raises:
            ValueError: a cell is missing (a CSV read as text has none).
        """
        first = self.rows()
        if not len(texts):
            return np.arange(first, first, dtype=np.int64)
        arrow = pa.array(texts.array if isinstance(texts, pd.Series) else texts)
        chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
        if not all(pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type) for chunk in chunks):
            raise ValueError(f"a column of texts kept on disk holds texts, not {arrow.type}")
        if arrow.null_count:
            raise ValueError("a column of texts kept on disk cannot hold a missing value")
        for chunk in chunks:
            width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
            offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
            start, stop = int(offsets[0]), int(offsets[-1])
            data = memoryview(chunk.buffers()[2] or b"")[start:stop]
            written = 0
            while written < len(data):
                written += os.pwrite(self.descriptor, data[written:], self.size + written)
            self._offsets = np.concatenate([self._offsets, self.size + (offsets[1:].astype(np.int64) - start)])
            self.size += len(data)
        return np.arange(first, self.rows(), dtype=np.int64)

    def rows(self) -> int:
        return len(self._offsets) - 1

    def read(self, rows: np.ndarray) -> list[str]:
        """The texts of `rows` (int64), in that order; a run of consecutive rows is read with one pread."""
        texts: list[str] = []
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(rows, breaks) if len(rows) else []:
            start, stop = int(self._offsets[run[0]]), int(self._offsets[run[-1] + 1])
            data = os.pread(self.descriptor, stop - start, start)
            if len(data) != stop - start:
                raise OSError(f"the temporary file of a text column ended {stop - start - len(data)} bytes early")
            bounds = self._offsets[run[0] : run[-1] + 2] - start
            texts += [data[a:b].decode("utf-8") for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
        return texts

    def __del__(self) -> None:
        os.close(self.descriptor)


class SpilledTextDtype(ExtensionDtype):
    """The dtype of a `SpilledTexts` column: texts, none missing."""

    name = "spilled_text"
    type = str
    na_value = np.nan

    @classmethod
    def construct_array_type(cls) -> type[SpilledTexts]:
        return SpilledTexts


class SpilledTexts(ExtensionArray):
    """Some rows of a `TextStore`, as a pandas column of `str`; cells are read from the file when asked."""

    def __init__(self, store: TextStore, rows: np.ndarray) -> None:
        self.store = store
        self.rows = rows

    @classmethod
    def from_texts(cls, texts: Sequence[str] | pd.Series, store: TextStore | None = None) -> SpilledTexts:
        store = store if store is not None else TextStore()
        return cls(store, store.append(texts))

    # pandas' ExtensionArray interface

    @classmethod
    def _from_sequence(cls, scalars: Any, *, dtype: Any = None, copy: bool = False) -> SpilledTexts:
        return cls.from_texts([str(value) for value in scalars])

    @classmethod
    def _from_factorized(cls, values: np.ndarray, original: SpilledTexts) -> SpilledTexts:
        return cls.from_texts(list(values))

    @classmethod
    def _concat_same_type(cls, to_concat: Sequence[SpilledTexts]) -> SpilledTexts:
        stores = {id(array.store) for array in to_concat}
        if len(stores) == 1:
            return cls(to_concat[0].store, np.concatenate([array.rows for array in to_concat]))
        return cls.from_texts([text for array in to_concat for text in array.texts()])

    @property
    def dtype(self) -> SpilledTextDtype:
        return SpilledTextDtype()

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, (int, np.integer)):
            return self.store.read(self.rows[[item]])[0]
        item = pd.api.indexers.check_array_indexer(self, item) if not isinstance(item, slice) else item
        return type(self)(self.store, self.rows[item])

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), _READ_ROWS):
            yield from self.store.read(self.rows[start : start + _READ_ROWS])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = np.empty(len(self), dtype=object)
        array[:] = self.texts()
        return array if dtype is None or np.dtype(dtype) == object else array.astype(dtype)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return np.asarray(self) == (np.asarray(other, dtype=object) if isinstance(other, Sequence) else other)

    def __reduce__(self) -> tuple:
        return pd.array, (self.texts(), "str")

    def texts(self) -> list[str]:
        """Every cell, read now."""
        return self.store.read(self.rows)

    def isna(self) -> np.ndarray:
        return np.zeros(len(self), dtype=bool)

    def take(self, indices: Any, *, allow_fill: bool = False, fill_value: Any = None) -> SpilledTexts:
        if allow_fill and np.any(np.asarray(indices) < 0):
            raise ValueError("a column of texts kept on disk has no missing value to fill with")
        return type(self)(self.store, take(self.rows, indices))

    def copy(self) -> SpilledTexts:
        return type(self)(self.store, self.rows.copy())
