"""The local engine (`runtime.engine: local`): this process decodes and scores, batch after batch.

The model runs on a thread of its own, one batch ahead: while it scores batch k, the main thread
decodes batch k+1 and the caller post-processes batch k-1 (measured on 2 cores: 1.1-1.2x the
throughput of taking turns, and no copies, unlike worker processes; see docs/performance.md). A
runner that runs batches side by side (`concurrent_batches`, the generation loop on the CPU) gets
that many model threads, and as many batches ahead.
Decoding runs on the main thread or in worker processes (`runtime.num_workers`); left unset on a
machine with few CPUs, it starts on the main thread and moves to workers after `PROBE_BATCHES`
batches if the decoder, not the model, turns out to be the bottleneck.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from predict.data.collate import (
    DEFAULT_WORKERS,
    Batch,
    BatchDataset,
    batch_loader,
    can_fork,
    decoding_workers,
    from_shared,
)
from predict.engines.base import Scored, check_readable

if TYPE_CHECKING:
    from predict.plan import Plan
    from predict.runners.base import Runner

# num_workers unset on few CPUs: batches decoded on the main thread before the engine compares the
# decoder's time per batch with the model's (see decoder_bound).
PROBE_BATCHES = 8


def decoder_bound(load_seconds_per_batch: float, model_seconds_per_batch: float) -> bool:
    """Whether the model waits on the decoder: then parallel decoding processes pay off, since they
    take CPU the model leaves idle (measured: a small CNN on 2 cores, 4,214 vs 3,621 rows/s)."""
    return load_seconds_per_batch > model_seconds_per_batch


class LocalEngine:
    """Streams a plan's batches through its runner in this process (see the module docstring)."""

    def __init__(self) -> None:
        self.stage_seconds = {"load": 0.0, "inference": 0.0}
        self.model_seconds = 0.0
        self.decoding_workers: int | None = 0
        self.provider = ""
        self.notes: list[str] = []

    def stream(self, plan: Plan, first_batch: int) -> Iterator[Scored]:
        """Batches `first_batch`.. with the model's outputs, in row order; one batch is in flight ahead."""
        self.provider = plan.runner.provider
        dataset = plan.dataset()
        # Array rows are read, not decoded: handing a batch over from a worker process costs more than
        # reading it (1,000,000 x 32 float32, batch 1024: 0.49M rows/s through 2 workers, against 6.5M
        # rows/s for raw session.run). With runtime.num_workers unset they are read on the main thread.
        configured = plan.task.runtime.num_workers
        if configured is None and not plan.spec.modality.decoded:
            configured = 0
        on_cuda = plan.runner.provider == "CUDAExecutionProvider"
        self.decoding_workers = decoding_workers(configured, model_on_cuda=on_cuda)
        batches = iter(
            batch_loader(dataset, num_workers=self.decoding_workers, first_batch=first_batch, pin_memory=on_cuda)
        )
        # Unset and decoding on the main thread (few CPUs): check after a few batches that the model,
        # not the decoder, is the bottleneck; if not, worker processes decode the rest.
        probe = configured is None and self.decoding_workers == 0 and can_fork()  # workers are forked
        in_flight: collections.deque[tuple[Batch, Future, float]] = collections.deque()
        with _ModelThread(plan.runner) as model:
            fed = 0
            while (loaded := self._next(batches)) is not None:
                batch, tick = loaded
                check_readable(batch, plan.task)
                in_flight.append((batch, model.submit(batch.inputs), tick))
                fed += 1
                if probe and fed == PROBE_BATCHES:
                    probe = False
                    batches = self._after_probe(
                        model, in_flight[0][1], dataset, batches, first_batch=first_batch, fed=fed
                    )
                if len(in_flight) > model.concurrency:  # the model runs these while the oldest is post-processed
                    yield self._finish(*in_flight.popleft())
            while in_flight:
                yield self._finish(*in_flight.popleft())
        self.model_seconds = model.busy_seconds

    def _next(self, batches: Iterator[Batch]) -> tuple[Batch, float] | None:
        """The next batch and when loading it began, or None at the end."""
        tick = time.perf_counter()
        batch = next(batches, None)
        self.stage_seconds["load"] += time.perf_counter() - tick
        return None if batch is None else (from_shared(batch), tick)

    def _finish(self, batch: Batch, future: Future, loading_started: float) -> Scored:
        waited = time.perf_counter()
        outputs = future.result()
        self.stage_seconds["inference"] += time.perf_counter() - waited
        return Scored(batch, outputs, loading_started)

    def _after_probe(
        self,
        model: _ModelThread,
        oldest: Future,
        dataset: BatchDataset,
        batches: Iterator[Batch],
        *,
        first_batch: int,
        fed: int,
    ) -> Iterator[Batch]:
        """The rest of the batches: from worker processes if decoding proved the bottleneck."""
        # The verdict needs the model's time per batch: wait for its oldest batch, whatever the threads'
        # scheduling (a busy machine may not have finished one yet; issue 20). A model error is raised
        # here, as it would be when that batch is finished.
        waited = time.perf_counter()
        oldest.result()
        self.stage_seconds["inference"] += time.perf_counter() - waited
        if not decoder_bound(self.stage_seconds["load"] / fed, model.busy_seconds / model.runs):
            return batches
        self.decoding_workers = DEFAULT_WORKERS
        self.notes.append(
            f"decoding moved to {DEFAULT_WORKERS} worker processes after {fed} batches: "
            "the decoder, not the model, was the bottleneck (set runtime.num_workers to choose)"
        )
        return iter(batch_loader(dataset, num_workers=DEFAULT_WORKERS, first_batch=first_batch + fed))


class _ModelThread:
    """Runs the model on background threads, `runner.concurrent_batches` batches at once (started in
    submission order); onnxruntime and torch release the GIL while they compute, so the main thread decodes
    and post-processes meanwhile.

    Attributes:
        concurrency: the batches the model runs at once.
        busy_seconds: wall seconds with at least one batch in the model (overlapping runs count once, so
            `busy_seconds / runs` is the model's time per batch at its throughput).
        runs: batches finished.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.concurrency = max(1, runner.concurrent_batches)
        self.busy_seconds = 0.0
        self.runs = 0
        self._running = 0
        self._busy_since = 0.0
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="predict-model")

    def submit(self, inputs: dict[str, np.ndarray]) -> Future:
        return self.executor.submit(self._run, inputs)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if not self._running:
                self._busy_since = time.perf_counter()
            self._running += 1
        try:
            outputs = self.runner.run(inputs)
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self.busy_seconds += time.perf_counter() - self._busy_since
        with self._lock:
            self.runs += 1
        return outputs

    def __enter__(self) -> _ModelThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # On an error, batches not yet started are dropped; the one running finishes first.
        self.executor.shutdown(wait=True, cancel_futures=True)
