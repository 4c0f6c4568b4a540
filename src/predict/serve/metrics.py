"""What `GET /metrics` shows (Prometheus text format): requests, latency, batches, the queue, the model and the process.

The names follow Prometheus' conventions (`_total` counters, `_seconds` durations). Every server has
its own registry, so two servers in one process (tests) never mix their counts.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest

from predict import __version__

# Seconds: a 96x96 MobileNetV2 row takes ~2-5 ms on 2 cores, a batch of 32 ~100 ms, a busy queue seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """The server's counters, histograms and gauges, in a registry of their own."""

    def __init__(self, *, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        # Which process answered: replicas behind Ray Serve's proxy share one address (predict.serve.ray_serve).
        Info("predict_server", "This server process", registry=registry).info(
            {"version": __version__, "pid": str(os.getpid())}
        )
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.requests = Counter(
            "predict_requests",
            "Inference requests answered, by model and HTTP status",
            ["model", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "predict_request_errors",
            "Inference requests answered with an error (status >= 400)",
            ["model", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "predict_request_duration_seconds",
            "From the request's arrival to its response, by model",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "predict_batch_size", "Rows per model run", buckets=_batch_buckets(max_batch_size), registry=registry
        )
        self.queue_wait = Histogram(
            "predict_queue_wait_seconds",
            "From a request's entry into the batcher's queue to the start of its model run",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge("predict_queue_depth", "Requests waiting for the model", registry=registry)
        self.model_busy = Counter(
            "predict_model_busy_seconds", "Seconds the model spent running batches", registry=registry
        )

    def observe_request(self, model: str, status: int, seconds: float) -> None:
        """One answered inference request."""
        self.requests.labels(model=model, status=str(status)).inc()
        if status >= 400:
            self.errors.labels(model=model, status=str(status)).inc()
        self.latency.labels(model=model).observe(seconds)

    def text(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


def _batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """1, 2, 4, ... up to the maximum batch size, and the maximum itself."""
    buckets = []
    size = 1
    while size < max_batch_size:
        buckets.append(float(size))
        size *= 2
    return (*buckets, float(max_batch_size))
