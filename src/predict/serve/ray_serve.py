"""`predict serve --engine ray`: the same server on Ray Serve, `serve.replicas` copies behind Ray's HTTP proxy.

Each replica is the local server (predict.serve.server.load_state and predict.serve.app.build_app):
the plan loaded and warmed up once, its own dynamic batcher, decoding threads and /metrics. Ray's
proxy listens on --host/--port and hands each request to a replica, so clients see the same routes
and answers as from the local server. Ray is found as the batch job's Ray engine finds it: the
cluster in `RAY_ADDRESS`, else a local instance started here and stopped with the server. The HTTP
proxy listens on --host (127.0.0.1 by default); Ray's own cluster ports are Ray's (token
authentication is on by default in Ray 2.60). Every node needs this package and the task's files at the same paths.

On SIGTERM or SIGINT the application is deleted: Ray stops routing to it, each replica answers the
requests it holds (for up to `serve.request_timeout_seconds`), and the command exits 0.

Needs Ray Serve: `pip install 'predict[serve,ray-serve]'`.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from predict.config import TaskConfig
from predict.engines.ray import connect_ray, gpus_per_actor
from predict.errors import ConfigError
from predict.serve.app import ServerState, build_app, log
from predict.serve.server import load_state, log_to_stderr

# Seconds a replica waits, beyond the request timeout, for its last requests before Ray stops it.
SHUTDOWN_MARGIN_SECONDS = 10


class TaskReplica:
    """One Ray Serve replica: the local server's state, loaded and warmed up once, and its routes."""

    def __init__(self, task: TaskConfig) -> None:
        log_to_stderr()
        self.state: ServerState = load_state(task)
        log.info("replica ready in process %d", os.getpid())

    def __serve_build_asgi_app__(self) -> Any:
        return build_app(self.state)


def serve_on_ray(task: TaskConfig, *, host: str, port: int) -> int:
    """Serve the task on Ray Serve until SIGTERM or SIGINT (see the module docstring).

    Returns:
        0 once stopped by a signal, every replica's accepted requests answered.

    Raises:
        ConfigError: Ray Serve is not installed, or `runtime.device: cuda` on a cluster without GPUs.
    """
    ray, serve = _import_ray_serve()
    log_to_stderr()
    connected = connect_ray(ray)
    stop = _stop_on_signals()
    name = task.serve.model_name or task.source.stem
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(_deployment(ray, serve, task).bind(task), name=name, route_prefix="/")
        log.info("serving %s on Ray Serve at http://%s:%d with %d replica(s)", name, host, port, task.serve.replicas)
        stop.wait()
        log.info("stopping: Ray Serve drains the replicas")
        serve.delete(name)  # on a shared cluster, only this application
    finally:
        if connected == "local":  # Serve on a shared cluster stays up for its other applications
            serve.shutdown()
        if connected:
            ray.shutdown()
    log.info("stopped: every accepted request was answered")
    return 0


def _deployment(ray: Any, serve: Any, task: TaskConfig) -> Any:
    """The replica class as a Ray Serve deployment: `serve.replicas` copies, each taking as many requests at
    once as its own batcher queues (Ray's default of 5 would keep batches small)."""
    gpus = gpus_per_actor(ray, task.runtime.device)
    return serve.deployment(
        serve.ingress()(TaskReplica),
        name="predict",
        num_replicas=task.serve.replicas,
        max_ongoing_requests=task.serve.max_queue_size,
        ray_actor_options={"num_cpus": 1, "num_gpus": gpus},
        graceful_shutdown_timeout_s=task.serve.request_timeout_seconds + SHUTDOWN_MARGIN_SECONDS,
        health_check_period_s=10,
    )


def _stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT; a second SIGINT exits at once, as Ctrl-C twice does."""
    stop = threading.Event()

    def handle(sig: int, frame: Any) -> None:
        if stop.is_set() and sig == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    return stop


def _import_ray_serve() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ImportError as error:
        raise ConfigError(
            f"predict serve --engine ray needs Ray Serve ({error.name} is missing): "
            "pip install 'predict[serve,ray-serve]'"
        ) from None
    return ray, serve
