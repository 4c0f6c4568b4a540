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


def read_dataframe(path: Path) -> pd.DataFrame:
    """Read the whole dataframe.

    Raises:
        InputError: the file is not UTF-8, cannot be parsed, or has no rows.
    """
    try:
        if _is_parquet(path):
            dataframe = pd.read_parquet(path)
        else:
            dataframe = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save the CSV as UTF-8"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: cannot be read as a dataframe: {' '.join(str(error).split())}") from None
    if len(dataframe) == 0:
        raise InputError(f"{path}: the dataframe has no rows")
    return dataframe.reset_index(drop=True)


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
