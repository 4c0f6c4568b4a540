"""Array tasks: the pipeline on a memory-mapped `.npy` against raw `session.run` on the same array in memory.

There is no decoding for arrays, so the ratio measures the pipeline's own overhead: reading rows from
the file, the model thread, post-processing, checkpoints, and (reported apart) writing the files.
Peak RSS of a whole `python -m predict` run at two row counts shows whether memory grows with N.

    python scripts/bench_arrays.py /tmp/bench-arrays --rows 1000000 --features 32 --batch-sizes 1024,4096
    python scripts/bench_arrays.py /tmp/bench-arrays --rows 1000000 --memory-rows 100000 1000000

Writes (once, reused) `X.npy`, `mlp.onnx` and `task.yaml` into the folder; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HIDDEN = 64


def make_inputs(folder: Path, *, rows: int, features: int) -> None:
    """X.npy float32 (rows, features), a small torch MLP as ONNX, and a test-split task reading them."""
    import torch
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    array_path = folder / f"X_{rows}x{features}.npy"
    if not array_path.exists():
        rng = np.random.default_rng(0)
        array = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.float32, shape=(rows, features))
        for start in range(0, rows, 100_000):
            stop = min(rows, start + 100_000)
            array[start:stop] = rng.normal(size=(stop - start, features))
        array.flush()
        del array
    model_path = folder / f"mlp_{features}.onnx"
    if not model_path.exists():
        torch.manual_seed(0)
        module = torch.nn.Sequential(
            torch.nn.Linear(features, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, 1),
        ).eval()  # fmt: skip
        torch.onnx.export(
            module, (torch.zeros(1, features),), str(model_path), input_names=["features"], output_names=["value"],
            dynamic_axes={"features": {0: "batch"}, "value": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    task = {
        "problem_type": "array_regression",
        "model": model_path.name,
        "data": {"inputs": array_path.name, "split": "test"},
        "runtime": {"threads": 0},
        "output": {"dir": "runs"},
    }
    (folder / f"task_{rows}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))


def raw_rows_per_second(model: Path, array: np.ndarray, *, batch_size: int, rounds: int) -> float:
    """session.run over the whole array in memory, batch by batch: onnxruntime's own defaults."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    seconds = []
    for _ in range(rounds):
        tick = time.perf_counter()
        for start in range(0, len(array), batch_size):
            session.run(None, {name: array[start : start + batch_size]})
        seconds.append(time.perf_counter() - tick)
    return len(array) / min(seconds)


def pipeline_seconds(config: Path, *, batch_size: int, rounds: int) -> dict[str, float]:
    """Best-of-`rounds` stage times of in-process runs (model loading excluded, as in `predict benchmark`)."""
    from predict.pipeline import run_task
    from predict.task import load_config

    task = load_config(config, [f"runtime.batch_size={batch_size}"])
    best = None
    for _ in range(rounds):
        summary = run_task(task, progress=False, overwrite=True)
        if best is None or summary.scoring_seconds < best.scoring_seconds:
            best = summary
    return {**best.stage_seconds, "model": best.model_seconds, "scoring": best.scoring_seconds, "rows": best.rows}


def peak_rss_mb(config: Path, *, batch_size: int) -> float:
    """Peak RSS of one whole `python -m predict` run, in its own process."""
    command = [
        sys.executable,
        "-m",
        "predict",
        "--config",
        str(config),
        "--quiet",
        "--overwrite",
        "--set",
        f"runtime.batch_size={batch_size}",
    ]
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: a fresh parent per measurement keeps them apart.
    parent = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    completed = subprocess.run([sys.executable, "-c", parent, *command], check=True, capture_output=True, text=True)
    return int(completed.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1024,4096")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--memory-rows", type=int, nargs="*", default=[], help="also measure peak RSS at these row counts"
    )
    args = parser.parse_args()

    for rows in {args.rows, *args.memory_rows}:
        make_inputs(args.folder, rows=rows, features=args.features)
    config = args.folder / f"task_{args.rows}.yaml"
    array = np.load(args.folder / f"X_{args.rows}x{args.features}.npy")  # in memory, for the raw baseline
    model = args.folder / f"mlp_{args.features}.onnx"
    print(
        f"{args.rows:,} x {args.features} float32 .npy, MLP {args.features}-{HIDDEN}-{HIDDEN}-1, best of {args.rounds}"
    )
    print(
        "| batch | raw session.run rows/s | pipeline loop rows/s | loop / raw | with files rows/s | with files / raw "
        "| read / wait / post / write s | model busy s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = []
    for batch_size in (int(value) for value in args.batch_sizes.split(",")):
        raw = raw_rows_per_second(model, array, batch_size=batch_size, rounds=args.rounds)
        stages = pipeline_seconds(config, batch_size=batch_size, rounds=args.rounds)
        # The loop: reading rows, waiting on the model, post-processing; `write` (checkpoints and files) apart.
        loop = args.rows / (stages["load"] + stages["inference"] + stages["postprocess"])
        whole = args.rows / stages["scoring"]
        parts = " / ".join(f"{stages[name]:.2f}" for name in ("load", "inference", "postprocess", "write"))
        print(
            f"| {batch_size} | {raw:,.0f} | {loop:,.0f} | {loop / raw:.2f}x | {whole:,.0f} | {whole / raw:.2f}x "
            f"| {parts} | {stages['model']:.2f} |"
        )
        results.append({"batch_size": batch_size, "raw": raw, "loop": loop, "whole": whole, **stages})
    for rows in args.memory_rows:
        mb = peak_rss_mb(args.folder / f"task_{rows}.yaml", batch_size=int(args.batch_sizes.split(",")[0]))
        print(f"peak RSS, whole command, {rows:,} rows: {mb:.0f} MB")
        results.append({"rows": rows, "peak_rss_mb": mb})
    (args.folder / "bench_arrays.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
