"""`{split}_raw_predictions.pkl`: the head's dict of NumPy arrays, pickled.

Every value is pickled as itself, however large (FORMATS.md "Files of a run"): a consumer's
`pickle.load` gives plain `np.ndarray` values. Arrays that live on disk (the `np.memmap`s of
`predict.writers.row_arrays`: segmentation masks) are not read into memory for it. Pickling an
array normally builds its whole payload as one `bytes` object (`ndarray.__reduce__` calls
`tobytes()`); here the pickle gets the same opcodes, but the payload is copied from the array's
`.npy` file in `_COPY_BYTES` pieces, so the writer's memory does not grow with the array. The file
is read with plain reads, not through the memory map, so its pages stay out of the process's RSS.

This needs the pure-Python pickler (`pickle._Pickler`): the C pickler writes a payload only from a
buffer in memory. `tests/writers/test_pickle.py` checks that the file is byte for byte what
`pickle.dumps` writes for the same arrays in memory, so a change in CPython's pickler shows there.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from struct import pack
from typing import Any, BinaryIO

import numpy as np

from predict.writers._atomic import atomic_path

PROTOCOL = 4  # readable by Python 3.4+ and H2O's own tooling; BINBYTES8 payloads past 4 GiB
_COPY_BYTES = 16 * 2**20  # one read/write of an on-disk payload: memory stays at this, whatever the array's size


def write_raw_predictions(path: Path, raw_predictions: dict[str, Any]) -> None:
    """Pickle the dict with protocol 4; `np.memmap` values are copied in from their files piece by piece.

    Only a dict with such values goes through the pure-Python pickler: it is about 4x slower per
    object than the C one (measured: 5.3 s vs 1.4 s for a dict with 100,000 per-row arrays and
    strings), which matters for many small objects, not for a few big arrays. Both write the same bytes.
    """
    with atomic_path(path) as temp, temp.open("wb") as handle:
        if any(isinstance(value, np.memmap) for value in raw_predictions.values()):
            _ArrayPickler(_PayloadFile(handle), protocol=PROTOCOL).dump(raw_predictions)
        else:
            pickle.dump(raw_predictions, handle, protocol=PROTOCOL)


class _FilePayload:
    """The raw bytes of an array, `size` bytes from `offset` in `filename`: pickled like `bytes`, read in pieces."""

    def __init__(self, filename: str, offset: int, size: int) -> None:
        self.filename = filename
        self.offset = offset
        self.size = size

    def copy_to(self, handle: BinaryIO) -> None:
        buffer = bytearray(min(_COPY_BYTES, self.size))
        left = self.size
        with open(self.filename, "rb") as source:
            source.seek(self.offset)
            while left:
                count = source.readinto(memoryview(buffer)[: min(left, len(buffer))])
                if not count:
                    raise OSError(f"{self.filename}: ended {left} bytes before the array it holds")
                handle.write(memoryview(buffer)[:count])
                left -= count


class _PayloadFile:
    """The pickler's output file: a `_FilePayload` written to it is copied from its file, the rest as is."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def write(self, data: Any) -> None:
        if isinstance(data, _FilePayload):
            data.copy_to(self.handle)
        else:
            self.handle.write(data)


class _ArrayPickler(pickle._Pickler):
    """The pure-Python pickler; an `np.memmap` becomes the `np.ndarray` it holds (from its file, if a whole `.npy`)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, np.memmap):
            return NotImplemented
        array = obj.view(np.ndarray)  # unpickles as np.ndarray, not as a memmap without its file
        if not _is_whole_npy(obj):  # part of a file, or a file of unknown layout: through memory
            return array.__reduce_ex__(self.proto)
        # What `np.ndarray.__reduce__` returns for the array in memory, the payload (`tobytes()`) aside.
        reconstruct, arguments, state = array[:0].__reduce__()
        payload = _FilePayload(str(obj.filename), int(obj.offset), int(obj.nbytes))
        return reconstruct, arguments, (state[0], obj.shape, obj.dtype, False, payload)

    def save_file_payload(self, payload: _FilePayload) -> None:
        """Write the payload as `save_bytes` writes a `bytes` object of its size: same opcodes, same framing."""
        size = payload.size
        if size < self.framer._FRAME_SIZE_TARGET:  # small: inside the current frame, as bytes
            with open(payload.filename, "rb") as source:
                source.seek(payload.offset)
                self.save_bytes(source.read(size))
            return
        header = pickle.BINBYTES8 + pack("<Q", size) if size > 0xFFFFFFFF else pickle.BINBYTES + pack("<I", size)
        self._write_large_bytes(header, payload)  # ends the frame, then writes header and payload to `_PayloadFile`
        self.memoize(payload)

    dispatch[_FilePayload] = save_file_payload


def _is_whole_npy(value: np.memmap) -> bool:
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
