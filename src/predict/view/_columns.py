"""Reading `pred_*` and label columns of a predictions CSV back as numbers, with errors naming the cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from predict.errors import InputError


def require_columns(frame: pd.DataFrame, columns: list[str], *, source: Path) -> None:
    """Raise unless every one of `columns` is in `frame`.

    Raises:
        InputError: naming the missing columns and the file.
    """
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)}; the file does not match its report.json "
            "(edited by hand, or written by another run?)"
        )


def float_columns(frame: pd.DataFrame, columns: list[str], *, source: Path) -> np.ndarray:
    """The columns as float64[N, len(columns)].

    Raises:
        InputError: a column is missing, or a cell is empty or not a number, naming row and column.
    """
    require_columns(frame, columns, source=source)
    values = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        parsed = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(parsed))
        if bad.size:
            row = int(bad[0])
            raise InputError(
                f"{source.name}: row {row}, column '{column}': expected a number, got {frame[column].iloc[row]!r}"
            )
        values[:, j] = parsed
    return values
