"""The predictions CSV, written a chunk of rows at a time, is the file pandas writes for the whole table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predict.errors import InputError
from predict.heads.base import RowsByBlock
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


class _Made(RowsByBlock):
    """Strings made per block, recording which blocks were asked for."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.asked: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.values)

    def block(self, start: int, stop: int) -> list[str]:
        self.asked.append((start, stop))
        return self.values[start:stop]


@pytest.mark.parametrize("rows", [0, 1, 7, 9])
@pytest.mark.parametrize("blank", [False, True])
def test_columns_made_by_block_are_written_as_the_same_strings_would_be(tmp_path, monkeypatch, rows, blank):
    monkeypatch.setattr(csv, "CSV_CHUNK_ROWS", 3)
    dataframe = pd.DataFrame({"id": [f"r{row}" for row in range(rows)]})
    answers = [["", 'a "b", c', "ü\nx"][row % 3] for row in range(rows)]
    values = {"pred_x": np.arange(rows) * 0.5, "pred_answer": answers, "pred_k": np.arange(rows)}
    made = _Made(answers)
    blank_rows = (np.arange(rows) % 4 == 1) if blank else None
    write_predictions_csv(tmp_path / "p.csv", dataframe, {**values, "pred_answer": made}, blank_rows=blank_rows)
    assert (tmp_path / "p.csv").read_bytes() == _whole_table(dataframe, values, blank_rows)
    assert made.asked == ([(start, min(start + 3, rows)) for start in range(0, rows, 3)] or [(0, 0)])


def test_a_prediction_column_may_not_replace_an_input_column(tmp_path):
    with pytest.raises(InputError, match=r"already has column\(s\) pred_x, which the predictions would overwrite"):
        write_predictions_csv(tmp_path / "p.csv", pd.DataFrame({"pred_x": [1]}), {"pred_x": [2]})
