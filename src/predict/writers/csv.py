"""`{split}_predictions.csv`: every input column in input order, then the head's `pred_*` columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predict.errors import InputError
from predict.heads.base import RowsByBlock, TableByBlock
from predict.writers._atomic import atomic_path

# Rows formatted at once. pandas formats a CSV a chunk of rows at a time anyway (each value on its own),
# so the file is the same; the whole table at once peaked 5 MB higher at 100,000 rows of text (issue 18).
CSV_CHUNK_ROWS = 8192


def write_predictions_csv(
    path: Path,
    dataframe: pd.DataFrame | TableByBlock,
    prediction_columns: dict[str, Any],
    *,
    blank_rows: np.ndarray | None = None,
) -> None:
    """Write the input dataframe with the prediction columns appended, `CSV_CHUNK_ROWS` rows at a time.

    Args:
        dataframe: the input part, whole or made a block at a time.
        blank_rows: bool[n]; rows whose prediction cells stay empty (rows that could not be read).

    Raises:
        InputError: the input already has a column of a prediction's name (it would be overwritten).
    """
    clashes = [name for name in prediction_columns if name in dataframe.columns]
    if clashes:
        raise InputError(
            f"the dataframe already has column(s) {', '.join(clashes)}, which the predictions would overwrite; rename "
            "them"
        )
    by_block = {name: values for name, values in prediction_columns.items() if isinstance(values, RowsByBlock)}
    whole = {name: values for name, values in prediction_columns.items() if name not in by_block}
    index = dataframe.index if isinstance(dataframe, pd.DataFrame) else pd.RangeIndex(len(dataframe))
    predictions = pd.DataFrame(whole, index=index)  # whole: one dtype per column, as before
    any_blank = blank_rows is not None and bool(blank_rows.any())
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8", newline="") as handle:
        for start in range(0, len(dataframe), CSV_CHUNK_ROWS) or [0]:
            rows = slice(start, start + CSV_CHUNK_ROWS)
            chunk = predictions.iloc[rows]
            if by_block:  # strings made for these rows only (span answers, mask RLEs), in the columns' order
                index = chunk.index
                stop = start + len(index)
                made = {name: pd.Series(values.block(start, stop), index=index) for name, values in by_block.items()}
                chunk = pd.DataFrame(
                    {name: chunk[name] if name in whole else made[name] for name in prediction_columns}
                )
            if any_blank:  # every chunk as object, as the whole table was: a float is written the same in all
                chunk = chunk.astype(object)
                chunk.loc[blank_rows[rows], :] = ""
            if isinstance(dataframe, pd.DataFrame):
                inputs = dataframe.iloc[rows]
            else:
                inputs = dataframe.block(start, start + len(chunk)).set_axis(chunk.index)
            table = pd.concat([inputs, chunk], axis=1)
            table.to_csv(handle, index=False, header=start == 0)
