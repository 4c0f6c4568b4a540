"""`predict serve`: load a task's plan once, warm it up, and serve it over HTTP until SIGTERM or SIGINT.

The plan is the batch job's (predict.plan.build_plan on the config's dataframe: the head reads its
class names there, exactly as a run does). Loading and warm-up finish before the socket opens, as
Triton loads its models before it listens: whoever can connect finds the server ready. On SIGTERM
or SIGINT the server stops accepting connections, answers every request it has already accepted
(queued ones included), and exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import uvicorn

from predict.config import TaskConfig
from predict.cpus import usable_cpus
from predict.plan import build_plan, read_rows
from predict.runners.backend import resolve_model
from predict.serve.app import ServerState, build_app, log
from predict.serve.batcher import Batcher
from predict.serve.metrics import ServerMetrics
from predict.serve.models import RawModel, TaskModel

# Decoding threads by default: the CPUs but one (the model's), at least 1 and at most 4.
MAX_DEFAULT_DECODING_THREADS = 4


def serve_task(task: TaskConfig, *, host: str, port: int) -> int:
    """Load, warm up and serve the task until a signal stops it.

    Returns:
        0 once stopped by SIGTERM or SIGINT with every accepted request answered.

    Raises:
        PredictError: the config, the model or the config's first rows cannot be loaded.
    """
    log_to_stderr()
    state = load_state(task)
    log.info("serving models %s on http://%s:%d", " and ".join(state.models), host, port)
    config = uvicorn.Config(
        build_app(state),
        host=host,
        port=port,
        lifespan="on",
        # The same event loop and HTTP parser whatever else is installed (ray[serve] brings uvloop and httptools):
        # the server's tests and docs/performance.md's figures are with these.
        loop="asyncio",
        http="h11",
        access_log=False,  # predict.serve.app.RequestLog writes one line per request
        log_level="info",
        timeout_graceful_shutdown=None,  # answer every accepted request, however long the queue
    )
    _Server(config, state).run()
    log.info("stopped: every accepted request was answered")
    return 0


def load_state(task: TaskConfig) -> ServerState:
    """The plan built as the batch job builds it, its two models warmed up on the config's first rows."""
    task, dataframe = read_rows(task)
    model_file = resolve_model(task, output_dir=task.output_dir)  # a converted .h5 is cached as a run caches it
    plan = build_plan(task, dataframe, model_file, output_dir=task.output_dir)
    serve = task.serve
    max_batch_size = serve.max_batch_size or task.runtime.batch_size
    name = serve.model_name or task.source.stem
    task_model = TaskModel(plan, name=name, max_batch_size=max_batch_size)
    task_model.warm_up(plan.runner.run)
    metrics = ServerMetrics(max_batch_size=max_batch_size)
    batcher = Batcher(
        plan.runner.run,
        max_batch_size=max_batch_size,
        max_queue_delay_seconds=serve.max_queue_delay_microseconds / 1_000_000,
        max_queue_size=serve.max_queue_size,
        metrics=metrics,
        concurrency=plan.runner.concurrent_batches,
    )
    threads = serve.decoding_threads or _default_decoding_threads()
    return ServerState(
        task_model=task_model,
        raw_model=RawModel(plan.runner, name=f"{name}_raw"),
        batcher=batcher,
        metrics=metrics,
        decoding=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict-decode"),
        request_timeout_seconds=serve.request_timeout_seconds,
        max_request_bytes=serve.max_request_bytes,
        config={
            "max_batch_size": max_batch_size,
            "max_queue_delay_microseconds": serve.max_queue_delay_microseconds,
            "max_queue_size": serve.max_queue_size,
            "request_timeout_seconds": serve.request_timeout_seconds,
        },
    )


def _default_decoding_threads() -> int:
    cpus = usable_cpus()
    return max(1, min(MAX_DEFAULT_DECODING_THREADS, cpus - 1))


def log_to_stderr() -> None:
    """predict.serve's info lines (one per request) on stderr, with a timestamp."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class _Server(uvicorn.Server):
    """uvicorn's server, which on SIGTERM/SIGINT shuts down gracefully and then exits 0.

    uvicorn's own handler re-raises the signal once its graceful shutdown is done, so the process
    would end by the signal (or KeyboardInterrupt) instead of returning; here a signal is how the
    server is meant to stop. A second SIGINT still forces the exit, as in uvicorn.
    """

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.stopping = True  # /v2/health/ready answers 503 from now on
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
