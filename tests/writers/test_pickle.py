"""The pkl holds arrays however large: arrays on disk are pickled from their files, as pickle.dumps would write them."""

from __future__ import annotations

import io
import pickle
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from predict.writers.pickle import _LeanPickler, write_raw_predictions

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
    names = np.array(["x.png", "y.png", "z.png"], dtype=object)
    # The same memmap twice: the second is a reference to the first, as for any pickled object.
    write_raw_predictions(
        tmp_path / "raw.pkl", {"masks": masks, "again": masks, "class_names": ["a", "b"], "image_path": names}
    )
    written = (tmp_path / "raw.pkl").read_bytes()
    assert written == pickle.dumps(
        {"masks": array, "again": array, "class_names": ["a", "b"], "image_path": names}, protocol=4
    )
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


class _Pair:
    """Reduces to a fresh tuple that appears twice in its arguments: the pickle must refer back to it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self):
        shared = (self.value, "shared")
        return _Pair.from_tuples, (shared, shared)

    @staticmethod
    def from_tuples(first, second):
        return _Pair(first[0])


def _per_row(rows: int) -> dict:
    rng = np.random.default_rng(1)
    tags = np.array(["O", "B-PER", "I-PER"], dtype=object)
    shared = rng.random((2, 3)).astype(np.float32)
    probabilities = [rng.random((int(words), 3)).astype(np.float32) for words in rng.integers(0, 6, rows)]
    probabilities[3] = shared  # the same array twice: the second must be a back-reference
    predictions = np.empty(rows, dtype=object)
    for row, values in enumerate(probabilities):
        predictions[row] = list(tags[values.argmax(axis=1)]) if len(values) else []
    return {
        "probabilities": probabilities,
        "predictions": predictions,
        "labels": np.asarray(tags),
        "again": shared,
        "pairs": [_Pair(row) for row in range(5)],
        "text": np.array([f"row {row}" for row in range(rows)], dtype=object),
    }


@pytest.mark.parametrize("prune_every", [1, 7, 4096])
def test_per_row_arrays_are_pickled_byte_for_byte_as_pickle_dumps(tmp_path, monkeypatch, prune_every):
    monkeypatch.setattr(_LeanPickler, "_PRUNE_EVERY", prune_every)  # 1: the memo is pruned at every new entry
    raw = _per_row(300)
    write_raw_predictions(tmp_path / "raw.pkl", raw)
    written = (tmp_path / "raw.pkl").read_bytes()
    assert written == pickle.dumps(raw, protocol=4)
    loaded = pickle.loads(written)
    assert loaded["probabilities"][3] is loaded["again"]
    assert [pair.value for pair in loaded["pairs"]] == list(range(5))


def test_the_lean_pickler_keeps_in_its_memo_only_objects_held_elsewhere():
    raw = _per_row(20_000)
    pickler = _LeanPickler(io.BytesIO(), protocol=4)
    pickler.dump(raw)
    # Every array leaves about 5 objects only the memo holds (payload, shape, arguments): those go.
    assert pickler.memo_count > 5 * 20_000
    live = 3 * 20_000  # each row's array, tag list and text, which the dict still holds
    assert len(pickler.memo) < live + _LeanPickler._PRUNE_EVERY + 100
