"""Both backends (onnxruntime, torch) on both engines (local, Ray) on the same model and data.

Each combination runs the whole pipeline (`predict.pipeline.run_task`: decode, inference, head,
files) `--warmup` times untimed, then `--iterations` times; the medians are printed as a Markdown
table. A Keras `.h5` is converted once per backend (ONNX via tf2onnx, `.pt2` via Keras 3 on torch)
into a cache the timed runs reuse. Ray is started once, before any run, with `--ray-cpus` CPUs:
a user's cluster is already running, so its start-up is not part of a run; the actors' start-up
(loading the model) is, as it is for every real run.

Usage:
    python scripts/bench_backends.py --config BENCH.yaml [--warmup 1] [--iterations 3] [--ray-cpus 2]
        [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from predict.pipeline import run_task
from predict.task import load_config

COMBINATIONS = (("onnxruntime", "local"), ("torch", "local"), ("onnxruntime", "ray"), ("torch", "ray"))


def main() -> None:
    """Run every combination and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    options = parser.parse_args()

    import ray

    ray.init(num_cpus=options.ray_cpus, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as scratch:
        for backend, engine in COMBINATIONS:
            # One output folder per backend: its conversion cache is made by the first (warm-up) run.
            overrides = [
                *options.overrides,
                f"runtime.backend={backend}",
                f"runtime.engine={engine}",
                f"output.dir={Path(scratch) / backend}",
            ]
            task = load_config(options.config, overrides)
            summaries = [
                run_task(task, progress=False, overwrite=True) for _ in range(options.warmup + options.iterations)
            ]
            timed = summaries[options.warmup :]
            rows.append(
                (
                    backend,
                    engine,
                    timed[-1].provider,
                    timed[-1].rows,
                    statistics.median(summary.rows_per_second for summary in timed),
                    statistics.median(summary.rows / summary.seconds for summary in timed),
                )
            )
            print(f"{backend} / {engine}: {rows[-1][4]:.1f} rows/s", flush=True)
    ray.shutdown()
    print()
    print("| backend | engine | ran on | rows | rows/s (scoring) | rows/s (with model loading) |")
    print("|---|---|---|---|---|---|")
    for backend, engine, provider, count, scoring, whole in rows:
        print(f"| {backend} | {engine} | {provider} | {count} | {scoring:.1f} | {whole:.1f} |")


if __name__ == "__main__":
    main()
