"""List-valued dataframe cells: Parquet lists, or JSON lists in CSV (FORMATS.md "Dataframes in").

Detection and segmentation dataframes hold one row per image, with one list per label column (the
boxes' coordinates, the class names, the RLE masks of that image).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predict.errors import InputError


def list_cell(value: Any, *, row: int, column: str, source: Path) -> list:
    """One cell as a Python list.

    A Parquet list arrives as an array or list; a CSV cell must be a JSON list (`["a", "b"]`); an
    empty CSV cell is an empty list.

    Raises:
        InputError: naming the row and column, when the cell is not a list.
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    raise InputError(
        f'{source.name}: row {row}, column \'{column}\': expected a list (a JSON list such as ["a", "b"] in CSV, '
        f"or a Parquet list), got {str(value)[:60]!r}"
    )


def list_columns(dataframe: pd.DataFrame, columns: tuple[str, ...], *, source: Path) -> Iterator[list[list]]:
    """Several list columns read together, a row at a time: row[j] is column j's list; lists of a row must be
    equally long.

    Raises:
        InputError: a cell is not a list, or a row's lists differ in length, naming the row.
    """
    for row in range(len(dataframe)):
        cells = [list_cell(dataframe[column].iloc[row], row=row, column=column, source=source) for column in columns]
        lengths = {len(cell) for cell in cells}
        if len(lengths) > 1:
            detail = ", ".join(f"{column}: {len(cell)}" for column, cell in zip(columns, cells))
            raise InputError(f"{source.name}: row {row}: the lists of one image must be equally long ({detail})")
        yield cells
