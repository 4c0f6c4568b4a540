"""Run pytest several times in a row while CPU-bound processes keep every core busy.

Flaky tests hide on a quiet machine: this runs them the way a loaded CI machine would. Each run's
pytest summary line is printed as it ends (its whole output, with the 10 slowest tests, goes to
`--logs`); the load stops with the script, and each run is bounded by `--timeout`.

    python scripts/tests_under_load.py --runs 3                      # the whole suite, 3 times
    python scripts/tests_under_load.py --runs 20 -- tests/test_pipeline.py -k decoder_is_the_bottleneck  # one test
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import subprocess
import sys
import time
from pathlib import Path

# pytest's closing line, with or without -q's bare form: "== 3 passed, 1 skipped in 9.1s ==" or "3 passed in 9.1s".
SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error|skipped|deselected).*?)\s*=*$")


def burn() -> None:
    """One CPU-bound loop, until killed."""
    value = 0
    while True:
        value = (value * 31 + 7) % 1_000_003


def run_pytest(arguments: list[str], *, timeout: float, log: Path) -> tuple[int, str, float]:
    """One pytest run (its output in `log`): its exit code, its summary line and its wall time."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=10", *arguments]
    with log.open("w") as output:
        try:
            code = subprocess.run(
                command, stdout=output, stderr=subprocess.STDOUT, timeout=timeout, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            code = 124
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if SUMMARY.match(line)]
    if code == 124 and lines:  # the tests ended, but the process (something left running) did not exit in time
        ended = SUMMARY.match(lines[-1]).group(1)
        summary = f"pytest ended ({ended}) but its process had not exited after {timeout:.0f} s"
    elif code == 124:
        summary = f"timed out after {timeout:.0f} s; the log ends: {text[-400:]!r}"
    else:
        summary = SUMMARY.match(lines[-1]).group(1) if lines else "no pytest summary line: " + text[-300:]
    if code not in (0, 124):
        failed = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
        summary = "\n    ".join([summary, *failed])
    return code, summary, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="pytest runs in a row (default 3)")
    parser.add_argument("--load", type=int, default=2, help="CPU-bound processes beside the tests (default 2)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds at most per pytest run (default 3600)")
    parser.add_argument(
        "--logs", type=Path, default=Path("tests-under-load"), help="folder for each run's pytest output"
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: what to pass to pytest (default: the whole suite)")
    args = parser.parse_args()

    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.load)]
    for process in burners:
        process.start()
    passed = 0
    try:
        for run in range(1, args.runs + 1):
            args.logs.mkdir(parents=True, exist_ok=True)
            log = args.logs / f"run_{run}.log"
            code, summary, seconds = run_pytest(args.pytest_args, timeout=args.timeout, log=log)
            passed += code == 0
            print(
                f"run {run}/{args.runs} (load {args.load}): rc {code}, {seconds:.0f} s: {summary} ({log})", flush=True
            )
    finally:
        for process in burners:
            process.kill()
    print(f"{passed} of {args.runs} runs passed with {args.load} CPU-bound processes beside them")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
