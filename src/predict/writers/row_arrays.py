"""Big per-row arrays go to disk as batches arrive, so a run's memory stays flat as rows grow.

Any prediction array whose rows are at least `SPILL_ROW_BYTES` each (segmentation masks: classes x
H x W probabilities) is not kept in memory or in the checkpoint chunks: each batch's rows are
written straight into one `.npy` file per key, `.{split}.partial/{key}.npy`, shaped (rows, ...) for
the whole split, at the rows' own offsets. The writes are plain file writes (not a memory map), so
the pages go to the page cache, not into the process's resident memory. Rows that could not be read
are written as NaN (float arrays).

Resuming: the file lives in the checkpoint folder and is written before the manifest names the
chunk its rows belong to, so after a kill every row of a complete chunk is on disk; a resumed run
reopens the file and overwrites the rows after the checkpoint.

At the end the pipeline hands each file to the head as a read-only `np.memmap` (nothing is read
until used); the pkl writer copies it into the pickle straight from the file, piece by piece
(`predict.writers.pickle`), and the file goes away with the checkpoint folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# 64 KiB per row: far above any classification, detection or embedding row (100 boxes are 2 KiB),
# below one 128x128 float32 mask.
SPILL_ROW_BYTES = 64 * 1024


class DiskRows:
    """The split's big per-row arrays, one `.npy` file each in `folder`."""

    def __init__(self, folder: Path, rows: int) -> None:
        self.folder = folder
        self.rows = rows
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
            if key not in self.files and (values.dtype == object or row_bytes < SPILL_ROW_BYTES):
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
        header = {"descr": np.lib.format.dtype_to_descr(values.dtype), "fortran_order": False, "shape": shape}
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
                np.lib.format.write_array_header_1_0(handle, header)
                offset = handle.tell()
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
