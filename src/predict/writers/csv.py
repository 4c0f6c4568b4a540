"""`{split}_predictions.csv`: every input column in input order, then the head's `pred_*` columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from predict.errors import InputError
from predict.writers._atomic import atomic_path


def write_predictions_csv(path: Path, dataframe: pd.DataFrame, prediction_columns: dict[str, Any]) -> None:
    """Write the input dataframe with the prediction columns appended.

    Raises:
        InputError: the input already has a column of a prediction's name (it would be overwritten).
    """
    clashes = [name for name in prediction_columns if name in dataframe.columns]
    if clashes:
        raise InputError(
            f"the dataframe already has column(s) {', '.join(clashes)}, which the predictions would overwrite; rename them"
        )
    table = pd.concat([dataframe, pd.DataFrame(prediction_columns, index=dataframe.index)], axis=1)
    with atomic_path(path) as temp:
        table.to_csv(temp, index=False)
