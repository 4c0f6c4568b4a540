"""Reading the dataframe: a CSV in blocks of rows gives the frame a whole read gives, cell for cell as written."""

from __future__ import annotations

import pandas as pd
import pytest

from predict.data.dataframe import _CSV_BLOCK_ROWS, read_dataframe
from predict.errors import InputError


def test_a_csv_longer_than_a_block_reads_as_one_frame_with_every_cell_as_written(tmp_path):
    rows = 2 * _CSV_BLOCK_ROWS + 5
    path = tmp_path / "rows.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id,text,number\n")
        for row in range(rows):
            text = '"two\nlines, quoted"' if row % 977 == 0 else ("" if row % 5 == 0 else f"words of row {row}")
            handle.write(f"{row:07d},{text},{'NA' if row % 7 == 0 else row / 4}\n")
    frame = read_dataframe(path)
    whole = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    assert list(frame.index) == list(range(rows))
    pd.testing.assert_frame_equal(frame, whole)
    assert frame.loc[_CSV_BLOCK_ROWS, "id"] == f"{_CSV_BLOCK_ROWS:07d}"  # 0016384, not 16384
    assert frame.loc[0, "text"] == "two\nlines, quoted" and frame.loc[5, "text"] == ""
    assert frame.loc[7, "number"] == "NA"


def test_a_csv_with_a_header_only_has_no_rows(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("id,text\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.csv: the dataframe has no rows"):
        read_dataframe(path)
