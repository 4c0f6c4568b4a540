"""scripts/trace_memory_by_stage.py still runs a task and reports a peak RSS for each of its stages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_of_a_detection_run_gets_its_peak(tmp_path):
    script, config = ROOT / "scripts" / "trace_memory_by_stage.py", ROOT / "configs" / "image_object_detection.yaml"
    command = [sys.executable, str(script), str(config), "--set", f"output.dir={tmp_path}"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert lines[0] == "image_object_detection, 16 rows: peak RSS by stage (MB)"
    peaks = dict(re.fullmatch(r"\s+(.+?)\s+(\d+\.\d)", line).groups() for line in lines[1:])
    stages = ["read rows", "model", "plan (head, labels)", "scoring", "rows merged", "metrics", "CSV", "pkl", "zip"]
    assert [stage for stage in peaks if not stage.startswith("after ")][: len(stages)] == stages
    assert all(float(value) > 50 for value in peaks.values())  # an interpreter with NumPy and onnxruntime
    assert (tmp_path / "validation_predictions.zip").is_file()
