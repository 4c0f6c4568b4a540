"""Peak RSS of one `predict` run, stage by stage: where does a run's memory go as rows grow?

Runs the task in this process with the pipeline's stage functions wrapped from outside (nothing in
`predict` changes), while a thread reads the process's RSS every `--interval-ms` and keeps the
highest value seen in each stage. A stage's peak includes what earlier stages left behind, so compare
the same stage between two row counts (issue 18: 10,000 against 100,000 rows), not stages with each other.

Usage: python scripts/trace_memory_by_stage.py CONFIG [--set KEY=VALUE ...] [--interval-ms 20]
"""

from __future__ import annotations

import argparse
import functools
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import predict.pipeline as pipeline
import predict.writers.run as run_writer
from predict.task import load_config

# (module, function, stage), in the order a run reaches them.
STAGES = (
    (pipeline, "read_rows", "read rows"),
    (pipeline, "resolve_model", "model"),
    (pipeline, "build_plan", "plan (head, labels)"),
    (run_writer.RunWriter, "add", "scoring"),
    (run_writer.RunWriter, "rows", "rows merged"),
    (pipeline, "_metrics", "metrics"),
    (run_writer, "_write_csv", "CSV"),
    (run_writer, "write_raw_predictions", "pkl"),
    (run_writer, "write_archive", "zip"),
)


class StagePeaks:
    """The highest RSS seen while each stage ran (and after it, until the next began)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stage = "start"
        self.peaks: dict[str, float] = {}
        self.page_mb = resource.getpagesize() / 2**20

    def sample(self) -> None:
        with open("/proc/self/statm") as handle:
            rss = int(handle.read().split()[1]) * self.page_mb
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)

    def sample_forever(self) -> None:
        while True:
            self.sample()
            time.sleep(self.interval)

    def wrap(self, function: Callable[..., Any], stage: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def staged(*args: Any, **kwargs: Any) -> Any:
            self.stage = stage
            self.sample()  # every stage gets a value, however short
            try:
                return function(*args, **kwargs)
            finally:
                self.sample()
                self.stage = f"after {stage}"

        return staged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args()
    task = load_config(args.config, args.overrides)
    peaks = StagePeaks(args.interval_ms / 1000)
    for owner, name, stage in STAGES:
        setattr(owner, name, peaks.wrap(getattr(owner, name), stage))
    threading.Thread(target=peaks.sample_forever, daemon=True).start()
    summary = pipeline.run_task(task, progress=False, overwrite=True)
    time.sleep(2 * peaks.interval)  # one more sample of the last stage
    print(f"{summary.problem_type}, {summary.rows} rows: peak RSS by stage (MB)")
    for stage, peak in peaks.peaks.items():
        print(f"  {stage:28s} {peak:8.1f}")
    print(f"  {'whole process (ru_maxrss)':28s} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.1f}")


if __name__ == "__main__":
    main()
