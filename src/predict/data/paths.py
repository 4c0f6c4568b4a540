"""File paths named by dataframe cells, resolved under the data folder."""

from __future__ import annotations

import functools
from pathlib import Path


class UnreadableRow(Exception):
    """A row's input cannot be read; the message says why (the loader adds row and column)."""


def shown_cell(value: object) -> str:
    """A cell as messages show it: a path's repr, or the size of an encoded file given as bytes (a server's request)."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return repr(value)


def resolve_data_path(data_folder: Path, value: object, *, allow_outside: bool) -> Path:
    """The file a cell names, relative to `data_folder`.

    A path that leaves the folder (`../x`, `/etc/x`, a symlink out) is refused unless `allow_outside`,
    so a dataframe from elsewhere cannot make the tool read arbitrary files.

    Raises:
        UnreadableRow: the cell is empty, or the path leaves the folder.
    """
    if not isinstance(value, str) or not value.strip():
        raise UnreadableRow("empty path")
    if "\x00" in value:
        raise UnreadableRow("not a valid path: it contains a NUL character")
    path = data_folder / value
    if not allow_outside:
        root = _resolved(data_folder)
        if not path.resolve().is_relative_to(root):
            raise UnreadableRow(f"path leaves data_folder {root} (set data.allow_outside_folder: true to allow it)")
    return path


@functools.lru_cache(maxsize=8)
def _resolved(folder: Path) -> Path:
    # Once per folder, not once per row: resolving walks every component with a system call.
    return folder.resolve()
