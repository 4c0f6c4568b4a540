"""Reading the dataframe to score: CSV or Parquet.

CSV cells are read as text, exactly as written, so that every input column is written back unchanged
next to the predictions (no `007` becoming `7`, no empty cell becoming `nan`). Label columns are
parsed to numbers where a head needs them, with errors that name the row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from predict.errors import InputError


def read_columns(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file, without reading its rows."""
    if _is_parquet(path):
        import pyarrow.parquet

        return list(pyarrow.parquet.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0, encoding="utf-8").columns)


_CSV_BLOCK_ROWS = 16_384  # rows parsed at a time: each block's Python strings are gone before the next is read


def read_dataframe(path: Path) -> pd.DataFrame:
    """Read the whole dataframe, a CSV in blocks of rows.

    pandas parses CSV text into Python strings before it stores them in Arrow; read whole, a 10 MB CSV of
    100,000 rows raised the run's peak by 61 MB, in blocks with Arrow on the C allocator by 19 MB (issue 18).

    Raises:
        InputError: the file is not UTF-8, cannot be parsed, or has no rows.
    """
    _arrow_on_the_c_allocator()
    try:
        if _is_parquet(path):
            dataframe = pd.read_parquet(path)
        else:
            blocks = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8", chunksize=_CSV_BLOCK_ROWS
            )
            with blocks:
                dataframe = pd.concat(list(blocks), ignore_index=True)
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save the CSV as UTF-8"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: cannot be read as a dataframe: {' '.join(str(error).split())}") from None
    if len(dataframe) == 0:
        raise InputError(f"{path}: the dataframe has no rows")
    return dataframe.reset_index(drop=True)


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
