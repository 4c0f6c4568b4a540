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

A list of per-row arrays (token classification's per-word probabilities; `RowArrays` read back
from the checkpoint's files) is pickled item by item without the pickler's memo. A pickler keeps
every object it wrote in its memo until the end, and with it the `bytes` payload it made of each
array: 100,000 rows of 12 x 7 float32 made the pkl writer's memory grow by 106 MB (issue 18).
Such a list is written as `list()` plus its items appended (it unpickles as a plain `list` of
`np.ndarray`, as before); its first array is memoized as usual, so numpy's reconstructor and
the dtype are written once and referred to by the others, which are written in the pickler's
"fast" mode (no memo; `fast` is a documented, deprecated attribute of both picklers).

Two more kinds of value are written without holding each row in the memo (issue 18). A column of
texts (a 1-D object array of strings: the input column) is written as numpy writes it, its strings in
fast mode: pandas makes a string object per cell, so the memo never shared one, only held them (a
string that is one object in several rows is then written, and loaded, once per row). Rows of tags
(`NamesByRow`, token classification) are written as the object array of lists they stand for, each
row's list made as it is written; a tag goes through the memo where it first appears, so the loaded
rows share one string per tag as before. Both load as before, but their bytes are not `pickle.dumps`'
(each row's list is `list()` plus items), and in the pure-Python pickler the last batch of a list's
items is saved after its iterator ends, with the memo. Values made a block of rows at a time when read
(`RowsByBlock`: span prediction's answers, cut from their contexts) are written as the object array they
stand for, each string or list in fast mode. Names picked by codes (`NamesByCode`: detection's (n, 100)
class names, codes on disk) are written as the object array they stand for with each name through the
memo, so that they load as one string object per name, as the array did; the pure-Python pickler writes
a block of rows' memo references at once (item by item it took 1.1 s per 20,000 rows, the C one 0.06 s).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from struct import pack
from typing import Any, BinaryIO

import numpy as np

from predict.data.spilled import SpilledTexts
from predict.heads.base import NamesByCode, NamesByRow, RowsByBlock
from predict.writers._atomic import atomic_path
from predict.writers.checkpoint import RowArrays
from predict.writers.row_arrays import is_whole_npy

PROTOCOL = 4  # readable by Python 3.4+ and H2O's own tooling; BINBYTES8 payloads past 4 GiB
_COPY_BYTES = 16 * 2**20  # one read/write of an on-disk payload: memory stays at this, whatever the array's size


def write_raw_predictions(path: Path, raw_predictions: dict[str, Any]) -> None:
    """Pickle the dict with protocol 4; `np.memmap` values are copied in from their files piece by piece.

    Only a dict with such values goes through the pure-Python pickler: it is about 4x slower per
    object than the C one (measured: 5.3 s vs 1.4 s for a dict with 100,000 per-row arrays and
    strings), which matters for many small objects, not for a few big arrays. Both write the same values.
    """
    values = {key: _without_memo(value) for key, value in raw_predictions.items()}
    with atomic_path(path) as temp, temp.open("wb") as handle:
        if any(isinstance(value, np.memmap) for value in values.values()):
            _ArrayPickler(_PayloadFile(handle), protocol=PROTOCOL).dump(values)
        else:
            _RowsPickler(handle, protocol=PROTOCOL).dump(values)


def _without_memo(value: Any) -> Any:
    """Per-row arrays and a column of texts wrapped to be pickled without the memo; any other value as it is."""
    if _is_row_list(value):
        return _RowsWithoutMemo(value)
    if isinstance(value, NamesByCode):
        return _CodedNames(value)
    if _is_text_column(value) or isinstance(value, (SpilledTexts, RowsByBlock)):
        return _TextsWithoutMemo(value)
    if isinstance(value, NamesByRow):
        return _NamesWithoutMemo(value)
    return value


def _is_text_column(value: Any) -> bool:
    """A 1-D object array of strings (an input column). Each of its strings is an object of its own (pandas
    makes one per cell), so the memo never shares one; it only held them, 7 MB at 100,000 rows (issue 18)."""
    return (
        isinstance(value, np.ndarray)
        and value.dtype == object
        and value.ndim == 1
        and all(isinstance(item, str) for item in value)
    )


def _is_row_list(value: Any) -> bool:
    """A non-empty list of NumPy arrays, one per row, or the run's `RowArrays` (pickled as a list)."""
    if isinstance(value, RowArrays):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(item, np.ndarray) for item in value)


class _RowsWithoutMemo:
    """Per-row values to pickle as a plain `list`, without holding each one (and an array's payload) in the memo.

    Args:
        memoize_first: the first array goes through the memo (numpy's globals and the dtype with it); for
            values that refer to no shared object (strings), none does.
    """

    def __init__(self, rows: Sequence[Any], *, memoize_first: bool = True) -> None:
        self.rows = rows
        self.memoize_first = memoize_first


class _TextsWithoutMemo:
    """A 1-D object array of strings, pickled as numpy pickles it but with its list of strings without the memo;
    a column kept on disk (`SpilledTexts`) and values made a block of rows at a time (`RowsByBlock`: strings, or
    lists of strings) are pickled as the object array they stand for, a block at a time."""

    def __init__(self, array: np.ndarray | SpilledTexts | RowsByBlock) -> None:
        self.array = array

    def shape(self) -> tuple[int, ...]:
        return (len(self.array), *getattr(self.array, "item_shape", ()))

    def items(self) -> Iterable[Any]:
        """The items in C order: a row's list of `item_shape` items one by one."""
        if getattr(self.array, "item_shape", ()):
            return (item for row in self.array for item in row)
        return self.array


class _NamesWithoutMemo:
    """Rows of names (`NamesByRow`), pickled as the object array of lists they stand for, each row's list made
    as it is written and not held by the memo; a name goes through the memo once, where it first appears, so
    every row refers to the same string object when unpickled, as before."""

    def __init__(self, rows: NamesByRow) -> None:
        self.rows = rows
        self.seen: set[str] = set()

    def lists(self) -> Iterator[_NamesRow]:
        for names in self.rows:
            yield _NamesRow(names, self)


class _NamesRow:
    """One row's list of names, pickled as `list` plus its items: with the memo only if it has a new name."""

    def __init__(self, names: list[str], owner: _NamesWithoutMemo) -> None:
        self.names = names
        self.owner = owner


class _CodedNames:
    """Names picked by codes (`NamesByCode`: detection's (n, 100) class names), pickled as the object array they
    stand for. Each name goes through the memo, where it first appears, as when pickling that array."""

    def __init__(self, names: NamesByCode) -> None:
        self.names = names

    def items(self) -> Iterator[Any]:
        names = self.names.names
        for codes in self.names.code_blocks():
            yield from names[codes]


class _CodedItems:
    """The list of a `_CodedNames`' items: `list` plus its items, in the pure-Python pickler a block at a time."""

    def __init__(self, names: _CodedNames) -> None:
        self.names = names


class _RowsWithoutMemoMixin:
    """`reducer_override` for the values wrapped by `_without_memo`, shared by the C and the pure-Python pickler."""

    fast: bool
    _in_rows = False
    _memoized_one = False

    def _reduce_rows(self, obj: Any) -> Any:
        """The reduce value of a value wrapped by `_without_memo` (or of one of its rows), or None for any other."""
        if isinstance(obj, _RowsWithoutMemo):
            return list, (), None, self._each_row(obj.rows, memoize_first=obj.memoize_first)
        if isinstance(obj, _TextsWithoutMemo):
            return _object_array_reduce(obj.shape(), _RowsWithoutMemo(obj.items(), memoize_first=False))
        if isinstance(obj, _NamesWithoutMemo):
            return _object_array_reduce((len(obj.rows),), _RowsWithoutMemo(obj.lists(), memoize_first=False))
        if isinstance(obj, _CodedNames):
            return _object_array_reduce((len(obj.names), *obj.names.item_shape), _CodedItems(obj))
        if isinstance(obj, _NamesRow):
            # Saved now (each item is reduced when saved, after the row before it): the memo takes this row and
            # its names only if one of them is new.
            self.fast = obj.owner.seen.issuperset(obj.names)
            obj.owner.seen.update(obj.names)
            return list, (), None, iter(obj.names)
        if self._in_rows and isinstance(obj, np.ndarray):
            # The rows' first array goes through the memo (numpy's globals and the dtype with it), the rest not.
            self.fast = self._memoized_one
            self._memoized_one = True
        return None

    def _each_row(self, rows: Sequence[Any], *, memoize_first: bool) -> Iterator[Any]:
        # The C pickler saves each item before it takes the one after the next from this iterator, so the
        # iterator ends after the last one is saved. The pure-Python one takes a batch of 1,000 ahead: its
        # last batch (all of a shorter list) is saved after the end, with the memo, as before.
        self._in_rows, self._memoized_one = True, not memoize_first
        self.fast = not memoize_first
        try:
            yield from rows
        finally:
            self._in_rows, self.fast = False, False


def _object_array_reduce(shape: tuple[int, ...], items: _RowsWithoutMemo) -> tuple:
    """numpy's reduce value of an object array of `shape`, its list of items (in C order) given as `items`."""
    reconstruct, arguments, state = np.empty(0, dtype=object).__reduce__()
    return reconstruct, arguments, (state[0], shape, *state[2:-1], items)


class _RowsPickler(_RowsWithoutMemoMixin, pickle.Pickler):
    """The C pickler, with per-row arrays written without the memo."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _CodedItems):
            return list, (), None, obj.names.items()
        reduced = self._reduce_rows(obj)
        return NotImplemented if reduced is None else reduced


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


class _ArrayPickler(_RowsWithoutMemoMixin, pickle._Pickler):
    """The pure-Python pickler; an `np.memmap` becomes the `np.ndarray` it holds (from its file, if a whole `.npy`)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def reducer_override(self, obj: Any) -> Any:
        reduced = self._reduce_rows(obj)
        if reduced is not None:
            return reduced
        if not isinstance(obj, np.memmap):
            return NotImplemented
        array = obj.view(np.ndarray)  # unpickles as np.ndarray, not as a memmap without its file
        if not is_whole_npy(obj):  # part of a file, or a file of unknown layout: through memory
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

    def save_coded_items(self, items: _CodedItems) -> None:
        """The list of names as `save_reduce(list, ())` and its items would write it, each block of rows' items at
        once: a memo reference per name already written, joined. Item by item, this pickler took 1.1 s per 20,000
        rows of 100 names, 20x the C one's time (issue 18)."""
        self.save_reduce(list, (), obj=items)
        coded = items.names.names
        references: dict[int, bytes] = {}  # code: the memo reference to its name
        for codes in coded.code_blocks():
            self.write(pickle.MARK)
            done = 0
            for first in _first_uses(codes, references):
                self.write(b"".join([references[code] for code in codes[done:first].tolist()]))
                name = coded.names[codes[first]]
                self.save(name)  # written and memoized (or referred to, if the memo has it already)
                references[int(codes[first])] = self.get(self.memo[id(name)][0])
                done = first + 1
            self.write(b"".join([references[code] for code in codes[done:].tolist()]))
            self.write(pickle.APPENDS)
            self.framer.commit_frame()

    dispatch[_CodedItems] = save_coded_items


def _first_uses(codes: np.ndarray, known: dict[int, bytes]) -> list[int]:
    """Where each code not in `known` first appears in `codes`, in order."""
    values, firsts = np.unique(codes, return_index=True)
    return sorted(first for value, first in zip(values.tolist(), firsts.tolist()) if value not in known)
