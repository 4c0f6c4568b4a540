"""Load test of `predict serve`: throughput and latency at several concurrencies, batching on and off.

For each batching setting (`serve.max_batch_size` as configured with each of `--queue-delays`, then
`serve.max_batch_size: 1`), the script starts a real `python -m predict serve` on 127.0.0.1 (a free
port; nothing else is contacted), then for each
concurrency C runs C client threads for `--seconds`, each sending requests of `--rows` images one after
the other (the Open Inference Protocol with binary tensors, keep-alive connections, request bodies
built once beforehand so the client costs little CPU), and reports rows/s, p50/p99 latency, errors and
the mean rows per model run (from the server's /metrics). Next to them, the batch job's own rows/s on
the same images (`predict --config`, scoring time only), measured before and after the servers: the
ceiling a server can approach.

Everything is bounded: each level runs `--seconds`, a server that is not ready after READY_ATTEMPTS
polls is killed, and the servers are stopped with SIGTERM (their exit code is checked) at the end.

Usage:
    python scripts/make_benchmark_data.py /tmp/serve-bench --rows 1024
    python scripts/load_test.py --config /tmp/serve-bench/benchmark.yaml --concurrency 1,8,32 --seconds 15
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.pipeline import run_task
from predict.task import load_config

ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 0.25
READY_ATTEMPTS = 480  # 2 minutes: model load, .h5 conversion from the cache, warm-up
WARM_UP_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="an image task YAML")
    parser.add_argument("--concurrency", default="1,8,32", help="comma separated client counts (default: 1,8,32)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per level (default: 15)")
    parser.add_argument("--rows", type=int, default=1, help="images per request (default: 1)")
    parser.add_argument(
        "--images", type=int, default=256, help="distinct images sent, from the dataframe (default: 256)"
    )
    parser.add_argument(
        "--queue-delays",
        default="0,1000",
        help="serve.max_queue_delay_microseconds values to run with batching on (default: 0,1000)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    options = parser.parse_args()
    levels = [int(part) for part in options.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="load-test-"))
    task = load_config(options.config, options.overrides)
    name = task.serve.model_name or task.source.stem
    bodies = request_bodies(task, options.images, options.rows)
    results = {"batch_job_rows_per_second": [batch_job_rows_per_second(options.config, options.overrides, work)]}
    results["levels"] = []
    batching = [
        (f"batching, delay {delay} µs", [f"serve.max_queue_delay_microseconds={delay}"])
        for delay in (int(part) for part in options.queue_delays.split(","))
    ]
    for label, settings in [*batching, ("max_batch_size 1", ["serve.max_batch_size=1"])]:
        server, port = start_server(options.config, [*options.overrides, *settings], work)
        try:
            for clients in levels:
                row = run_level(port, name, bodies, clients=clients, seconds=options.seconds, rows=options.rows)
                row["batching"] = label
                results["levels"].append(row)
                print(format_row(row), flush=True)
        finally:
            code = stop(server)
        if code != 0:
            print(f"server ({label}) exited with {code}", file=sys.stderr)
            return 1
    results["batch_job_rows_per_second"].append(batch_job_rows_per_second(options.config, options.overrides, work))
    print(format_table(results))
    if options.output:
        options.output.write_text(json.dumps(results, indent=2))
    return 0


def request_bodies(task: TaskConfig, count: int, rows: int) -> list[tuple[bytes, str]]:
    """Inference bodies of `rows` images each, with their header length: the dataframe's first `count` images."""
    frame = pd.read_csv(task.data.dataframe)
    column = task.data.image_column
    folder = task.data.data_folder or task.data.dataframe.parent
    images = [(folder / name).read_bytes() for name in frame[column].iloc[:count]]
    bodies = []
    for start in range(0, len(images) - rows + 1, rows):
        chosen = images[start : start + rows]
        binary = b"".join(len(image).to_bytes(4, "little") + image for image in chosen)
        entry = {"name": column, "datatype": "BYTES", "shape": [rows], "parameters": {"binary_data_size": len(binary)}}
        header = json.dumps({"inputs": [entry], "parameters": {"binary_data_output": True}}).encode()
        bodies.append((header + binary, str(len(header))))
    return bodies


def batch_job_rows_per_second(config: Path, overrides: list[str], work: Path) -> float:
    """The batch job's scoring rows/s on the task's dataframe (model loading excluded), in this process."""
    task = load_config(config, [*overrides, f"output.dir={work / 'batch'}"])
    run_task(task, progress=False, overwrite=True)  # converts a .h5 once, into the cache the servers use
    summary = run_task(task, progress=False, overwrite=True)
    print(f"batch job: {summary.rows} rows, {summary.rows_per_second:.0f} rows/s (scoring only)", flush=True)
    return summary.rows_per_second


def start_server(config: Path, overrides: list[str], work: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sets = [value for override in [*overrides, f"output.dir={work / 'batch'}"] for value in ("--set", override)]
    command = [sys.executable, "-m", "predict", "serve", "--config", str(config), "--port", str(port), *sets]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    log = open(work / f"serve-{port}.log", "wb")  # noqa: SIM115 (the server writes it until it stops)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    for _ in range(READY_ATTEMPTS):
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}; see {log.name}")
        if get_status(port, "/v2/health/ready") == 200:
            return server, port
        time.sleep(POLL_SECONDS)
    server.kill()
    raise SystemExit(f"the server was not ready after {READY_ATTEMPTS * POLL_SECONDS:.0f} s; see {log.name}")


def stop(server: subprocess.Popen) -> int:
    server.send_signal(signal.SIGTERM)
    return server.wait(timeout=120)


def get_status(port: int, path: str) -> int | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None


def get_text(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    return connection.getresponse().read().decode()


def run_level(port: int, name: str, bodies: list, *, clients: int, seconds: float, rows: int) -> dict:
    """C client threads for `seconds` after a warm-up: rows/s, latency percentiles, errors, rows per model run.

    Throughput counts the requests answered inside the measured window; latency, those sent inside it.
    """
    path = f"/v2/models/{name}/infer"
    measure_from = time.perf_counter() + WARM_UP_SECONDS
    stop_at = measure_from + seconds
    timings: list[tuple[float, float]] = []  # (sent, answered) of each answered request
    errors: list[int] = []

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        index = number
        while (sent := time.perf_counter()) < stop_at:
            body, header_length = bodies[index % len(bodies)]
            index += clients
            connection.request("POST", path, body, {"Inference-Header-Content-Length": header_length})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                timings.append((sent, time.perf_counter()))  # list.append is atomic under the GIL
            else:
                errors.append(response.status)
        connection.close()

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    before = batch_counts(port)
    for thread in threads:
        thread.join(timeout=seconds + 120)
    after = batch_counts(port)
    answered = sum(1 for sent, done in timings if measure_from <= done <= stop_at)
    latencies = [done - sent for sent, done in timings if measure_from <= sent < stop_at]
    runs = after[1] - before[1]
    return {
        "clients": clients,
        "requests": answered,
        "rows_per_second": answered * rows / seconds,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "mean_ms": 1000 * statistics.fmean(latencies),
        "errors": len(errors),
        "rows_per_model_run": (after[0] - before[0]) / runs if runs else None,
    }


def batch_counts(port: int) -> tuple[float, float]:
    """The server's rows scored and model runs so far (its batch size histogram's sum and count)."""
    text = get_text(port, "/metrics")
    total = float(re.search(r"^predict_batch_size_sum (\S+)$", text, re.M).group(1))
    count = float(re.search(r"^predict_batch_size_count (\S+)$", text, re.M).group(1))
    return total, count


def format_row(row: dict) -> str:
    return (
        f"{row['batching']:>24} | {row['clients']:>2} clients | {row['rows_per_second']:7.1f} rows/s | "
        f"p50 {row['p50_ms']:7.1f} ms | p99 {row['p99_ms']:7.1f} ms | {row['errors']} errors | "
        f"{row['rows_per_model_run'] or 0:.1f} rows per model run"
    )


def format_table(results: dict) -> str:
    lines = [
        "batch job (the ceiling), before / after the servers: "
        + " / ".join(f"{value:.0f}" for value in results["batch_job_rows_per_second"])
        + " rows/s",
        "",
        "| batching | clients | rows/s | p50 ms | p99 ms | rows per model run | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["levels"]:
        lines.append(
            f"| {row['batching']} | {row['clients']} | {row['rows_per_second']:.0f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['rows_per_model_run'] or 0:.1f} | {row['errors']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
