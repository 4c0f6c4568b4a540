"""stack_rows: a split-level array stacked from rows, on disk once big, pickled as the array in memory."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from predict.writers import row_arrays
from predict.writers.pickle import write_raw_predictions
from predict.writers.row_arrays import iter_rows, read_rows, stack_rows


def rows(count: int) -> list[np.ndarray]:
    return [np.full((5, 7, 2), index, dtype=np.int32) for index in range(count)]


def test_a_small_stack_stays_in_memory(tmp_path):
    stacked = stack_rows(iter(rows(3)), count=3, row_shape=(5, 7, 2), dtype=np.int32, folder=tmp_path)
    assert type(stacked) is np.ndarray
    assert_array_equal(stacked, np.stack(rows(3)))
    assert list(tmp_path.iterdir()) == []


def test_a_big_stack_is_built_on_disk_and_pickled_as_the_array(tmp_path, monkeypatch):
    monkeypatch.setattr(row_arrays, "SPILL_STACK_BYTES", 1024)  # 4 rows of 280 bytes reach it
    stacked = stack_rows(iter(rows(4)), count=4, row_shape=(5, 7, 2), dtype=np.int32, folder=tmp_path / "out")
    assert isinstance(stacked, np.memmap) and not stacked.flags.writeable
    assert_array_equal(stacked, np.stack(rows(4)))
    [spilled] = (tmp_path / "out").iterdir()
    assert spilled.name.startswith(".rows-") and spilled.suffix == ".npy"
    write_raw_predictions(tmp_path / "raw.pkl", {"maps": stacked, "names": ["a", "b"]})
    assert (tmp_path / "raw.pkl").read_bytes() == pickle.dumps({"maps": np.stack(rows(4)), "names": ["a", "b"]}, 4)
    del stacked
    gc.collect()
    assert not spilled.exists()  # removed with the map


@pytest.mark.parametrize(
    ("given", "count", "message"),
    [
        ([*rows(3), np.zeros((5, 7, 2), dtype=np.int64)], 4, r"row 3 is int64\[5, 7, 2\], not int32\[5, 7, 2\]"),
        (rows(3), 4, "3 rows given, 4 announced"),
    ],
)
def test_rows_that_do_not_fit_leave_no_file(tmp_path, monkeypatch, given, count, message):
    monkeypatch.setattr(row_arrays, "SPILL_STACK_BYTES", 1024)
    with pytest.raises(ValueError, match=message):
        stack_rows(iter(given), count=count, row_shape=(5, 7, 2), dtype=np.int32, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_rows_of_an_array_on_disk_are_read_by_plain_reads_a_block_at_a_time(tmp_path, monkeypatch):
    array = np.arange(10 * 3 * 2, dtype=np.int64).reshape(10, 3, 2)
    np.save(tmp_path / "rows.npy", array)
    on_disk = np.load(tmp_path / "rows.npy", mmap_mode="r")
    block = read_rows(on_disk, 3, 7)
    assert type(block) is np.ndarray and not isinstance(block, np.memmap)
    assert_array_equal(block, array[3:7])
    assert_array_equal(read_rows(on_disk, 8, 20), array[8:]) and read_rows(on_disk, 10, 12).shape == (0, 3, 2)
    # Part of the file (a memmap's slice keeps the file's offset): read through the map, not from the file's start.
    assert_array_equal(read_rows(on_disk[2:], 0, 3), array[2:5])
    monkeypatch.setattr(row_arrays, "BLOCK_ROWS", 3)
    assert_array_equal(np.stack(list(iter_rows(on_disk))), array)
    assert [row.tolist() for row in iter_rows([array[0], array[1]])] == [array[0].tolist(), array[1].tolist()]


def test_predictions_a_head_names_go_to_disk_whatever_the_size_of_their_rows(tmp_path):
    class_ids = np.arange(8).reshape(4, 2)
    first = row_arrays.DiskRows(tmp_path, rows=4, keys=("class_ids",))
    kept = first.take({"class_ids": class_ids[:2], "scores": np.ones(2)}, start=0, valid=np.array([True, False]))
    assert list(kept) == ["scores"]
    first.close()
    resumed = row_arrays.DiskRows(tmp_path, rows=4, keys=("class_ids",))  # a resumed run reopens the file
    assert list(resumed.take({"class_ids": class_ids[2:]}, start=2, valid=np.ones(2, dtype=bool))) == []
    on_disk = resumed.close()["class_ids"]
    assert isinstance(on_disk, np.memmap) and not on_disk.flags.writeable
    assert_array_equal(on_disk, class_ids)  # integers of a row that could not be read are kept as given
