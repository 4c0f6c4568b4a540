"""The predictions CSV, written a chunk of rows at a time, is the file pandas writes for the whole table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predict.errors import InputError
from predict.writers import csv
from predict.writers.csv import write_predictions_csv


def _whole_table(dataframe: pd.DataFrame, columns: dict, blank_rows: np.ndarray | None) -> bytes:
    """What the writer wrote before it chunked: one table, one `to_csv`."""
    predictions = pd.DataFrame(columns, index=dataframe.index)
    if blank_rows is not None and blank_rows.any():
        predictions = predictions.astype(object)
        predictions.loc[blank_rows, :] = ""
    return pd.concat([dataframe, predictions], axis=1).to_csv(index=False).encode()


@pytest.mark.parametrize("rows", [0, 1, 7, 9])
@pytest.mark.parametrize("blank", [False, True])
def test_chunks_make_the_file_of_the_whole_table(tmp_path, monkeypatch, rows, blank):
    monkeypatch.setattr(csv, "CSV_CHUNK_ROWS", 3)
    rng = np.random.default_rng(rows)
    dataframe = pd.DataFrame(
        {
            "id": [f"r{row}" for row in range(rows)],
            "text": ['a, "quoted"\nline', "ü"] * (rows // 2) + ["x"] * (rows % 2),
        }
    )
    columns = {
        "pred_label": [f"c{row % 2}" for row in range(rows)],
        "pred_p32": rng.random(rows).astype(np.float32),
        "pred_p64": rng.random(rows),
        "pred_k": np.arange(rows),
    }
    blank_rows = (np.arange(rows) % 4 == 1) if blank else None
    write_predictions_csv(tmp_path / "p.csv", dataframe, columns, blank_rows=blank_rows)
    assert (tmp_path / "p.csv").read_bytes() == _whole_table(dataframe, columns, blank_rows)


def test_a_prediction_column_may_not_replace_an_input_column(tmp_path):
    with pytest.raises(InputError, match=r"already has column\(s\) pred_x, which the predictions would overwrite"):
        write_predictions_csv(tmp_path / "p.csv", pd.DataFrame({"pred_x": [1]}), {"pred_x": [2]})
