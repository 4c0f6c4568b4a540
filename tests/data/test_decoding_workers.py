"""runtime.num_workers: a set value is used as it is; unset, the CPU count and the provider choose."""

from __future__ import annotations

import os

import pytest

from predict.data.collate import decoding_workers


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
