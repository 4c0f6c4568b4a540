"""Every example in configs/ runs as-is and writes its prediction files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from predict.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_examples():
    assert {"image_classification.yaml", "image_regression.yaml"} <= {path.name for path in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_example_runs(config, tmp_path):
    assert main(["--config", str(config), "--quiet", "--set", f"output.dir={tmp_path}"]) == 0
    assert (tmp_path / "validation_predictions.csv").is_file()
    assert (tmp_path / "validation_raw_predictions.pkl").is_file()
    assert (tmp_path / "validation_predictions.zip").is_file()
    assert (tmp_path / "validation_metrics.json").is_file()


def test_python_dash_m_entry_point(tmp_path):
    config = ROOT / "configs" / "image_regression.yaml"
    completed = subprocess.run(
        [sys.executable, "-m", "predict", "--config", str(config), "--set", f"output.dir={tmp_path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "rows/s" in completed.stdout and "R2" in completed.stdout


def test_entry_point_exit_code_on_bad_config(tmp_path):
    config = ROOT / "configs" / "image_regression.yaml"
    completed = subprocess.run(
        [sys.executable, "-m", "predict", "--config", str(config), "--set", "runtime.batch_size=zero"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        "error: image_regression.yaml: runtime.batch_size must be an integer (got 'zero')"
    )
