"""runtime.num_workers: a set value is used as it is; unset, the CPU count and the provider choose."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from predict.data.collate import batch_loader, decoding_workers
from predict.errors import ConfigError
from tests.data.test_collate import image_batches


@pytest.mark.parametrize(
    ("cpus", "model_on_cuda", "expected"),
    [(1, False, 0), (2, False, 0), (3, False, 2), (16, False, 2), (2, True, 2)],
)
def test_unset_workers_follow_the_cpu_count_and_the_provider(monkeypatch, cpus, model_on_cuda, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(cpus)), raising=False)
    assert decoding_workers(None, model_on_cuda=model_on_cuda) == expected


@pytest.mark.parametrize("configured", [0, 1, 5])
def test_a_configured_count_always_wins(configured):
    assert decoding_workers(configured, model_on_cuda=False) == configured
    assert decoding_workers(configured, model_on_cuda=True) == configured


def test_without_fork_unset_means_the_main_thread_and_a_set_count_is_refused(monkeypatch, image_folder):
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])  # as on Windows
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert decoding_workers(None, model_on_cuda=False) == 0
    with pytest.raises(ConfigError, match=r"^runtime.num_workers is 2: decoding worker processes are forked, which "):
        next(iter(batch_loader(image_batches(image_folder), num_workers=2)))
