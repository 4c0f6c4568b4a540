"""Freed C-heap memory handed back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

# In a fresh process: 100,000 strings of 1 KB (malloc'd, as CSV cells of contexts are), every 50th kept, so the
# freed ones sit between live ones and glibc cannot give their pages back by shrinking the heap's top.
PROGRAM = """
from predict.heap import return_freed_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

texts = [str(i).rjust(1000, "x") for i in range(100_000)]
kept = texts[::50]
del texts
before = rss_mb()
return_freed_memory()
print(before - rss_mb(), len(kept))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "libc.so" not in str(ctypes.util.find_library("c")), reason="glibc only"
)
def test_freed_strings_between_live_ones_leave_the_process():
    released, _ = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
    ).stdout.split()
    assert float(released) > 50  # of the ~98 MB freed
