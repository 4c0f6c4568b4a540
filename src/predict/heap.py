"""Handing memory that Python and C libraries freed back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


def return_freed_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's `malloc_trim`; nothing elsewhere).

    Strings of more than 512 bytes (CSV cells of contexts, documents) come from malloc, not Python's own
    allocator; once a block of them is freed, glibc keeps the pages resident for reuse, and between
    live allocations it never returns them by itself. After reading 100,000 rows of 200-400-word
    contexts that was 60-70 MB held for the rest of the run (issue 18).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
