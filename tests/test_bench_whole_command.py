"""scripts/bench_whole_command.py still finds the pipeline stages it times (it wraps them from outside)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_is_timed_and_the_baseline_ran(tmp_path):
    output = tmp_path / "whole_command.json"
    command = [
        sys.executable, str(ROOT / "scripts" / "bench_whole_command.py"),
        str(ROOT / "configs" / "image_regression.yaml"),
        "--runs", "1", "--cold-runs", "1", "--no-keras", "--set", "runtime.num_workers=0", "-o", str(output),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    # A stage the script cannot see (a pipeline function renamed) leaves its mark unset: the script fails.
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(output.read_text())
    (stages,) = results["stage_seconds"]
    # Marks out of order (a wrapped function no longer called where the stage ends) give negative stages.
    assert list(stages) == [
        "import",
        "config",
        "rows",
        "model load",
        "first batch",
        "scoring",
        "metrics",
        "writing",
        "summary",
        "exit",
    ]
    assert all(seconds >= 0 for seconds in stages.values()), stages
    assert results["rows"] == len((ROOT / "configs" / "data" / "shapes" / "valid.csv").read_text().splitlines()) - 1
    assert [set(run) for run in results["cold_seconds"] + results["warm_seconds"]] == [{"wall", "cpu"}] * 2
    (raw,) = results["raw"]
    assert {"import", "session", "run", "process", "process_cpu"} == set(raw)
    assert results["keras"] is None
    assert "whole command / raw" in completed.stdout
