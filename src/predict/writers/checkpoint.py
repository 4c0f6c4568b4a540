"""Resumable runs: finished batches are saved in chunks, with a manifest that says which are complete.

Layout, in the output folder: `.{split}.partial/manifest.json` and `chunk_00000.npz`, ... A chunk file is
written (atomically) before the manifest names it, so after a crash or SIGKILL the manifest lists only
whole chunks; a chunk file it does not list is ignored and rewritten.

The manifest's `key` identifies what was being scored (config, model and dataframe hashes, rows,
batch size); `--resume` refuses a partial run whose key differs, because its chunks would then
describe other predictions. Chunks are NumPy `.npz` files read with `allow_pickle=False`: a
resumed run never unpickles a file it did not write itself. Object arrays (strings, ragged lists)
are stored as JSON, except, in chunks, one array per row of one dtype (token classification's
per-word probabilities): those are stored as their values one after another and each one's shape.
As JSON, 4,096 rows of them took 73 MB of memory to save (issue 18); this way a few MB, exactly.
Once saved, such per-row arrays are not kept in memory: the run holds a `StoredRows` for them,
which reads the chunk's file when the rows are used (while the prediction files are written), so
the run's memory does not grow with them (100,000 rows of token classification: about 40 MB). So are
the object arrays a head names in `Head.rows_on_disk` (instance segmentation's instances, lists with
an RLE string each: about 6 KB a row of Python objects), read back from their JSON when used.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from predict.errors import ConfigError
from predict.writers._atomic import atomic_path
from predict.writers.row_arrays import iter_rows

# 2: object detection's boxes and semantic segmentation's masks (as runs) left the chunks for files of their own
# (issue 18): a partial run of version 1 holds them where this version does not look.
MANIFEST_VERSION = 2
_JSON_SUFFIX = "::json"
_VALUES_SUFFIX = "::values"  # arrays of one dtype, one per row: their values, flat, one row after another
_SHAPES_SUFFIX = "::shapes"  # and their shapes, int64[rows, ndim]


def checkpoint_folder(output_dir: Path, split: str) -> Path:
    """Where a split's partial run lives (removed once its files are written): also the scratch space
    for arrays too big for memory while those files are written (predict.writers.row_arrays)."""
    return output_dir / f".{split}.partial"


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """Predictions of the rows [start, stop).

    Attributes:
        predictions: head output name to array, first axis = stop - start rows (per-row arrays already
            saved in a chunk file: a `StoredRows`, or `RowArrays` of several chunks' rows).
        valid: bool[stop - start], False for rows that failed to load (`data.on_error: skip`).
        errors: (row, message) of the failed rows.
    """

    start: int
    stop: int
    predictions: dict[str, np.ndarray]
    valid: np.ndarray
    errors: list[tuple[int, str]]


class Checkpoint:
    """The partial state of one split's run in one output folder."""

    def __init__(self, folder: Path, key: dict[str, Any], *, rows_on_disk: tuple[str, ...] = ()) -> None:
        """`rows_on_disk`: object arrays left in the chunk files once saved (`Head.rows_on_disk`)."""
        self.folder = folder
        self.key = key
        self.rows_on_disk = rows_on_disk
        self.chunks: list[dict[str, Any]] = []

    @classmethod
    def open(
        cls, output_dir: Path, split: str, key: dict[str, Any], *, resume: bool, rows_on_disk: tuple[str, ...] = ()
    ) -> Checkpoint:
        """Start a fresh checkpoint, or pick up a partial one when `resume` is set.

        Raises:
            ConfigError: `resume` is set and the partial run scored something else (its key differs).
        """
        folder = checkpoint_folder(output_dir, split)
        checkpoint = cls(folder, key, rows_on_disk=rows_on_disk)
        manifest_path = folder / "manifest.json"
        if resume and manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            changed = sorted(
                name for name in {*key, *manifest.get("key", {})} if manifest["key"].get(name) != key.get(name)
            )
            if manifest.get("version") != MANIFEST_VERSION or changed:
                raise ConfigError(
                    f"--resume: the partial run in {output_dir} scored something else "
                    f"(changed: {', '.join(changed) or 'format version'}); run again with --overwrite to start over"
                )
            checkpoint.chunks = manifest["chunks"]
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return checkpoint

    @property
    def rows_done(self) -> int:
        """Rows covered by complete chunks, counted from the first row."""
        return self.chunks[-1]["stop"] if self.chunks else 0

    def load(self) -> list[Chunk]:
        """Read the complete chunks back, in row order (per-row arrays stay in their files: `StoredRows`)."""
        loaded = []
        for entry in self.chunks:
            arrays = load_arrays(
                self.folder / entry["file"],
                stored_rows=True,
                stored_json=self.rows_on_disk,
                rows=entry["stop"] - entry["start"],
            )
            valid = arrays.pop("__valid__")
            errors = [
                (int(row), str(message)) for row, message in json.loads(str(arrays.pop("__errors__" + _JSON_SUFFIX)))
            ]
            loaded.append(
                Chunk(start=entry["start"], stop=entry["stop"], predictions=arrays, valid=valid, errors=errors)
            )
        return loaded

    def save(self, chunk: Chunk) -> Chunk:
        """Write a chunk, then the manifest that names it.

        Returns:
            the chunk to keep in memory: its per-row arrays as `StoredRows` of the file just written.
        """
        if chunk.start != self.rows_done:
            raise ValueError(f"chunk starts at row {chunk.start}, expected {self.rows_done}")
        name = f"chunk_{len(self.chunks):05d}.npz"
        arrays = {**chunk.predictions, "__valid__": chunk.valid}
        arrays["__errors__" + _JSON_SUFFIX] = np.array(json.dumps([[row, message] for row, message in chunk.errors]))
        flat = save_arrays(self.folder / name, arrays, flat_row_arrays=True)
        stored = {key: StoredRows(self.folder / name, key, len(chunk.predictions[key])) for key in flat}
        for key in self.rows_on_disk:
            if key in chunk.predictions and key not in flat and chunk.predictions[key].dtype == object:
                stored[key] = StoredRows(self.folder / name, key, len(chunk.predictions[key]), json_rows=True)
        self.chunks.append({"file": name, "start": chunk.start, "stop": chunk.stop})
        manifest = {"version": MANIFEST_VERSION, "key": self.key, "rows_done": self.rows_done, "chunks": self.chunks}
        with atomic_path(self.folder / "manifest.json") as temp:
            # One line: it is rewritten at every chunk; encoding its growing chunk list with indents took a
            # third of the checkpoint time on 1,000,000 rows (244 chunks, scripts/bench_arrays.py).
            temp.write_text(json.dumps(manifest, separators=(",", ":")) + "\n", encoding="utf-8")
        return dataclasses.replace(chunk, predictions={**chunk.predictions, **stored})

    def discard(self) -> None:
        """Remove the partial state once the final files are written."""
        shutil.rmtree(self.folder, ignore_errors=True)


def save_arrays(path: Path, arrays: dict[str, np.ndarray], *, flat_row_arrays: bool = False) -> list[str]:
    """Save arrays to an `.npz` that loads without pickle: object arrays become one JSON string each.

    Args:
        flat_row_arrays: an object array of arrays of one dtype and rank becomes two arrays instead
            (values, shapes), which `load_arrays` splits back; `output.write_npz` keeps JSON (FORMATS.md).

    Returns:
        the names of the arrays saved that way.
    """
    entries, flat = {}, []
    for name, array in arrays.items():
        if name.endswith(_JSON_SUFFIX):
            entries[name] = array
        elif flat_row_arrays and _is_row_arrays(array):
            flat.append(name)
            entries[name + _VALUES_SUFFIX] = np.concatenate([item.reshape(-1) for item in array])
            entries[name + _SHAPES_SUFFIX] = np.array([item.shape for item in array], dtype=np.int64).reshape(
                len(array), array[0].ndim
            )
        elif array.dtype == object:
            entries[name + _JSON_SUFFIX] = np.array(json.dumps([_to_json(item) for item in array]))
        else:
            entries[name] = array
    with atomic_path(path) as temp, temp.open("wb") as handle:
        np.savez(handle, **entries)
    return flat


def load_arrays(
    path: Path, *, stored_rows: bool = False, stored_json: tuple[str, ...] = (), rows: int | None = None
) -> dict[str, Any]:
    """Load what `save_arrays` wrote; JSON entries come back as object arrays (or stay JSON for `__` keys).

    Args:
        stored_rows: per-row arrays saved flat come back as a `StoredRows` that reads them when used,
            not as an object array.
        stored_json: object arrays saved as JSON that come back as such a `StoredRows` too.
        rows: the rows of the file's per-row arrays, when the caller knows them: `stored_json` entries are
            then not read at all (else they are parsed once, to count them).
    """
    arrays: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as archive:
        for name in archive.files:
            if name.endswith(_SHAPES_SUFFIX):
                continue  # read with its values
            if name.endswith(_VALUES_SUFFIX) and stored_rows:
                base = name.removesuffix(_VALUES_SUFFIX)
                arrays[base] = StoredRows(path, base, len(archive[base + _SHAPES_SUFFIX]))
                continue
            if name.endswith(_JSON_SUFFIX) and name.removesuffix(_JSON_SUFFIX) in stored_json:
                base = name.removesuffix(_JSON_SUFFIX)
                count = len(json.loads(str(archive[name]))) if rows is None else rows
                arrays[base] = StoredRows(path, base, count, json_rows=True)
                continue
            value = archive[name]
            if name.endswith(_VALUES_SUFFIX):
                base = name.removesuffix(_VALUES_SUFFIX)
                arrays[base] = _split_rows(value, archive[base + _SHAPES_SUFFIX])
            elif name.endswith(_JSON_SUFFIX) and not name.startswith("__"):
                arrays[name.removesuffix(_JSON_SUFFIX)] = _json_rows(value)
            else:
                arrays[name] = value
    return arrays


class StoredRows(Sequence):
    """One chunk's per-row arrays (or, `json_rows`, the items of an object array saved as JSON), read from its
    `.npz` file each time they are used (not kept)."""

    def __init__(self, path: Path, key: str, rows: int, *, json_rows: bool = False) -> None:
        self.path = path
        self.key = key
        self.rows = rows
        self.json_rows = json_rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: Any) -> Any:
        return self.load()[index]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.load())

    def load(self) -> np.ndarray:
        """The rows as an object array of arrays (views of one array of their values), or of JSON's items."""
        with np.load(self.path, allow_pickle=False) as archive:
            if self.json_rows:
                return _json_rows(archive[self.key + _JSON_SUFFIX])
            return _split_rows(archive[self.key + _VALUES_SUFFIX], archive[self.key + _SHAPES_SUFFIX])


class RowArrays(Sequence):
    """A split's per-row arrays, part after part: object arrays in memory and `StoredRows` on disk.

    Iterating reads one stored part at a time, so the rows are never all in memory; the pkl writer
    pickles this as a plain list, row by row (predict.writers.pickle).
    """

    def __init__(self, parts: Sequence[Sequence[np.ndarray]]) -> None:
        self.parts = list(parts)
        self.stops = np.cumsum([len(part) for part in self.parts]).tolist()

    def __len__(self) -> int:
        return self.stops[-1] if self.stops else 0

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, int):
            raise TypeError(f"RowArrays takes a row number, not {type(index).__name__}")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        part = bisect.bisect_right(self.stops, index)
        return self.parts[part][index - (self.stops[part - 1] if part else 0)]

    def __iter__(self) -> Iterator[np.ndarray]:
        for part in self.parts:
            yield from part.load() if isinstance(part, StoredRows) else part

    def block(self, start: int, stop: int) -> list[np.ndarray]:
        """Rows `start:stop`, reading each stored part they fall in once."""
        rows = []
        for part, part_stop in zip(self.parts, self.stops):
            part_start = part_stop - len(part)
            if part_stop <= start or part_start >= stop:
                continue
            values = part.load() if isinstance(part, StoredRows) else part
            rows.extend(values[max(start, part_start) - part_start : min(stop, part_stop) - part_start])
        return rows


class KeptRows(Sequence):
    """The rows of a sequence of per-row arrays where `keep` (bool) is True, read as iterated: the metrics of
    the rows that were read, from rows still in the checkpoint's files or in an array on disk (a block at a time)."""

    def __init__(self, rows: Sequence[np.ndarray], keep: np.ndarray) -> None:
        self.rows = rows
        self.keep = np.asarray(keep, dtype=bool)
        self.positions = np.flatnonzero(self.keep)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.rows[int(self.positions[index])]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (row for row, kept in zip(iter_rows(self.rows), self.keep.tolist(), strict=True) if kept)


def _is_row_arrays(array: np.ndarray) -> bool:
    """A non-empty object array whose items are all arrays of one (non-object) dtype and one rank."""
    if array.dtype != object or not len(array) or not isinstance(array[0], np.ndarray):
        return False
    dtype, rank = array[0].dtype, array[0].ndim
    return not dtype.hasobject and all(
        isinstance(item, np.ndarray) and item.dtype == dtype and item.ndim == rank for item in array
    )


def _split_rows(values: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """The object array of per-row arrays that `save_arrays` flattened into `values`, one shape per row."""
    rows = np.empty(len(shapes), dtype=object)
    stops = np.cumsum(np.prod(shapes, axis=1))
    for row, (shape, stop) in enumerate(zip(shapes, stops)):
        rows[row] = values[stop - int(np.prod(shape)) : stop].reshape(tuple(int(size) for size in shape))
    return rows


def _json_rows(value: np.ndarray) -> np.ndarray:
    """The object array whose items `save_arrays` wrote as one JSON string."""
    items = [_from_json(item) for item in json.loads(str(value))]
    array = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):  # one by one: equal-length lists must stay lists
        array[index] = item
    return array


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        items = _to_json(value.tolist()) if value.dtype == object else value.tolist()
        return {"__ndarray__": items, "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "__ndarray__" in value:
        return np.array(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _from_json(item) for key, item in value.items()}
    return value
