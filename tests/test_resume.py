"""Kill a real run with SIGKILL at several points; `--resume` must give the files of an uninterrupted run."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from numpy.testing import assert_array_equal
from PIL import Image

from predict.cli import main

ROWS = 240


class SlowCNN(torch.nn.Module):
    """Heavy enough (64x64, wide convolutions, one thread) that a run takes a few seconds to kill into."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 96, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(96, 96, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(96, 96, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(96, 3),
        )  # fmt: skip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


@pytest.fixture(scope="module")
def slow_task(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(1)
    rows = []
    for index in range(ROWS):
        name = f"{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name)
        rows.append({"image": name, "label": ["a", "b", "c"][index % 3], "bad": "" if index != 77 else "x"})
    pd.DataFrame(rows).to_csv(folder / "frame.csv", index=False)
    torch.manual_seed(0)
    model = SlowCNN().eval()
    torch.onnx.export(
        model, (torch.zeros(1, 3, 64, 64),), str(folder / "slow.onnx"), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    config = {
        "problem_type": "image_classification",
        "model": "slow.onnx",
        "data": {"dataframe": "frame.csv", "image_column": "image", "label_columns": ["label"]},
        "runtime": {"batch_size": 8, "num_workers": 0, "threads": 1},
        "output": {"checkpoint_rows": 16},
    }
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def outputs_of(folder: Path) -> tuple[bytes, dict]:
    with open(folder / "validation_raw_predictions.pkl", "rb") as handle:
        return (folder / "validation_predictions.csv").read_bytes(), pickle.load(handle)


def run_and_kill(config: Path, out: Path, *, rows_done: int, timeout: float = 60.0) -> int:
    """Start a real run and SIGKILL it once its checkpoint holds `rows_done` rows (0: as soon as it
    starts); return the rows the checkpoint held when it died."""
    command = [sys.executable, "-m", "predict", "--config", str(config), "--quiet", "--set", f"output.dir={out}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / ".validation.partial" / "manifest.json"
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if rows_done == 0 or (manifest.is_file() and _rows_done(manifest) >= rows_done):
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return _rows_done(manifest) if manifest.is_file() else 0


def _rows_done(manifest: Path) -> int:
    # The manifest is replaced atomically, so a read never sees half of it.
    return json.loads(manifest.read_text())["rows_done"]


def test_resumed_runs_equal_an_uninterrupted_one(slow_task, tmp_path):
    reference = tmp_path / "reference"
    assert main(["--config", str(slow_task), "--quiet", "--set", f"output.dir={reference}"]) == 0
    expected_csv, expected_pkl = outputs_of(reference)

    partial_points = []
    # Before the first chunk, early, mid-run, late, and after the last chunk (while the files are written).
    for target in (0, 16, 96, 200, ROWS):
        out = tmp_path / f"killed_at_{target}"
        rows_done = run_and_kill(slow_task, out, rows_done=target)
        partial_points.append(rows_done)
        assert main(["--config", str(slow_task), "--quiet", "--resume", "--set", f"output.dir={out}"]) == 0
        csv, raw = outputs_of(out)
        assert csv == expected_csv, f"killed at row {rows_done}"
        assert raw.keys() == expected_pkl.keys()
        for key in raw:
            assert raw[key].dtype == expected_pkl[key].dtype
            assert_array_equal(raw[key], expected_pkl[key])
        assert not (out / ".validation.partial").exists()
    # The kills must have landed mid-run at least twice, or the test proved nothing.
    assert sum(0 < rows < ROWS for rows in partial_points) >= 2, partial_points


def test_existing_predictions_are_not_overwritten(slow_task, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--config", str(slow_task), "--quiet", "--set", f"output.dir={out}", "--set", "data.dataframe=frame.csv"]
    assert main(args) == 0
    before = (out / "validation_predictions.csv").read_bytes()
    assert main(args) == 2
    assert "already has validation predictions" in capsys.readouterr().err
    assert (out / "validation_predictions.csv").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_resume_refuses_a_changed_config(slow_task, tmp_path, capsys):
    out = tmp_path / "out"
    run_and_kill(slow_task, out, rows_done=48)
    code = main(["--config", str(slow_task), "--quiet", "--resume", "--set", f"output.dir={out}", "--set", "runtime.batch_size=4"])
    if code == 0:
        pytest.skip("the run finished before the kill")
    assert "scored something else (changed: config)" in capsys.readouterr().err
