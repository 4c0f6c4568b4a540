"""scripts/bench_all_types.py scales every example config's data and benchmarks it (no timing asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"pre-processing", "model", "post-processing"}
RATES = ("rows_per_second", "raw_rows_per_second", "ratio_to_raw", "bound_rows_per_second", "ratio_to_bound")


@pytest.mark.slow
def test_every_type_is_benchmarked(tmp_path):
    output = tmp_path / "table.md"
    command = [
        sys.executable, str(ROOT / "scripts" / "bench_all_types.py"), "--rows", "64", "--warmup", "0",
        "--iterations", "2", "--workdir", str(tmp_path), "--output", str(output),
        "--jobs", "2",  # two types at once: timings are not checked here
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]

    stems = sorted(path.stem for path in (ROOT / "configs").glob("*.yaml"))
    results = json.loads(output.with_suffix(".json").read_text())
    assert [row["type"] for row in results["types"]] == stems
    for row in results["types"]:
        assert row["rows"] == 64, row
        for name in RATES:
            assert math.isfinite(row[name]) and row[name] > 0, (row["type"], name, row[name])
        assert row["dominant_stage"] in STAGES, row
        assert set(row["stage_cpu_seconds"]) == STAGES, row
        assert row["peak_rss_mb"] > 0, row

    table = output.read_text()
    assert table == completed.stdout
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| type ")]
    assert [line.split(" | ")[0].removeprefix("| ") for line in body] == stems
    assert f"{results['facts']['cores']} usable cores" in table and "onnxruntime" in table
