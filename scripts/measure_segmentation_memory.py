"""Peak memory (RSS) and throughput of semantic segmentation runs as the row count grows.

Draws N 256x256 PNGs with 0 to 3 shapes each (scripts/make_dense_examples.py's scenes), exports a
small untrained fully convolutional torch model (256x256 input, 3 classes of logits, NCHW), and runs
`predict` on 500, 1000, 2000 and 4000 rows, each in a fresh process, printing the peak resident
memory of the main process and of its decoding workers, the rows/s and the size of the masks.
The masks (n, 3, 256, 256) float16 go to disk batch by batch (predict.writers.row_arrays) and
from there into the pkl piece by piece (predict.writers.pickle), so the peak should not grow with
n. After measuring, the child unpickles the pkl and prints what `masks` is there (an array, always).
Run from anywhere (takes a few minutes on 2 cores):

    python scripts/measure_segmentation_memory.py [--rows 500 1000 2000 4000] [--folder /tmp/segmentation_memory]
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT / "scripts"))
sys.path.insert(0, str(REPOSITORY_ROOT / "src"))


def make_data(folder: Path, rows: int) -> None:
    from make_dense_examples import CLASS_NAMES, draw_scene

    from predict.heads._masks import encode_rle

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for index in range(rows):
        name = f"{index:05d}.png"
        image, objects = draw_scene(rng, height=256, width=256, objects=int(rng.integers(0, 4)))
        if not (images / name).exists():
            image.save(images / name)
        present = sorted({item["class"] for item in objects})
        records.append({
            "image_path": name,
            "class_name": json.dumps([CLASS_NAMES[c] for c in present]),
            "rle_mask": json.dumps([
                encode_rle(np.any([o["mask"] for o in objects if o["class"] == c], axis=0)) for c in present
            ]),
        })  # fmt: skip
    pd.DataFrame(records).to_csv(folder / f"frame_{rows}.csv", index=False)


def make_model(path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1)
    ).eval()  # fmt: skip
    torch.onnx.export(
        model, (torch.zeros(1, 3, 256, 256),), str(path), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip


def child(config: Path) -> None:
    """Run one task in this process and print its peak RSS (MiB) as JSON."""
    from predict.pipeline import run_task
    from predict.task import load_config
    from predict.writers.run import RunWriter

    # The peak before the prediction files are written: what writing them (the pkl of all masks) adds is the rest.
    write_files = RunWriter.write
    before_files = {}

    def measured_write_files(*args, **kwargs):
        before_files["mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return write_files(*args, **kwargs)

    RunWriter.write = measured_write_files
    started = time.perf_counter()
    summary = run_task(load_config(config), progress=False, overwrite=True)
    result = {
        "rows": summary.rows,
        "seconds": round(time.perf_counter() - started, 1),
        "rows_per_second": round(summary.rows_per_second, 1),
        "write_seconds": round(summary.stage_seconds["write"], 1),
        "main_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "main_peak_rss_before_files_mib": before_files["mib"],
        "workers_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "pkl_mib": round(Path(summary.files["pkl"]).stat().st_size / 2**20),
        "metrics": summary.metrics,
    }
    with Path(summary.files["pkl"]).open("rb") as handle:  # after the peak was read: loading needs the masks whole
        masks = pickle.load(handle)["masks"]
    result["pkl_masks"] = f"{type(masks).__module__}.{type(masks).__name__} {masks.dtype}{list(masks.shape)}"
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/segmentation_memory"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child)
        return
    folder = arguments.folder
    folder.mkdir(parents=True, exist_ok=True)
    make_model(folder / "segmenter.onnx")
    for rows in arguments.rows:
        make_data(folder, rows)
        config = {
            "problem_type": "image_semantic_segmentation",
            "model": str(folder / "segmenter.onnx"),
            "data": {
                "dataframe": str(folder / f"frame_{rows}.csv"),
                "data_folder": str(folder / "images"),
                "image_column": "image_path",
                "label_columns": ["class_name", "rle_mask"],
            },
            "preprocessing": {"image_size": [256, 256], "mean": [0, 0, 0], "std": [255, 255, 255]},
            "runtime": {"batch_size": 32, "num_workers": 2},
            "output": {"dir": str(folder / f"run_{rows}"), "checkpoint_rows": 1024},
            "head": {"class_names": ["square", "circle", "other"], "activation": "sigmoid"},
        }
        path = folder / f"task_{rows}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True
        )
        print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
