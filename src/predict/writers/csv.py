"""`{split}_predictions.csv`: every input column in input order, then the head's `pred_*` columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predict.errors import InputError
from predict.writers._atomic import atomic_path


def write_predictions_csv(
    path: Path, dataframe: pd.DataFrame, prediction_columns: dict[str, Any], *, blank_rows: np.ndarray | None = None
) -> None:
    """Write the input dataframe with the prediction columns appended.

    Args:
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
    predictions = pd.DataFrame(prediction_columns, index=dataframe.index)
    if blank_rows is not None and blank_rows.any():
        predictions = predictions.astype(object)
        predictions.loc[blank_rows, :] = ""
    table = pd.concat([dataframe, predictions], axis=1)
    with atomic_path(path) as temp:
        table.to_csv(temp, index=False)
