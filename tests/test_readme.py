"""The README's two set-up commands are exactly what CI runs, and its quick start names real configs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def set_up_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_the_readme_commands_verbatim():
    commands = set_up_commands()
    assert len(commands) == 2, commands
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in commands:
        assert command in ci_lines, f"{command!r} is not a line of .ci/run"


def test_quick_start_configs_exist():
    text = (ROOT / "README.md").read_text()
    for config in set(re.findall(r"--config (configs/\S+\.yaml)", text)):
        assert (ROOT / config).is_file(), config
