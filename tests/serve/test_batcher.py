"""Dynamic batching: batches never exceed the maximum, requests are never split, each gets its own rows back."""

from __future__ import annotations

import asyncio
import random
import threading

import numpy as np
import pytest

from predict.serve.batcher import Batcher
from predict.serve.metrics import ServerMetrics
from predict.serve.protocol import RequestError


class Model:
    """A model that doubles its input and records the rows of every run; `gate` holds runs until set."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.gate.wait(timeout=10)
        self.runs.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


def batcher(model: Model, **settings) -> Batcher:
    options = {"max_batch_size": 8, "max_queue_delay_seconds": 0.01, "max_queue_size": 100, **settings}
    return Batcher(model, metrics=ServerMetrics(max_batch_size=options["max_batch_size"]), **options)


def test_batches_never_exceed_the_maximum_and_every_request_gets_its_own_rows():
    model = Model()

    async def scenario() -> list[tuple[np.ndarray, np.ndarray]]:
        queue = batcher(model)
        queue.start()
        sizes = random.Random(3)
        requests = [np.arange(start * 100, start * 100 + sizes.randint(1, 8), dtype=np.float32) for start in range(60)]
        answers = await asyncio.gather(*(queue.score({"x": rows}, rows=len(rows), timeout=30) for rows in requests))
        await queue.stop()
        return [(rows, answer["y"]) for rows, answer in zip(requests, answers)]

    answers = asyncio.run(scenario())
    for rows, answer in answers:
        np.testing.assert_array_equal(answer, rows * 2)
    assert max(model.runs) <= 8
    assert len(model.runs) < 60  # requests did share runs
    assert sum(model.runs) == sum(len(rows) for rows, _ in answers)  # every row run once


def test_requests_of_different_shapes_do_not_share_a_run():
    model = Model()

    async def scenario():
        queue = batcher(model, max_queue_delay_seconds=0.2)
        queue.start()
        narrow = queue.score({"x": np.zeros((2, 3), np.float32)}, rows=2, timeout=30)
        wide = queue.score({"x": np.zeros((2, 5), np.float32)}, rows=2, timeout=30)
        answers = await asyncio.gather(narrow, wide)
        await queue.stop()
        return answers

    narrow, wide = asyncio.run(scenario())
    assert narrow["y"].shape == (2, 3) and wide["y"].shape == (2, 5)
    assert model.runs == [2, 2]


def test_a_request_larger_than_the_maximum_is_refused():
    async def scenario():
        queue = batcher(Model())
        queue.start()
        try:
            await queue.score({"x": np.zeros(9, np.float32)}, rows=9, timeout=30)
        finally:
            await queue.stop()

    with pytest.raises(RequestError, match=r"9 rows; serve\.max_batch_size is 8") as raised:
        asyncio.run(scenario())
    assert raised.value.status == 400


def test_a_full_queue_answers_503_and_a_late_answer_504():
    model = Model()
    model.gate.clear()  # the model is busy until the gate opens

    async def scenario():
        queue = batcher(model, max_queue_size=1, max_batch_size=1)
        queue.start()
        running = asyncio.ensure_future(queue.score({"x": np.ones(1, np.float32)}, rows=1, timeout=30))
        await asyncio.sleep(0.2)  # taken off the queue: the model holds it
        waiting = asyncio.ensure_future(queue.score({"x": np.ones(1, np.float32)}, rows=1, timeout=30))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError, match="queue is full") as full:
            await queue.score({"x": np.ones(1, np.float32)}, rows=1, timeout=30)
        late = asyncio.ensure_future(queue.score({"x": np.ones(1, np.float32)}, rows=1, timeout=0.01))
        results = await asyncio.gather(late, return_exceptions=True)
        model.gate.set()
        answers = await asyncio.gather(running, waiting)
        await queue.stop()
        return full.value.status, results[0], answers

    full, late, answers = asyncio.run(scenario())
    assert full == 503
    assert isinstance(late, RequestError) and late.status in (503, 504)
    assert [answer["y"].tolist() for answer in answers] == [[2.0], [2.0]]


def test_a_request_that_times_out_in_the_queue_is_never_run():
    model = Model()
    model.gate.clear()

    async def scenario():
        queue = batcher(model, max_batch_size=1)
        queue.start()
        first = asyncio.ensure_future(queue.score({"x": np.ones(1, np.float32)}, rows=1, timeout=30))
        await asyncio.sleep(0.2)
        with pytest.raises(RequestError, match=r"serve\.request_timeout_seconds") as late:
            await queue.score({"x": np.full(1, 5, np.float32)}, rows=1, timeout=0.05)
        model.gate.set()
        await first
        await queue.stop()
        return late.value.status

    assert asyncio.run(scenario()) == 504
    assert model.runs == [1]  # the timed-out request was dropped from the queue, not run


def test_a_model_error_fails_the_requests_of_its_batch_only():
    class Failing(Model):
        def __call__(self, inputs):
            if (inputs["x"] < 0).any():
                raise RuntimeError("the model failed")
            return super().__call__(inputs)

    async def scenario():
        queue = batcher(Failing(), max_batch_size=1)
        queue.start()
        answers = await asyncio.gather(
            queue.score({"x": -np.ones(1, np.float32)}, rows=1, timeout=30),
            queue.score({"x": np.ones(1, np.float32)}, rows=1, timeout=30),
            return_exceptions=True,
        )
        await queue.stop()
        return answers

    failed, served = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError)
    assert served["y"].tolist() == [2.0]


def test_a_runner_that_runs_batches_side_by_side_gets_them_side_by_side():
    """concurrency 2 (a generation loop on the CPU): each run can only finish once two are in the model at once."""

    class Meeting(Model):
        def __init__(self) -> None:
            super().__init__()
            self.meeting = threading.Barrier(2, timeout=60)

        def __call__(self, inputs):
            self.meeting.wait()
            return super().__call__(inputs)

    model = Meeting()

    async def scenario():
        queue = batcher(model, max_batch_size=2, concurrency=2)
        queue.start()
        requests = [np.full(2, index, np.float32) for index in range(6)]
        answers = await asyncio.gather(*(queue.score({"x": rows}, rows=2, timeout=90) for rows in requests))
        await queue.stop()
        return requests, answers

    requests, answers = asyncio.run(scenario())
    for rows, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer["y"], rows * 2)
    assert model.runs == [2] * 6
