"""Big per-row arrays go to disk as batches arrive, so a run's memory stays flat as rows grow.

Any prediction array whose rows are at least `SPILL_ROW_BYTES` each (segmentation masks: classes x
H x W probabilities), and any the head names in `Head.rows_on_disk` whatever their size (object
detection's boxes: 2.8 KB a row, 280 MB at 100,000 rows), is not kept in memory or in the
checkpoint chunks: each batch's rows are
written straight into one `.npy` file per key, `.{split}.partial/{key}.npy`, shaped (rows, ...) for
the whole split, at the rows' own offsets. The writes are plain file writes (not a memory map), so
the pages go to the page cache, not into the process's resident memory. Rows that could not be read
are written as NaN (float arrays).

Resuming: the file lives in the checkpoint folder and is written before the manifest names the
chunk its rows belong to, so after a kill every row of a complete chunk is on disk; a resumed run
reopens the file and overwrites the rows after the checkpoint.

At the end the pipeline hands each file to the head as a read-only `np.memmap` (nothing is read
until used); the pkl writer copies it into the pickle straight from the file, piece by piece
(`predict.writers.pickle`), and the file goes away with the checkpoint folder. Heads read such an
array a block of rows at a time with `read_rows` / `iter_rows`: plain reads, because the pages of a
memory map count in the process's RSS once touched, so reading one whole through the map grows the
run's memory by the file's size.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

# 16 KiB per row: above any classification or detection row (100 boxes are 2 KiB) and embeddings
# up to 4,096 float32 values, below the float16 maps of instance segmentation at 64x64 (4 maps: 32 KiB).
SPILL_ROW_BYTES = 16 * 1024
# A stacked array of this size or more is built on disk (stack_rows): a server's few rows stay in memory.
SPILL_STACK_BYTES = 64 * 2**20


class DiskRows:
    """The split's big per-row arrays, one `.npy` file each in `folder`."""

    def __init__(self, folder: Path, rows: int, *, keys: tuple[str, ...] = ()) -> None:
        """`keys`: predictions that go to disk whatever the size of their rows (`Head.rows_on_disk`)."""
        self.folder = folder
        self.rows = rows
        self.keys = keys
        self.files: dict[str, tuple[int, int, tuple[int, ...], np.dtype]] = {}  # key: (fd, data offset, shape, dtype)

    def take(self, predictions: dict[str, np.ndarray], *, start: int, valid: np.ndarray) -> dict[str, np.ndarray]:
        """Write a batch's big arrays to disk and return the rest.

        Args:
            predictions: output name to array, first axis = the batch's rows.
            start: the batch's first row in the split.
            valid: bool[B], False for rows that could not be read.

        Returns:
            `predictions` without the arrays written to disk.
        """
        kept = {}
        for key, values in predictions.items():
            values = np.asarray(values)
            row_bytes = values.itemsize * int(np.prod(values.shape[1:], dtype=np.int64))
            small = values.dtype == object or (row_bytes < SPILL_ROW_BYTES and key not in self.keys)
            if key not in self.files and small:
                kept[key] = values
                continue
            fd, offset, shape, dtype = self.files.get(key) or self._open(key, values)
            if values.shape[1:] != shape[1:] or values.dtype != dtype:
                raise ValueError(
                    f"prediction '{key}' changed from {dtype}{list(shape[1:])} to "
                    f"{values.dtype}{list(values.shape[1:])} per row"
                )
            if not valid.all() and values.dtype.kind == "f":
                values = values.copy()
                values[~valid] = np.nan
            os.pwrite(fd, np.ascontiguousarray(values).tobytes(), offset + start * row_bytes)
        return kept

    def _open(self, key: str, values: np.ndarray) -> tuple[int, int, tuple[int, ...], np.dtype]:
        path = self.folder / f"{key}.npy"
        shape = (self.rows, *values.shape[1:])
        self.folder.mkdir(parents=True, exist_ok=True)
        if path.is_file():  # a resumed run: the header must describe the same array
            with path.open("rb") as handle:
                np.lib.format.read_magic(handle)
                found = np.lib.format.read_array_header_1_0(handle)
                offset = handle.tell()
            if found != (shape, False, values.dtype):
                raise ValueError(
                    f"{path} holds {found[2]}{list(found[0])}, not {values.dtype}{list(shape)}; run with --overwrite"
                )
        else:
            with path.open("wb") as handle:
                offset = _write_npy_header(handle, values.dtype, shape)
                handle.truncate(offset + values.dtype.itemsize * int(np.prod(shape, dtype=np.int64)))
        entry = (os.open(path, os.O_RDWR), offset, shape, values.dtype)
        self.files[key] = entry
        return entry

    def close(self) -> dict[str, np.memmap]:
        """Close the files and open each as a read-only memory map (rows, ...)."""
        arrays = {}
        for key, (fd, *_rest) in self.files.items():
            os.close(fd)
            arrays[key] = np.load(self.folder / f"{key}.npy", mmap_mode="r")
        self.files = {}
        return arrays


# Rows read at once by `iter_rows`: 4,096 rows of detection's boxes are 6.5 MB.
BLOCK_ROWS = 4096


def read_rows(values: np.ndarray | Sequence, start: int, stop: int) -> np.ndarray | list:
    """Rows `start:stop` of an array, in memory; from a memory map of a whole `.npy` file (`DiskRows.close`) by a
    plain read of the file, so that its pages never count in the process's RSS; of a sequence that reads its rows
    by block (`checkpoint.RowArrays`: rows in the checkpoint's files), that block, as a list."""
    stop = min(stop, len(values))
    if hasattr(values, "block"):
        return values.block(start, stop)
    if not isinstance(values, np.memmap) or not is_whole_npy(values):
        return np.asarray(values[start:stop])
    rows = max(stop - start, 0)
    with open(values.filename, "rb") as handle:
        return np.fromfile(
            handle,
            dtype=values.dtype,
            count=rows * int(np.prod(values.shape[1:], dtype=np.int64)),
            offset=values.offset + start * values.strides[0],
        ).reshape(rows, *values.shape[1:])


def iter_rows(values: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """The rows of an array one by one, read `BLOCK_ROWS` at a time with `read_rows`; of any other sequence (rows
    kept by `checkpoint.KeptRows`), as it iterates."""
    if not isinstance(values, np.ndarray):
        yield from values
        return
    for start in range(0, len(values), BLOCK_ROWS):
        yield from read_rows(values, start, start + BLOCK_ROWS)


def stack_rows(
    rows: Iterable[np.ndarray], *, count: int, row_shape: tuple[int, ...], dtype: np.dtype, folder: Path
) -> np.ndarray:
    """`np.stack` of `count` rows made one at a time: in memory when small, else a read-only memory map.

    A split-level array built from per-row predictions (instance segmentation's instance maps: an
    int32 map per image at the image's own size, 1 GB for 2,048 images of 256x256 with 2 classes)
    is written row by row into a hidden `.npy` file in `folder` when it would take `SPILL_STACK_BYTES`
    or more; the pkl writer copies it from there, and the file is removed when the map is let go.
    """
    dtype = np.dtype(dtype)
    total_bytes = count * dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
    if total_bytes < SPILL_STACK_BYTES:
        return np.stack(list(rows)) if count else np.zeros((0, *row_shape), dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=".rows-", suffix=".npy", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            _write_npy_header(handle, dtype, (count, *row_shape))
            written = 0
            for row in rows:
                if row.shape != row_shape or row.dtype != dtype:
                    raise ValueError(f"row {written} is {row.dtype}{list(row.shape)}, not {dtype}{list(row_shape)}")
                handle.write(np.ascontiguousarray(row).data)
                written += 1
        if written != count:
            raise ValueError(f"{written} rows given, {count} announced")
        stacked = np.load(path, mmap_mode="r")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    weakref.finalize(stacked, path.unlink, missing_ok=True)
    return stacked


def _write_npy_header(handle: BinaryIO, dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """A C-order `.npy` header for `shape` of `dtype`; returns where the data starts."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)
    return handle.tell()


def is_whole_npy(value: np.memmap) -> bool:
    """Whether a memory map is its `.npy` file's whole array (not part of it): the file's bytes are its bytes."""
    if value.filename is None or not value.flags.c_contiguous:
        return False
    with open(value.filename, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(handle)
        except ValueError:  # not a .npy file (a raw np.memmap): where its array starts is unknown here
            return False
        return (shape, fortran_order, dtype, handle.tell()) == (value.shape, False, value.dtype, value.offset)
