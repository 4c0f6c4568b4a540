"""Dynamic batching, with Triton's names and meaning (`serve:` in the task YAML).

Requests wait in one queue, in arrival order. When the model is free, the batcher takes the oldest
request and waits up to `max_queue_delay_microseconds` from that request's arrival for more to fill
the batch, then runs the model once on the requests at the front of the queue whose rows fit
`max_batch_size` (a request of n rows counts n and is never split: a request larger than the maximum
is refused) and whose input shapes match the first one's (text padded to its longest row may not
stack with another request's: Triton does not batch such requests either). Each request gets back
its own slice of the outputs, in its own order of rows. `max_queue_size` requests may wait; one more
is refused with 503.

The model runs on a thread of its own: the event loop keeps accepting, and the decoding threads
keep decoding the next requests while it runs (predict.serve.app). A runner that runs batches side
by side (`concurrent_batches`: the generation loop on the CPU, predict.runners.generation) gets that
many model threads, and the next batch is collected as soon as one of them is free.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from predict.serve.metrics import ServerMetrics
from predict.serve.protocol import RequestError

Arrays = dict[str, np.ndarray]


@dataclass(eq=False)
class _Job:
    """One request's inputs in the queue: `pieces` along the first axis (audio chunks, text windows), `rows` rows."""

    inputs: Arrays
    rows: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def pieces(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def signature(self) -> tuple:
        """What must match for two requests to share a model run: each input's dtype and shape beyond the first axis."""
        return tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(self.inputs.items()))


class Batcher:
    """Queues requests' inputs and runs the model on batches of them (see the module docstring)."""

    def __init__(
        self,
        run: Callable[[Arrays], Arrays],
        *,
        max_batch_size: int,
        max_queue_delay_seconds: float,
        max_queue_size: int,
        metrics: ServerMetrics,
        concurrency: int = 1,
    ) -> None:
        self.run = run
        self.concurrency = max(1, concurrency)
        self.max_batch_size = max_batch_size
        self.max_queue_delay_seconds = max_queue_delay_seconds
        self.max_queue_size = max_queue_size
        self.metrics = metrics
        self._queue: collections.deque[_Job] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._free: asyncio.Semaphore | None = None  # model threads not running a batch
        self._running: set[asyncio.Task] = set()
        self._model_thread = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="predict-model")

    def start(self) -> None:
        """Start batching on the running event loop."""
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(self.concurrency)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="predict-batcher")

    async def stop(self) -> None:
        """Stop batching once every queued request has been answered (the server stops taking new ones first)."""
        while self._queue:
            await asyncio.sleep(0.01)
        await asyncio.gather(*self._running)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._model_thread.shutdown(wait=True)

    async def score(self, inputs: Arrays, *, rows: int, timeout: float) -> Arrays:
        """The model's outputs for one request's inputs (first axis: its pieces, in order).

        Raises:
            RequestError: 400 more rows than `max_batch_size`, 503 the queue is full, 504 no answer in `timeout` s.
        """
        if rows > self.max_batch_size:
            raise RequestError(
                400, f"the request has {rows} rows; serve.max_batch_size is {self.max_batch_size}: split it"
            )
        if len(self._queue) >= self.max_queue_size:
            raise RequestError(
                503, f"the queue is full ({self.max_queue_size} requests wait, serve.max_queue_size): retry later"
            )
        job = _Job(inputs=inputs, rows=rows, future=asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self.metrics.queue_depth.set(len(self._queue))
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.TimeoutError:
            job.future.cancel()  # still queued: never run; running: its outputs are dropped
            raise RequestError(
                504, f"no answer within serve.request_timeout_seconds ({timeout:g} s from the request's arrival)"
            ) from None

    async def _loop(self) -> None:
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._free.acquire()  # a batch is collected only when a model thread can take it
            jobs = await self._collect()
            if not jobs:
                self._free.release()
                continue
            running = asyncio.get_running_loop().create_task(self._run_and_free(jobs))
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    async def _run_and_free(self, jobs: list[_Job]) -> None:
        try:
            await self._run(jobs)
        finally:
            self._free.release()

    async def _collect(self) -> list[_Job]:
        """The next batch: wait until it is full or the oldest request has waited its delay, then take it."""
        while self._queue and self._queue[0].future.done():  # timed out while queued
            self._queue.popleft()
        if not self._queue:
            return []
        first = self._queue[0]
        deadline = first.enqueued + self.max_queue_delay_seconds
        while self._fitting_rows(first) < self.max_batch_size and (left := deadline - time.perf_counter()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break
        jobs, rows = [], 0
        while self._queue and self._fits(self._queue[0], first, rows):
            job = self._queue.popleft()
            if not job.future.done():
                jobs.append(job)
                rows += job.rows
        self.metrics.queue_depth.set(len(self._queue))
        return jobs

    def _fits(self, job: _Job, first: _Job, rows: int) -> bool:
        return rows + job.rows <= self.max_batch_size and job.signature == first.signature

    def _fitting_rows(self, first: _Job) -> int:
        """Rows of the requests at the front of the queue that would share `first`'s batch now."""
        rows = 0
        for job in self._queue:
            if not self._fits(job, first, rows):
                break
            rows += job.rows
        return rows

    async def _run(self, jobs: list[_Job]) -> None:
        """One model run on the jobs' inputs, stacked; each job gets its own slice of the outputs."""
        started = time.perf_counter()
        for job in jobs:
            self.metrics.queue_wait.observe(started - job.enqueued)
        self.metrics.batch_rows.observe(sum(job.rows for job in jobs))
        if len(jobs) == 1:
            inputs = jobs[0].inputs
        else:
            inputs = {name: np.concatenate([job.inputs[name] for job in jobs]) for name in jobs[0].inputs}
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._model_thread, self._run_model, inputs)
        except Exception as error:  # the model failed on this batch: every request in it gets the error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        start = 0
        for job in jobs:
            stop = start + job.pieces
            if not job.future.done():
                job.future.set_result({name: values[start:stop] for name, values in outputs.items()})
            start = stop

    def _run_model(self, inputs: Arrays) -> Arrays:
        """On the model thread: one run, its time counted as the model's busy time."""
        started = time.perf_counter()
        try:
            return self.run(inputs)
        finally:
            self.metrics.model_busy.inc(time.perf_counter() - started)
