"""Long text columns kept in an unlinked file: the same cells, CSV and pickle as the column in memory."""

from __future__ import annotations

import io
import multiprocessing
import pickle

import numpy as np
import pandas as pd
import pytest

from predict.data.dataframe import _FIRST_BLOCK_ROWS, SPILL_MIN_CHARS, read_dataframe
from predict.data.spilled import _READ_ROWS, SpilledTexts, TextStore

CELLS = ["plain", "", 'a "quoted", comma', "two\nlines", "Ünïcödé café — 東京 🙂", " spaces kept "]


def _texts(rows: int) -> list[str]:
    return [f"{CELLS[row % len(CELLS)]} {row}" if row % 7 else "" for row in range(rows)]


def test_cells_read_back_as_written_in_any_order_and_across_blocks_of_one_store():
    texts = _texts(2 * _READ_ROWS + 3)
    store = TextStore()
    first = SpilledTexts.from_texts(pd.Series(texts[:100], dtype=str), store)  # from Arrow's buffers
    rest = SpilledTexts.from_texts(texts[100:], store)  # from a list
    column = SpilledTexts._concat_same_type([first, rest])
    assert column.rows.tolist() == list(range(len(texts))) and store.rows() == len(texts)
    assert list(column) == texts and column.texts() == texts
    assert column[3] == texts[3] and column[-1] == texts[-1]
    assert column[10:20].texts() == texts[10:20]
    picked = [5, 4, 4, len(texts) - 1, 0]
    assert column.take(picked).texts() == [texts[row] for row in picked]
    mask = np.arange(len(texts)) % 3 == 0
    assert column[mask].texts() == [text for text, keep in zip(texts, mask) if keep]
    assert np.asarray(column).tolist() == texts and not column.isna().any()
    with pytest.raises(ValueError, match="no missing value"):
        column.take([0, -1], allow_fill=True)


def test_a_dataframe_with_a_spilled_column_writes_the_csv_and_pickles_as_with_the_column_in_memory():
    texts = _texts(50)
    ids = [f"{row:03d}" for row in range(50)]
    in_memory = pd.DataFrame({"id": pd.array(ids, dtype="str"), "text": pd.array(texts, dtype="str")})
    spilled = pd.DataFrame({"id": pd.array(ids, dtype="str"), "text": SpilledTexts.from_texts(texts)})
    written, expected = io.StringIO(), io.StringIO()
    pd.concat([spilled.iloc[10:30], pd.DataFrame({"p": range(20)}, index=range(10, 30))], axis=1).to_csv(written)
    pd.concat([in_memory.iloc[10:30], pd.DataFrame({"p": range(20)}, index=range(10, 30))], axis=1).to_csv(expected)
    assert written.getvalue() == expected.getvalue()
    assert spilled["text"].iloc[5:9].tolist() == texts[5:9]
    unpickled = pickle.loads(pickle.dumps(spilled))  # Ray: a plain string column of the same cells
    pd.testing.assert_frame_equal(unpickled, in_memory)


def _read_in_child(column: SpilledTexts, rows: slice, sender) -> None:
    sender.send(column[rows].texts())


def test_a_forked_decoding_worker_reads_the_cells_through_the_inherited_descriptor():
    texts = _texts(300)
    column = SpilledTexts.from_texts(texts)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_read_in_child, args=(column, slice(200, 260), sender))
    child.start()
    assert receiver.recv() == texts[200:260]
    child.join()
    assert child.exitcode == 0


def test_read_dataframe_keeps_long_text_columns_in_a_file_and_the_rest_in_memory(tmp_path):
    rows = 3 * _FIRST_BLOCK_ROWS + 17  # the first block, then blocks sized by its bytes
    long = [f"{CELLS[row % len(CELLS)]} " + "context words " * (SPILL_MIN_CHARS // 14 + row % 3) for row in range(rows)]
    frame = pd.DataFrame({"id": [f"{row:05d}" for row in range(rows)], "context": long, "short": _texts(rows)})
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    read = read_dataframe(path)
    assert isinstance(read["context"].array, SpilledTexts)
    assert not isinstance(read["short"].array, SpilledTexts) and not isinstance(read["id"].array, SpilledTexts)
    assert read["context"].tolist() == long and read["short"].tolist() == frame["short"].tolist()
    assert read["id"].tolist() == frame["id"].tolist() and list(read.index) == list(range(rows))
