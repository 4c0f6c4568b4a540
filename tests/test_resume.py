"""Kill a real run with SIGKILL at several points; `--resume` must give the files of an uninterrupted run."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
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


class SmallCNN(torch.nn.Module):
    """A real convolutional model at 64x64 (the kills are placed by a named pipe, not by the model's speed)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 3),
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
    model = SmallCNN().eval()
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


def run_and_kill(config: Path, out: Path, *, rows_done: int) -> int:
    """Start a real run, SIGKILL it once its checkpoint holds `rows_done` rows, and return the rows the
    checkpoint held when it died.

    No clock decides when: the run reads its images from a copy of the data folder in which the image of
    the batch after next is a named pipe. Decoding it blocks the child (on the main thread, as
    `num_workers: 0` says) just after it finished and checkpointed every batch before the one in flight;
    this side's open of the pipe returns exactly then. The pipe is replaced by the real image for `--resume`.
    """
    batch_size = yaml.safe_load(config.read_text())["runtime"]["batch_size"]
    data = data_with_pipe(config.parent, out.parent / f"{out.name}_data", row=rows_done + batch_size)
    command = [sys.executable, "-m", "predict", "--config", str(config), "--quiet", *placement(out, data)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = threading.Thread(target=release_when_done, args=(process, data.pipe))
    watcher.start()
    with open(data.pipe, "wb"):  # returns once the child opens the pipe to decode it
        exited_early = process.poll() is not None
        process.send_signal(signal.SIGKILL)
    watcher.join()
    assert not exited_early, (
        f"the run ended before reaching row {rows_done + batch_size}: {process.stderr.read().decode()}"
    )
    process.stderr.close()
    data.unblock()
    manifest = out / ".validation.partial" / "manifest.json"
    return _rows_done(manifest) if manifest.is_file() else 0


def release_when_done(process: subprocess.Popen, pipe: Path) -> None:
    """Once the child has exited, open the pipe for reading: should it have died before reaching the
    pipe, that releases the writer's blocked open (after a kill it changes nothing)."""
    process.wait()
    os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))


@dataclass(frozen=True)
class PipedData:
    """A data folder whose image of one row is a named pipe."""

    folder: Path
    pipe: Path
    image: Path  # the real image the pipe stands for

    def unblock(self) -> None:
        self.pipe.unlink()
        os.link(self.image, self.pipe)


def data_with_pipe(source: Path, folder: Path, *, row: int) -> PipedData:
    """Hard links to the images of `source` in `folder`, except row `row`'s, which is a named pipe."""
    folder.mkdir()
    names = pd.read_csv(source / "frame.csv")["image"]
    for name in names:
        if name != names[row]:
            os.link(source / name, folder / name)
    os.mkfifo(folder / names[row])
    return PipedData(folder=folder, pipe=folder / names[row], image=source / names[row])


def placement(out: Path, data: PipedData) -> list[str]:
    return ["--set", f"output.dir={out}", "--set", f"data.data_folder={data.folder}"]


def _rows_done(manifest: Path) -> int:
    # The manifest is replaced atomically, so a read never sees half of it.
    return json.loads(manifest.read_text())["rows_done"]


def test_resumed_runs_equal_an_uninterrupted_one(slow_task, tmp_path):
    reference = tmp_path / "reference"
    assert main(["--config", str(slow_task), "--quiet", "--set", f"output.dir={reference}"]) == 0
    expected_csv, expected_pkl = outputs_of(reference)

    # Before the first chunk, early, mid-run, and with one chunk left (checkpoint_rows: 16).
    for target in (0, 16, 96, ROWS - 16):
        out = tmp_path / f"killed_at_{target}"
        assert run_and_kill(slow_task, out, rows_done=target) == target
        data = ["--set", f"data.data_folder={tmp_path / f'{out.name}_data'}"]
        assert main(["--config", str(slow_task), "--quiet", "--resume", "--set", f"output.dir={out}", *data]) == 0
        csv, raw = outputs_of(out)
        assert csv == expected_csv, f"killed at row {target}"
        assert raw.keys() == expected_pkl.keys()
        for key in raw:
            assert raw[key].dtype == expected_pkl[key].dtype
            assert_array_equal(raw[key], expected_pkl[key])
        assert not (out / ".validation.partial").exists()


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
    assert run_and_kill(slow_task, out, rows_done=48) == 48
    data = ["--set", f"data.data_folder={tmp_path / 'out_data'}"]
    code = main(
        [
            "--config",
            str(slow_task),
            "--quiet",
            "--resume",
            "--set",
            f"output.dir={out}",
            *data,
            "--set",
            "runtime.batch_size=4",
        ]
    )
    assert code == 2
    assert "scored something else (changed: config)" in capsys.readouterr().err
