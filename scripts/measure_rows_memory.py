"""Peak RSS of a whole `predict` run at several row counts: does memory stay flat as rows grow?

Scores the PNGs of a `make_benchmark_data.py` folder, repeated to N rows, with a small CNN exported
to ONNX (the model is not what is measured: the dataframe, checkpoints, head and writers are), each
run in a fresh child process that reports its own peak RSS and its loader workers'.

Usage: python scripts/measure_rows_memory.py BENCH_DIR [--rows 10000 100000] [--num-workers N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from predict.cli import main
    code = main(["--config", sys.argv[1], "--quiet"])
    print(json.dumps({
        "code": code,
        "main_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))
    """
)


class SmallCNN(torch.nn.Module):
    """96x96 RGB to 10 logits; cheap, so that 100,000 rows take a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(8, 10),
        )  # fmt: skip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


def main() -> None:
    """Run once per row count and print a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("bench", type=Path, help="folder made by scripts/make_benchmark_data.py")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--num-workers", type=int, help="runtime.num_workers (default: unset, the tool chooses)")
    options = parser.parse_args()
    frame = pd.read_csv(options.bench / "frame.csv")
    with tempfile.TemporaryDirectory(prefix="rows-memory-") as scratch:
        work = Path(scratch)
        torch.manual_seed(0)
        torch.onnx.export(
            SmallCNN().eval(), (torch.zeros(1, 3, 96, 96),), str(work / "small.onnx"), input_names=["image"],
            output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
            dynamo=False,
        )  # fmt: skip
        print("| rows | main peak RSS MB | worker peak RSS MB | seconds | rows/s |")
        print("|---|---|---|---|---|")
        for rows in options.rows:
            repeated = frame.iloc[[index % len(frame) for index in range(rows)]].reset_index(drop=True)
            repeated.insert(0, "row_id", range(rows))
            repeated.to_csv(work / f"frame_{rows}.csv", index=False)
            config = {
                "problem_type": "image_classification",
                "model": str(work / "small.onnx"),
                "data": {
                    "dataframe": str(work / f"frame_{rows}.csv"),
                    "data_folder": str(options.bench / "images"),
                    "image_column": "image_path",
                    "label_columns": ["label"],
                },
                "preprocessing": {"image_size": [96, 96]},
                "runtime": {
                    "batch_size": 128,
                    **({} if options.num_workers is None else {"num_workers": options.num_workers}),
                },
                "head": {"class_names": [f"class_{index}" for index in range(10)]},
                "output": {"dir": str(work / f"out_{rows}")},
            }
            (work / f"task_{rows}.yaml").write_text(yaml.safe_dump(config))
            started = time.perf_counter()
            completed = subprocess.run(
                [sys.executable, "-c", CHILD, str(work / f"task_{rows}.yaml")],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = time.perf_counter() - started
            measured = json.loads(completed.stdout.strip().splitlines()[-1])
            assert measured["code"] == 0, completed.stderr
            print(
                f"| {rows} | {measured['main_peak_rss_mb']:.0f} | {measured['worker_peak_rss_mb']:.0f} "
                f"| {seconds:.1f} | {rows / seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
