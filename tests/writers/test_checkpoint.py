"""Checkpoint chunks round-trip exactly, without pickle, and refuse to resume another run."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from predict.errors import ConfigError
from predict.writers.checkpoint import Checkpoint, Chunk, RowArrays, StoredRows, load_arrays, save_arrays
from predict.writers.run import merge_chunks

ROOT = Path(__file__).resolve().parents[2]

KEY = {"config": "abc", "model": "def", "rows": 10}


def test_arrays_round_trip_without_pickle(tmp_path):
    ragged = np.empty(3, dtype=object)
    ragged[:] = [["B-PER", "O"], [], ["O", "O"]]
    per_word = np.empty(2, dtype=object)
    per_word[0] = np.arange(6, dtype=np.float32).reshape(3, 2)
    per_word[1] = np.zeros((0, 2), np.float32)
    arrays = {
        "predictions": np.array([[0.25, np.nan]], np.float32),
        "ids": np.arange(3, dtype=np.int64),
        "texts": np.array(["a", "ü", ""], dtype=object),
        "tags": ragged,
        "probabilities": per_word,
    }
    save_arrays(tmp_path / "x.npz", arrays)
    loaded = load_arrays(tmp_path / "x.npz")
    assert loaded["predictions"].dtype == np.float32
    assert_array_equal(loaded["predictions"], arrays["predictions"])
    assert_array_equal(loaded["ids"], arrays["ids"])
    assert list(loaded["texts"]) == ["a", "ü", ""]
    assert list(loaded["tags"]) == [["B-PER", "O"], [], ["O", "O"]]
    assert loaded["probabilities"][0].dtype == np.float32 and loaded["probabilities"][0].shape == (3, 2)
    assert loaded["probabilities"][1].shape == (0, 2)
    with np.load(tmp_path / "x.npz", allow_pickle=False) as archive:  # loadable with pickle off
        assert all(archive[name].dtype != object for name in archive.files)


def test_chunks_store_per_row_arrays_as_flat_values_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    per_word = np.empty(4, dtype=object)
    for row, words in enumerate([3, 0, 1, 2]):
        per_word[row] = rng.random((words, 2)).astype(np.float32)
    per_word[3][1] = np.nan
    scalars = np.empty(2, dtype=object)  # rank 0: one value per row
    scalars[:] = [np.array(1.5), np.array(-2.0)]
    mixed = np.empty(2, dtype=object)  # two dtypes: JSON, as before
    mixed[:] = [np.zeros(2, np.float32), np.zeros(2, np.int64)]
    arrays = {"probabilities": per_word, "scalars": scalars, "mixed": mixed}
    save_arrays(tmp_path / "x.npz", arrays, flat_row_arrays=True)
    with np.load(tmp_path / "x.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == [
            "mixed::json", "probabilities::shapes", "probabilities::values", "scalars::shapes", "scalars::values"
        ]  # fmt: skip
        assert archive["probabilities::values"].dtype == np.float32 and archive["probabilities::values"].size == 12
    loaded = load_arrays(tmp_path / "x.npz")
    assert list(loaded) == ["probabilities", "scalars", "mixed"]
    for name, values in arrays.items():
        assert len(loaded[name]) == len(values)
        for got, expected in zip(loaded[name], values):
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert_array_equal(got, expected)  # NaN included
    # What the pkl gets from a resumed run: arrays pickled as the ones scored in this run.
    assert pickle.dumps(list(loaded["probabilities"]), protocol=4) == pickle.dumps(list(per_word), protocol=4)


def chunk(start, stop, errors=()):
    rows = stop - start
    valid = np.ones(rows, bool)
    for row, _ in errors:
        valid[row - start] = False
    return Chunk(
        start=start,
        stop=stop,
        predictions={"p": np.arange(start, stop, dtype=np.float32)},
        valid=valid,
        errors=list(errors),
    )


def test_resume_reads_complete_chunks(tmp_path):
    checkpoint = Checkpoint.open(tmp_path, "validation", KEY, resume=False)
    checkpoint.save(chunk(0, 4))
    checkpoint.save(chunk(4, 8, errors=[(5, "row 5: file not found")]))
    # A chunk file the manifest does not name (killed before the manifest was written) is ignored.
    (tmp_path / ".validation.partial" / "chunk_00002.npz").write_bytes(b"half a file")
    resumed = Checkpoint.open(tmp_path, "validation", KEY, resume=True)
    assert resumed.rows_done == 8
    chunks = resumed.load()
    assert [(c.start, c.stop) for c in chunks] == [(0, 4), (4, 8)]
    assert_array_equal(np.concatenate([c.predictions["p"] for c in chunks]), np.arange(8))
    assert chunks[1].errors == [(5, "row 5: file not found")] and list(chunks[1].valid) == [True, False, True, True]
    resumed.save(chunk(8, 10))
    assert json.loads((tmp_path / ".validation.partial" / "manifest.json").read_text())["rows_done"] == 10
    resumed.discard()
    assert not (tmp_path / ".validation.partial").exists()


def test_resume_refuses_another_run(tmp_path):
    Checkpoint.open(tmp_path, "test", KEY, resume=False).save(chunk(0, 4))
    with pytest.raises(
        ConfigError,
        match=r"--resume: the partial run in .* scored something else \(changed: model\); run again with --overwrite",
    ):
        Checkpoint.open(tmp_path, "test", {**KEY, "model": "other"}, resume=True)


def test_resume_refuses_a_partial_run_of_an_earlier_format(tmp_path):
    Checkpoint.open(tmp_path, "test", KEY, resume=False).save(chunk(0, 4))
    manifest_path = tmp_path / ".test.partial" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "version": 1}))
    refused = r"scored something else \(changed: format version\); run again with --overwrite"
    with pytest.raises(ConfigError, match=refused):
        Checkpoint.open(tmp_path, "test", KEY, resume=True)


def test_without_resume_a_partial_run_is_dropped(tmp_path):
    Checkpoint.open(tmp_path, "test", KEY, resume=False).save(chunk(0, 4))
    assert Checkpoint.open(tmp_path, "test", KEY, resume=False).rows_done == 0
    assert not (tmp_path / ".test.partial" / "manifest.json").exists()


def per_word_chunk(start: int, stop: int, rng: np.random.Generator) -> Chunk:
    """Token classification's predictions: (words, 7) float32 per row, and tags."""
    probabilities = np.empty(stop - start, dtype=object)
    tags = np.empty(stop - start, dtype=object)
    for row, words in enumerate(rng.integers(0, 30, stop - start)):
        probabilities[row] = rng.random((int(words), 7), dtype=np.float32)
        tags[row] = ["O"] * int(words)
    return Chunk(
        start=start,
        stop=stop,
        predictions={"probabilities": probabilities, "predictions": tags},
        valid=np.ones(stop - start, bool),
        errors=[],
    )


def test_saved_per_row_arrays_are_read_back_from_the_chunk_files_when_used(tmp_path):
    rng = np.random.default_rng(0)
    scored = [per_word_chunk(0, 5, rng), per_word_chunk(5, 9, rng), per_word_chunk(9, 12, rng)]
    checkpoint = Checkpoint.open(tmp_path, "validation", KEY, resume=False)
    kept = [checkpoint.save(scored[0]), checkpoint.save(scored[1]), scored[2]]  # the last rows: not saved yet
    assert isinstance(kept[0].predictions["probabilities"], StoredRows)
    assert isinstance(kept[0].predictions["predictions"], np.ndarray)  # tags (JSON in the file) stay in memory
    resumed = Checkpoint.open(tmp_path, "validation", KEY, resume=True).load()
    assert all(isinstance(chunk.predictions["probabilities"], StoredRows) for chunk in resumed)
    expected = [row for chunk in scored for row in chunk.predictions["probabilities"]]
    for chunks in (kept, [*resumed, scored[2]]):
        rows = merge_chunks(chunks).predictions["probabilities"]
        assert isinstance(rows, RowArrays) and len(rows) == 12
        for got, row in zip(rows, expected, strict=True):
            assert got.dtype == np.float32 and got.shape == row.shape
            assert_array_equal(got, row)
        assert_array_equal(rows[6], expected[6]) and assert_array_equal(rows[-1], expected[-1])
        with pytest.raises(IndexError):
            rows[12]
    # The chunks merged while scoring (all in memory) stay one object array.
    assert merge_chunks(scored).predictions["probabilities"].dtype == object


def test_object_rows_a_head_keeps_on_disk_are_read_back_from_their_json_when_used(tmp_path):
    # Instance segmentation's instances: ragged lists (one of equal-length lists, one empty) left in the chunk files.
    rows = [[[0, 1, 0.5, "1 2"], [1, 1, 0.25, "3 4"]], [], [[0, 1, 0.75, "5 6"]], [[1, 2, 0.125, "7 8"]]]

    def instances_chunk(start: int, stop: int) -> Chunk:
        items = np.empty(stop - start, dtype=object)
        items[:] = [rows[row] for row in range(start, stop)]  # a list per row, however long
        valid = np.ones(stop - start, dtype=bool)
        return Chunk(
            start=start,
            stop=stop,
            predictions={"instances": items, "p": np.arange(start, stop)},
            valid=valid,
            errors=[],
        )

    checkpoint = Checkpoint.open(tmp_path, "validation", KEY, resume=False, rows_on_disk=("instances",))
    kept = [checkpoint.save(instances_chunk(0, 2)), instances_chunk(2, 4)]
    assert isinstance(kept[0].predictions["instances"], StoredRows) and isinstance(kept[0].predictions["p"], np.ndarray)
    resumed = Checkpoint.open(tmp_path, "validation", KEY, resume=True, rows_on_disk=("instances",)).load()
    assert isinstance(resumed[0].predictions["instances"], StoredRows) and len(resumed[0].predictions["instances"]) == 2
    # Counted from the manifest on resume, from the JSON itself when the caller does not know the rows: the same.
    chunk_file = next((tmp_path / ".validation.partial").glob("chunk_*.npz"))
    assert len(load_arrays(chunk_file, stored_json=("instances",))["instances"]) == 2
    for chunks in (kept, [*resumed, instances_chunk(2, 4)]):
        merged = merge_chunks(chunks).predictions["instances"]
        assert isinstance(merged, RowArrays) and list(merged) == rows
        assert merged.block(1, 3) == rows[1:3]
    plain = Checkpoint.open(tmp_path, "validation", KEY, resume=True).load()  # a key no head names: in memory
    assert plain[0].predictions["instances"].dtype == object and plain[0].predictions["instances"].tolist() == rows[:2]


def test_the_rows_of_saved_chunks_are_not_kept_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    checkpoint = Checkpoint.open(tmp_path, "validation", KEY, resume=False)
    kept, payload = [], 0
    tracemalloc.start()
    try:
        for start in range(0, 20_000, 2_000):
            chunk = per_word_chunk(start, start + 2_000, rng)
            chunk.predictions.pop("predictions")
            payload += sum(row.nbytes for row in chunk.predictions["probabilities"])
            kept.append(checkpoint.save(chunk))
            del chunk
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < payload / 10  # ~8 MB of arrays scored; what stays is a file name per chunk
    assert sum(len(row) for row in merge_chunks(kept).predictions["probabilities"]) > 0


def _boxes_chunks(rows: int) -> list[Chunk]:
    """Chunks of 4,000 rows of 100 float32 boxes and int64 ids: 1.6 KB a row."""
    made = []
    for start in range(0, rows, 4_000):
        predictions = {
            "boxes": np.random.default_rng(start).random((4_000, 100, 4), dtype=np.float32),
            "ids": np.arange(start, start + 4_000),
            "names": np.array(["a"] * 4_000, dtype=object),
        }
        made.append(
            Chunk(start=start, stop=start + 4_000, predictions=predictions, valid=np.ones(4_000, bool), errors=[])
        )
    return made


def test_merging_with_release_gives_the_same_arrays_and_empties_the_chunks():
    expected = merge_chunks(_boxes_chunks(12_000)).predictions
    parts = _boxes_chunks(12_000)
    merged = merge_chunks(parts, release=True).predictions
    assert all(set(chunk.predictions) == {"names"} for chunk in parts)  # object arrays are not copied, only read
    for key, array in expected.items():
        assert merged[key].dtype == array.dtype
        assert_array_equal(merged[key], array)


# In a fresh process: chunks of 128 MB merged, the peak resident memory (VmHWM, reset just before) measured.
MERGE_PROGRAM = """
import sys
from tests.writers.test_checkpoint import _boxes_chunks
from predict.writers.run import merge_chunks

def status(key):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(key)) / 1024

parts = _boxes_chunks(80_000)
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # the peak starts again from here
before = status("VmRSS")
merged = merge_chunks(parts, release=sys.argv[1] == "release")
print(status("VmHWM") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only (VmHWM reset)")
def test_merging_with_release_holds_about_one_copy_of_the_rows():
    def growth(mode: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", MERGE_PROGRAM, mode], capture_output=True, text=True, check=True, cwd=ROOT
        )
        return float(done.stdout)

    payload = 80_000 * (1600 + 8 + 8) / 2**20  # MB of boxes, ids and the names' pointers
    assert growth("copy") > 0.9 * payload  # the measure sees a second copy...
    assert growth("release") < 0.3 * payload  # ...and merging part by part does not make one
