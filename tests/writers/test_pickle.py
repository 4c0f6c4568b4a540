"""The pkl holds arrays however large: arrays on disk are pickled from their files, as pickle.dumps would write them."""

from __future__ import annotations

import pickle
import pickletools
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from predict.data.spilled import SpilledTexts
from predict.heads.base import NamesByCode, RowsByBlock
from predict.writers.checkpoint import RowArrays, StoredRows, save_arrays
from predict.writers.pickle import write_raw_predictions

MIB = 2**20


def on_disk(path, array: np.ndarray) -> np.memmap:
    np.save(path, array)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize(
    "shape",
    [(3, 2, 4, 4), (5, 3, 128, 128), (1,)],
    ids=["inside-a-frame", "past-the-frame-size", "one-value"],
)
def test_a_memmap_is_pickled_byte_for_byte_as_the_array_in_memory(tmp_path, shape):
    array = np.random.default_rng(0).random(shape).astype(np.float16)
    masks = on_disk(tmp_path / "masks.npy", array)
    # The same memmap twice: the second is a reference to the first, as for any pickled object.
    write_raw_predictions(tmp_path / "raw.pkl", {"masks": masks, "again": masks, "class_names": ["a", "b"]})
    written = (tmp_path / "raw.pkl").read_bytes()
    assert written == pickle.dumps({"masks": array, "again": array, "class_names": ["a", "b"]}, protocol=4)
    raw = pickle.loads(written)
    assert type(raw["masks"]) is np.ndarray and raw["masks"].dtype == np.float16 and raw["masks"].flags.writeable
    assert_array_equal(raw["masks"], array) and raw["again"] is raw["masks"]


def test_part_of_a_memmap_and_other_layouts_are_pickled_as_arrays(tmp_path):
    array = np.arange(2 * 300 * 100, dtype=np.float32).reshape(2, 300, 100)
    masks = on_disk(tmp_path / "masks.npy", array)
    raw_file = tmp_path / "raw.bin"  # a memmap of a file without .npy header
    array.tofile(raw_file)
    values = {
        "rows": masks[1:],
        "transposed": masks.T,
        "raw": np.memmap(raw_file, dtype=np.float32, mode="r", shape=array.shape),
    }
    write_raw_predictions(tmp_path / "raw.pkl", values)
    with (tmp_path / "raw.pkl").open("rb") as handle:
        raw = pickle.load(handle)
    assert all(type(value) is np.ndarray for value in raw.values())
    assert_array_equal(raw["rows"], array[1:]) and assert_array_equal(
        raw["transposed"], array.T
    ) and assert_array_equal(raw["raw"], array)


def test_masks_past_the_old_256_mib_limit_unpickle_as_arrays_and_the_writer_holds_none_of_them(tmp_path):
    # 257 MiB of float16: past the former output.pkl_array_limit_mb default (256), above which the pkl held a file name.
    shape = (2, 3, 4864, 4624)
    path = tmp_path / "masks.npy"
    with path.open("wb") as handle:  # a sparse file: zeros cost no disk, two marked rows tell the payload's order
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f2", "fortran_order": False, "shape": shape})
        offset = handle.tell()
        handle.truncate(offset + 2 * int(np.prod(shape)))
        handle.seek(offset + 2 * int(np.prod(shape[1:])) - 6)
        handle.write(np.array([1.5, 2.5, 3.5], dtype=np.float16).tobytes())  # the last 3 values of row 0
    masks = np.load(path, mmap_mode="r")
    assert masks.nbytes > 256 * MIB
    tracemalloc.start()
    try:
        write_raw_predictions(tmp_path / "raw.pkl", {"masks": masks, "image_path": np.array(["a", "b"], dtype=object)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * MIB  # the 16 MiB copy buffer, not the 257 MiB array (pickle.dump of it in memory: twice that)
    with (tmp_path / "raw.pkl").open("rb") as handle:
        raw = pickle.load(handle)
    assert type(raw["masks"]) is np.ndarray and raw["masks"].shape == shape and raw["masks"].dtype == np.float16
    assert raw["masks"][0, -1, -1, -3:].tolist() == [1.5, 2.5, 3.5] and not raw["masks"][1].any()


def per_word_probabilities(rows: int) -> list[np.ndarray]:
    """Token classification's per-row arrays: (words, 7) float32, words varying from row to row."""
    rng = np.random.default_rng(1)
    return [rng.random((int(words), 7), dtype=np.float32) for words in rng.integers(40, 60, rows)]


@pytest.mark.parametrize("beside", ["arrays-in-memory", "a-memmap"], ids=["c-pickler", "pure-python-pickler"])
def test_per_row_arrays_unpickle_as_a_list_of_arrays_and_the_writer_does_not_hold_their_payloads(tmp_path, beside):
    rows = per_word_probabilities(8_000)  # 8,000 x ~50 x 7 float32: ~11 MiB of payload
    payload = sum(row.nbytes for row in rows)
    tags = np.empty(len(rows), dtype=object)
    for index, row in enumerate(rows):
        tags[index] = ["O"] * len(row)
    other = np.arange(6, dtype=np.float32) if beside == "arrays-in-memory" else on_disk(tmp_path / "m.npy", np.ones(6))
    tracemalloc.start()
    try:
        write_raw_predictions(tmp_path / "raw.pkl", {"probabilities": rows, "predictions": tags, "other": other})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # pickle.dump keeps every array's bytes in its memo to the end: a peak above the whole payload.
    assert peak < payload / 4
    with (tmp_path / "raw.pkl").open("rb") as handle:
        raw = pickle.load(handle)
    assert type(raw["probabilities"]) is list and len(raw["probabilities"]) == len(rows)
    for written, row in zip(raw["probabilities"], rows):
        assert type(written) is np.ndarray and written.flags.writeable
        assert_array_equal(written, row) and written.dtype == np.float32
    assert raw["predictions"].tolist() == tags.tolist()
    assert_array_equal(raw["other"], other)


@pytest.mark.parametrize("beside", ["arrays-in-memory", "a-memmap"], ids=["c-pickler", "pure-python-pickler"])
def test_a_column_of_texts_unpickles_as_the_same_object_array_and_its_strings_skip_the_memo(tmp_path, beside):
    texts = np.array([f"row {index}: some words" for index in range(20_000)], dtype=object)
    other = np.arange(6, dtype=np.float32) if beside == "arrays-in-memory" else on_disk(tmp_path / "m.npy", np.ones(6))
    write_raw_predictions(tmp_path / "raw.pkl", {"image_path": texts, "other": other, "empty": texts[:0]})
    written = (tmp_path / "raw.pkl").read_bytes()
    raw = pickle.loads(written)
    assert type(raw["image_path"]) is np.ndarray and raw["image_path"].dtype == object
    assert raw["image_path"].shape == texts.shape and raw["image_path"].tolist() == texts.tolist()
    assert raw["empty"].dtype == object and raw["empty"].shape == (0,)
    assert_array_equal(raw["other"], other)
    # The memo would hold (and the file memoize) every string; here only the arrays' parts are memoized.
    memoized = sum(opcode.name == "MEMOIZE" for opcode, _, _ in pickletools.genops(written))
    assert memoized < 50


def test_a_column_of_texts_kept_on_disk_is_pickled_byte_for_byte_as_the_same_column_in_memory(tmp_path):
    texts = [f"context {index}: " + "words " * (index % 90) for index in range(9_000)]
    in_memory = np.array(texts, dtype=object)
    write_raw_predictions(tmp_path / "memory.pkl", {"context": in_memory, "other": np.ones(3)})
    write_raw_predictions(tmp_path / "disk.pkl", {"context": SpilledTexts.from_texts(texts), "other": np.ones(3)})
    assert (tmp_path / "disk.pkl").read_bytes() == (tmp_path / "memory.pkl").read_bytes()
    raw = pickle.loads((tmp_path / "disk.pkl").read_bytes())
    assert type(raw["context"]) is np.ndarray and raw["context"].tolist() == texts


class _Made(RowsByBlock):
    def __init__(self, values: list) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def block(self, start: int, stop: int) -> list:
        return self.values[start:stop]


def test_values_made_by_block_unpickle_as_the_object_arrays_they_stand_for(tmp_path):
    answers = [f"answer {index}" if index % 3 else "" for index in range(9_000)]
    ranked = [[answer, "", "x"] for answer in answers]
    write_raw_predictions(tmp_path / "raw.pkl", {"predictions": _Made(answers), "top_k": _Made(ranked)})
    written = (tmp_path / "raw.pkl").read_bytes()
    raw = pickle.loads(written)
    assert type(raw["predictions"]) is np.ndarray and raw["predictions"].dtype == object
    assert raw["predictions"].tolist() == answers
    assert raw["top_k"].dtype == object and raw["top_k"].shape == (9_000,) and raw["top_k"].tolist() == ranked
    assert sum(opcode.name == "MEMOIZE" for opcode, _, _ in pickletools.genops(written)) < 50


def test_rows_of_a_fixed_count_made_by_block_unpickle_as_a_two_dimensional_object_array(tmp_path):
    rles = [[f"{index} 1", ""] for index in range(9_000)]  # per row, one RLE per class
    by_row = _Made(rles)
    by_row.item_shape = (2,)
    expected = np.empty((9_000, 2), dtype=object)
    expected[:] = rles
    write_raw_predictions(tmp_path / "raw.pkl", {"rle_predictions": by_row})
    raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
    assert type(raw["rle_predictions"]) is np.ndarray and raw["rle_predictions"].shape == (9_000, 2)
    assert_array_equal(raw["rle_predictions"], expected)
    assert_array_equal(by_row.whole(), expected)  # what a server's rows and the npz get


@pytest.mark.parametrize("beside", ["nothing", "a memmap"])  # the C pickler, or the pure-Python one
def test_names_picked_by_codes_unpickle_as_the_object_array_with_one_string_per_name(tmp_path, monkeypatch, beside):
    monkeypatch.setattr(RowsByBlock, "BLOCK_ROWS", 7)  # blocks end inside the rows, a name first seen in a later one
    names = np.array(["cat", "dog", "bird", ""], dtype=object)
    codes = np.random.default_rng(1).integers(-1, 2, (50, 6))
    codes[40, 3] = 2  # "bird" only here
    expected = names[codes]
    values = {"classes": NamesByCode(on_disk(tmp_path / "codes.npy", codes), names), "again": names[1]}
    if beside == "a memmap":
        values["boxes"] = on_disk(tmp_path / "boxes.npy", np.ones((50, 6, 4), dtype=np.float32))
    write_raw_predictions(tmp_path / "raw.pkl", values)
    raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
    assert type(raw["classes"]) is np.ndarray and raw["classes"].shape == (50, 6)
    assert_array_equal(raw["classes"], expected)
    # Each name is written once and referred to after, as numpy's own pickle of `expected` does.
    assert len({id(name) for name in raw["classes"].ravel()}) == 4 and raw["again"] in raw["classes"][0].tolist()
    assert_array_equal(values["classes"].whole(), expected)


def test_the_runs_row_arrays_read_from_chunk_files_are_pickled_as_a_plain_list(tmp_path):
    rows = per_word_probabilities(5)
    stored = np.empty(3, dtype=object)
    stored[:] = rows[:3]
    save_arrays(tmp_path / "chunk.npz", {"probabilities": stored}, flat_row_arrays=True)
    in_memory = np.empty(2, dtype=object)
    in_memory[:] = rows[3:]
    run_rows = RowArrays([StoredRows(tmp_path / "chunk.npz", "probabilities", 3), in_memory])
    names = ("a", "b")  # a tuple stays a tuple
    write_raw_predictions(tmp_path / "raw.pkl", {"probabilities": run_rows, "empty": [], "names": names})
    with (tmp_path / "raw.pkl").open("rb") as handle:
        raw = pickle.load(handle)
    assert type(raw["probabilities"]) is list and raw["empty"] == [] and raw["names"] == names
    assert all(
        assert_array_equal(written, row) is None for written, row in zip(raw["probabilities"], rows, strict=True)
    )
