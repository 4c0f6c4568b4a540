"""Reading the dataframe to score: CSV or Parquet.

CSV cells are read as text, exactly as written, so that every input column is written back unchanged
next to the predictions (no `007` becoming `7`, no empty cell becoming `nan`). Label columns are
parsed to numbers where a head needs them, with errors that name the row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from predict.data.spilled import SpilledTexts, TextStore
from predict.errors import InputError
from predict.heap import return_freed_memory


def read_columns(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file, without reading its rows."""
    if _is_parquet(path):
        import pyarrow.parquet

        return list(pyarrow.parquet.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0, encoding="utf-8").columns)


_CSV_BLOCK_ROWS = 16_384  # rows parsed at a time: each block's Python strings are gone before the next is read
_CSV_BLOCK_BYTES = 8 * 2**20  # ... or fewer rows, where that many would hold more text than this
_FIRST_BLOCK_ROWS = 1024  # read first, to size the blocks after it and to find the long text columns
SPILL_MIN_CHARS = 256  # a CSV column whose cells average this many characters is kept in a file (predict.data.spilled)


def read_dataframe(path: Path) -> pd.DataFrame:
    """Read the whole dataframe, a CSV in blocks of rows; long text columns stay in a file, not in memory.

    pandas parses CSV text into Python strings before it stores them in Arrow; read whole, a 10 MB CSV of
    100,000 rows raised the run's peak by 61 MB, in blocks with Arrow on the C allocator by 19 MB (issue 18).
    A column whose cells average `SPILL_MIN_CHARS` characters or more in the first block (contexts,
    documents) is moved, block by block, into a temporary file (`SpilledTexts`).

    Raises:
        InputError: the file is not UTF-8, cannot be parsed, or has no rows.
    """
    _arrow_on_the_c_allocator()
    try:
        dataframe = pd.read_parquet(path) if _is_parquet(path) else _read_csv_blocks(path)
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save the CSV as UTF-8"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: cannot be read as a dataframe: {' '.join(str(error).split())}") from None
    return_freed_memory()  # the blocks' parsed strings
    if len(dataframe) == 0:
        raise InputError(f"{path}: the dataframe has no rows")
    return dataframe.reset_index(drop=True)


def _read_csv_blocks(path: Path) -> pd.DataFrame:
    """Every cell as text; the long text columns as `SpilledTexts`, each block's cells written as it is read."""
    blocks = pd.read_csv(
        path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8", chunksize=_CSV_BLOCK_ROWS
    )
    with blocks:
        first = blocks.get_chunk(_FIRST_BLOCK_ROWS)
        stores = {column: TextStore() for column in _long_text_columns(first)}
        bytes_per_row = max(1.0, sum(first[column].str.len().sum() for column in first.columns) / max(len(first), 1))
        block_rows = int(min(_CSV_BLOCK_ROWS, max(_FIRST_BLOCK_ROWS, _CSV_BLOCK_BYTES // bytes_per_row)))
        read = [_spilled(first, stores)]
        while True:
            try:
                read.append(_spilled(blocks.get_chunk(block_rows), stores))
            except StopIteration:
                break
    return pd.concat(read, ignore_index=True)


def _long_text_columns(block: pd.DataFrame) -> list[str]:
    """The columns whose cells average `SPILL_MIN_CHARS` characters or more (none where files cannot be read
    by offset: `os.pread` is POSIX)."""
    if not hasattr(os, "pread") or not len(block):
        return []
    return [column for column in block.columns if block[column].str.len().mean() >= SPILL_MIN_CHARS]


def _spilled(block: pd.DataFrame, stores: dict[str, TextStore]) -> pd.DataFrame:
    for column, store in stores.items():
        block[column] = SpilledTexts.from_texts(block[column], store)
    return block


def _arrow_on_the_c_allocator() -> None:
    """Arrow's buffers (pandas' strings, Parquet columns) from malloc, for the whole process: Arrow's own
    mimalloc pool kept the 25 MB that reading 100,000 rows freed resident for the rest of the run, where
    nothing else allocates from Arrow to reuse it (issue 18)."""
    import pyarrow

    if pyarrow.default_memory_pool().backend_name != "system":
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())


def numeric_labels(dataframe: pd.DataFrame, columns: tuple[str, ...], *, source: Path) -> np.ndarray:
    """Label columns as a float64 (n, m) array.

    Raises:
        InputError: naming the first row and column whose value is empty or not a number.
    """
    labels = np.empty((len(dataframe), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        values = pd.to_numeric(dataframe[column].replace("", np.nan), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            row = int(bad[0])
            raise InputError(
                f"{source.name}: row {row}, label column '{column}': expected a number, got "
                f"{dataframe[column].iloc[row]!r} ({bad.size} such row(s)); fill or drop them, "
                f"or score them as data.split: test without labels"
            )
        labels[:, j] = values
    return labels


def text_labels(dataframe: pd.DataFrame, column: str, *, source: Path) -> np.ndarray:
    """A categorical label column as an object array of strings.

    Raises:
        InputError: naming the first row whose label is empty.
    """
    values = dataframe[column]
    empty = np.flatnonzero(values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy())
    if empty.size:
        raise InputError(
            f"{source.name}: row {int(empty[0])}, label column '{column}' is empty ({empty.size} such row(s))"
        )
    return values.astype(str).to_numpy(dtype=object)


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")
