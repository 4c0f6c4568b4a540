"""Benchmark: PNG/JPEG decoders on the same files, single thread, with a pixel-equality check.

Each decoder turns a file into uint8[H, W, 3] RGB, the array the image loader needs. Pillow is the
reference: another decoder counts only where its pixels equal Pillow's on every file. The best of
`--rounds` passes over all files is kept (files are read from the page cache after the first pass).

    python scripts/make_benchmark_data.py /tmp/lead-bench
    python scripts/bench_decoders.py /tmp/lead-bench/images --rounds 5
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def pillow(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def opencv(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def pyspng(path: Path) -> np.ndarray:
    import pyspng as spng

    return spng.load(path.read_bytes(), "RGB")


DECODERS: dict[str, tuple[str, Callable[[Path], np.ndarray]]] = {
    "Pillow": ("PIL", pillow),
    "OpenCV": ("cv2", opencv),
    "pyspng": ("pyspng", pyspng),
}


def main() -> None:
    """Time every installed decoder over the folder's images and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    paths = sorted(path for path in args.folder.iterdir() if path.suffix.lower() in (".png", ".jpg", ".jpeg"))
    reference = [pillow(path) for path in paths]
    print(f"{len(paths)} files from {args.folder}\n")
    print("| decoder | ms per image | relative to Pillow | pixels equal Pillow's |")
    print("|---|---|---|---|")
    pillow_ms = None
    for name, (module, decode) in DECODERS.items():
        if importlib.util.find_spec(module) is None:
            print(f"| {name} | not installed | | |")
            continue
        if name == "pyspng" and any(path.suffix.lower() != ".png" for path in paths):
            print(f"| {name} | PNG only | | |")
            continue
        best = float("inf")
        for _ in range(args.rounds):
            started = time.perf_counter()
            arrays = [decode(path) for path in paths]
            best = min(best, time.perf_counter() - started)
        equal = all(np.array_equal(array, expected) for array, expected in zip(arrays, reference))
        ms = best / len(paths) * 1000
        pillow_ms = pillow_ms or ms
        print(f"| {name} | {ms:.3f} | {ms / pillow_ms:.2f}x | {'yes' if equal else 'NO'} |")


if __name__ == "__main__":
    main()
