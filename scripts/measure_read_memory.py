"""Memory of reading a dataframe: `predict`'s reader against pandas reading the whole CSV at once.

Each way runs in a fresh child process that imports pandas (and pyarrow) first, then reads the file
and reports how much its peak RSS (VmHWM) and its RSS after the read grew. "pandas whole" is
`pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)` with Arrow's default memory
pool, what `predict.data.dataframe.read_dataframe` did before issue 18's change; "predict" is
`read_dataframe` itself (blocks of rows, Arrow on the C allocator).

Usage: python scripts/measure_read_memory.py DATA.csv [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import pandas as pd
    import pyarrow

    def status():
        fields = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS", "VmHWM")):
                    fields[line.split(":")[0]] = int(line.split()[1]) / 1024
        return fields

    way, path = sys.argv[1], Path(sys.argv[2])
    if way == "predict":
        from predict.data.dataframe import read_dataframe
    before = status()
    if way == "predict":
        frame = read_dataframe(path)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    after = status()
    print(json.dumps({
        "rows": len(frame),
        "peak_growth_mb": after["VmHWM"] - before["VmHWM"],
        "rss_growth_mb": after["VmRSS"] - before["VmRSS"],
        "arrow_pool": pyarrow.default_memory_pool().backend_name,
    }))
    """
)


def measure(way: str, path: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, way, path], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for way in ("pandas whole", "predict"):
        results = [measure(way, args.csv) for _ in range(args.runs)]
        peaks = sorted(result["peak_growth_mb"] for result in results)
        after = sorted(result["rss_growth_mb"] for result in results)
        print(
            f"{way:12s} {results[0]['rows']} rows, Arrow pool {results[-1]['arrow_pool']}: peak RSS +{peaks[0]:.0f}"
            f"-{peaks[-1]:.0f} MB, RSS after the read +{after[0]:.0f}-{after[-1]:.0f} MB ({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
