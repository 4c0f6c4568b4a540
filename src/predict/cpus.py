"""The CPUs this process may use, for the defaults that scale with them (decoding workers, threads)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity where the platform has one (a container's or
    `taskset`'s limit), else every CPU of the machine."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
