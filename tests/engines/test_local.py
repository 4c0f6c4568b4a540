"""The local engine's model threads: a runner that runs batches side by side gets them side by side, in order."""

from __future__ import annotations

import threading
import time

import numpy as np

from predict.engines.local import _ModelThread


class _MeetingRunner:
    """Each run waits until `concurrent_batches` runs are inside it at once: it can only finish when the
    engine really runs that many batches side by side (a model's run cannot be held open on purpose)."""

    inputs = outputs = ()
    provider = "test"

    def __init__(self, concurrent_batches: int) -> None:
        self.concurrent_batches = concurrent_batches
        self.meeting = threading.Barrier(concurrent_batches, timeout=120)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.meeting.wait()
        time.sleep(0.05)  # the model's work, done side by side: busy time summed per run would be twice the wall time
        return {"doubled": feeds["x"] * 2}


def test_batches_run_side_by_side_come_back_in_submission_order_and_busy_time_counts_once():
    runner = _MeetingRunner(concurrent_batches=2)
    started = time.perf_counter()
    with _ModelThread(runner) as model:
        futures = [model.submit({"x": np.full(3, index)}) for index in range(6)]
        results = [future.result() for future in futures]
    elapsed = time.perf_counter() - started
    assert model.concurrency == 2
    assert [int(result["doubled"][0]) for result in results] == [0, 2, 4, 6, 8, 10]
    assert model.runs == 6
    # Wall time with a batch in the model: overlapping runs count once, so never more than the time it all took.
    assert 0 < model.busy_seconds <= elapsed


def test_a_runner_without_side_by_side_batches_gets_one_model_thread():
    runner = _MeetingRunner(concurrent_batches=1)
    with _ModelThread(runner) as model:
        assert [model.submit({"x": np.ones(2)}).result()["doubled"].sum() for _ in range(3)] == [4.0] * 3
        assert model.concurrency == 1
    assert model.runs == 3
