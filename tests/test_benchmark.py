"""`predict benchmark` runs end to end (2 iterations) so it cannot rot; it asserts no timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from predict.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_onnx_model(tmp_path, capsys):
    config = ROOT / "configs" / "image_regression.yaml"
    args = ["benchmark", "--config", str(config), "--batch-sizes", "4,16", "--warmup", "0", "--iterations", "2"]
    assert main([*args, "-o", str(tmp_path), "--set", f"output.dir={tmp_path / 'run'}"]) == 0
    printed = capsys.readouterr().out
    assert "| rows/s | raw session.run rows/s | ratio to raw | bound rows/s | ratio to bound |" in printed
    payload = json.loads((tmp_path / "benchmark.json").read_text())
    assert [result["batch_size"] for result in payload["results"]] == [4, 16]
    for result in payload["results"]:
        assert result["rows"] == 96 and result["rows_per_second"] > 0 and result["raw_rows_per_second"] > 0
        assert result["keras_rows_per_second"] is None  # an .onnx model has no Keras baseline
        assert set(result["stage_cpu_seconds"]) == {"pre-processing", "model", "post-processing"}
        assert result["stage_cpu_seconds"]["model"] > 0 and result["dominant_stage"] in result["stage_cpu_seconds"]
        cpu_seconds = sum(result["stage_cpu_seconds"].values())
        assert result["bound_rows_per_second"] == pytest.approx(96 / (cpu_seconds / result["cores"]))
        assert result["ratio_to_bound"] == pytest.approx(result["rows_per_second"] / result["bound_rows_per_second"])
        assert set(result["latency_ms"]) == {"p50", "p90", "p99"}
        assert (
            set(result["stage_seconds"]) == {"load", "inference", "postprocess", "write"}
            and result["model_seconds"] > 0
        )
    assert payload["facts"]["provider"] == "CPUExecutionProvider"
    assert payload["facts"]["num_workers"] == "unset"  # the config leaves it to the tool
    assert all(isinstance(result["decoding_workers"], int) for result in payload["results"])
    assert (tmp_path / "benchmark.md").read_text().startswith("`")


def test_benchmark_keras_baseline(tmp_path):
    pytest.importorskip("tensorflow")
    config = ROOT / "configs" / "image_classification.yaml"
    args = ["benchmark", "--config", str(config), "--batch-sizes", "32", "--warmup", "0", "--iterations", "1"]
    assert main([*args, "-o", str(tmp_path), "--set", f"output.dir={tmp_path / 'run'}"]) == 0
    result = json.loads((tmp_path / "benchmark.json").read_text())["results"][0]
    assert result["keras_rows_per_second"] > 0 and result["ratio_to_keras"] > 0


def test_benchmark_rejects_bad_batch_sizes(tmp_path, capsys):
    config = ROOT / "configs" / "image_regression.yaml"
    assert main(["benchmark", "--config", str(config), "--batch-sizes", "0,8", "-o", str(tmp_path)]) == 2
    assert "error: --batch-sizes must be positive integers (got [0, 8])" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_peak_rss_is_per_batch_size():
    # In a fresh process: the suite's own process holds what earlier tests left, which can hide the drop.
    script = """
from predict.benchmark import _peak_rss_mb, _reset_peak_rss

block = bytearray(300 * 2**20)  # touched: 300 MiB resident
block[:: 4096] = b"x" * len(block[:: 4096])
before = _peak_rss_mb()
del block
_reset_peak_rss()
print(before, _peak_rss_mb())
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = map(float, completed.stdout.split())
    assert before - after > 250, (before, after)
