"""scripts/measure_read_memory.py still reads with both ways and reports each one's memory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_both_ways_read_every_row_and_report_their_memory(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,text\n" + "".join(f"{row:05d},words of row {row}\n" for row in range(3000)), encoding="utf-8")
    command = [sys.executable, str(ROOT / "scripts" / "measure_read_memory.py"), str(path), "--runs", "1"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["pandas", "predict"]
    assert all(re.search(r"3000 rows, Arrow pool \w+: peak RSS \+\d+-\d+ MB", line) for line in lines), lines
    assert "Arrow pool system" in lines[1]
