"""A real `python -m predict serve` in a subprocess on 127.0.0.1, and the batch job's answers to compare it with."""

from __future__ import annotations

import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from predict.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# Readiness: polled every POLL_SECONDS, at most READY_ATTEMPTS times (a model load and warm-up on the
# loaded 2-core VM take 5-20 s; a converted .h5 comes from the batch job's cache).
POLL_SECONDS = 0.25
READY_ATTEMPTS = 480


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A running `predict serve` process."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as tritonclient takes it."""
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 60) -> int:
        """Signal the server and wait for it: its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_server(config: Path, output_dir: Path, *overrides: str, engine: str = "local") -> Server:
    """`python -m predict serve --config CONFIG --engine ENGINE` on a free port, once /v2/health/ready answers 200.

    `output_dir` holds the batch job's converted model (a .h5 is converted once, by the batch job).
    """
    port = free_port()
    log_path = output_dir / f"serve-{port}.log"
    sets = [argument for override in (f"output.dir={output_dir}", *overrides) for argument in ("--set", override)]
    command = [sys.executable, "-m", "predict", "serve", "--config", str(config), "--port", str(port), *sets]
    command += ["--engine", engine]
    paths = [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    # RAY_DEDUP_LOGS=0: every replica's request lines reach the server's log (Ray folds repeated lines by default).
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "RAY_DEDUP_LOGS": "0"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=ROOT)
    server = Server(process, port, log_path)
    for _ in range(READY_ATTEMPTS):
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{server.log()[-3000:]}")
        if status(server.url + "/v2/health/ready") == 200:
            return server
        time.sleep(POLL_SECONDS)
    server.stop(signal.SIGKILL)
    raise AssertionError(
        f"the server was not ready after {READY_ATTEMPTS * POLL_SECONDS:.0f} s:\n{server.log()[-3000:]}"
    )


def status(url: str) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """POST raw bytes (no Content-Type unless given): the status and the body."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def batch_job(config: Path, output_dir: Path) -> tuple[dict, pd.DataFrame]:
    """`predict --config CONFIG` into `output_dir`: its pkl (validation split) and its CSV."""
    assert main(["--config", str(config), "--quiet", "--set", f"output.dir={output_dir}"]) == 0
    with open(output_dir / "validation_raw_predictions.pkl", "rb") as file:
        raw = pickle.load(file)  # our own batch job's file, read locally (never sent over HTTP)
    return raw, pd.read_csv(output_dir / "validation_predictions.csv", keep_default_na=False)


def wait_for_log(server: Server, pattern: str, *, count: int = 1) -> list[re.Match]:
    """The server log's matches of `pattern`, once there are `count` of them (polled, READY_ATTEMPTS times at most)."""
    found: list[re.Match] = []
    for _ in range(READY_ATTEMPTS):
        found = list(re.finditer(pattern, server.log()))
        if len(found) >= count or server.process.poll() is not None:
            break
        time.sleep(POLL_SECONDS)
    assert len(found) >= count, f"{count} line(s) like {pattern!r} expected in the server log:\n{server.log()[-3000:]}"
    return found


def wait_for_queue_depth(server: Server, depth: int, *, polls: int = 200) -> float:
    """The server's `predict_queue_depth` once it reaches `depth` (polled `polls` times at most, 50 ms apart)."""
    seen = 0.0
    for _ in range(polls):
        metrics = get(server.url + "/metrics")[1].decode()
        seen = float(re.search(r"^predict_queue_depth (\S+)$", metrics, re.M).group(1))
        if seen == depth:
            break
        time.sleep(0.05)
    return seen
