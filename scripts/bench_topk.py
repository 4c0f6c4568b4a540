"""Benchmark: cosine top-k of N x D float32 embeddings against one float32 GEMM of the same size.

The roofline is the full N x N product E @ E.T, done in blocks into one reused buffer without any
top-k, with torch (MKL) and with NumPy (OpenBLAS) in two block shapes each; the fastest counts.
`cosine_topk` computes only the blocks on and above the diagonal (the matrix is symmetric), so the
same upper-triangle GEMM without a top-k is timed as well: the ratio to it is the selection's own
cost. Top-k and GEMM runs alternate, and the best of each is kept, so background load hits both
alike. Peak memory is the peak of Python-tracked allocations (NumPy buffers, outputs) during the
top-k call, measured in a separate run, on top of the embeddings themselves.

    python scripts/bench_topk.py                       # 100,000 x 256, k = 50, 2 rounds
    python scripts/bench_topk.py --rows 20000 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from predict.heads._ops import cosine_topk, l2_normalize

BLOCK_SHAPES = ((1024, 4096), (2048, 2048))  # (rows, columns) per block; 2048 is cosine_topk's default
TOPK_BLOCK = 2048


def blocked_gemm_torch(embeddings: np.ndarray, block_rows: int, block_columns: int) -> None:
    """The full N x N product in blocks, into one reused buffer, with torch."""
    tensor = torch.from_numpy(embeddings)
    buffer = torch.empty(block_rows, block_columns)
    rows = len(tensor)
    for row_start in range(0, rows, block_rows):
        queries = tensor[row_start : row_start + block_rows]
        for column_start in range(0, rows, block_columns):
            columns = tensor[column_start : column_start + block_columns]
            torch.mm(queries, columns.T, out=buffer[: len(queries), : len(columns)])


def blocked_gemm_numpy(embeddings: np.ndarray, block_rows: int, block_columns: int, upper_only: bool = False) -> None:
    """The same product with NumPy's BLAS; `upper_only` keeps the blocks on and above the diagonal."""
    buffer = np.empty((block_rows, block_columns), dtype=np.float32)
    rows = len(embeddings)
    for row_start in range(0, rows, block_rows):
        queries = embeddings[row_start : row_start + block_rows]
        for column_start in range(row_start if upper_only else 0, rows, block_columns):
            columns = embeddings[column_start : column_start + block_columns]
            if column_start == row_start:
                columns = columns.copy()  # as cosine_topk does: `a @ a.T` would go to the slower syrk
            np.matmul(queries, columns.T, out=buffer[: len(queries), : len(columns)])


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print one Markdown table row set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    embeddings = l2_normalize(np.random.default_rng(0).standard_normal((args.rows, args.dims), dtype=np.float32))
    flops = 2.0 * args.rows * args.rows * args.dims
    runs = {f"gemm torch {r}x{c}": (blocked_gemm_torch, embeddings, r, c) for r, c in BLOCK_SHAPES}
    runs |= {f"gemm numpy {r}x{c}": (blocked_gemm_numpy, embeddings, r, c) for r, c in BLOCK_SHAPES}
    runs["upper-triangle gemm numpy (half the flops)"] = (blocked_gemm_numpy, embeddings, TOPK_BLOCK, TOPK_BLOCK, True)
    runs["top-k"] = (cosine_topk, embeddings, args.k)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (function, *arguments) in runs.items():
            times[name].append(timed(function, *arguments))
        print({name: [round(value, 2) for value in values] for name, values in times.items()}, flush=True)

    tracemalloc.start()
    cosine_topk(embeddings, args.k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    best = {name: min(values) for name, values in times.items()}
    roofline_name = min((name for name in best if name.startswith("gemm")), key=best.get)
    roofline = best[roofline_name]
    print(
        f"\nrows {args.rows}, dims {args.dims}, k {args.k}, {os.cpu_count()} CPU(s), "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}"
    )
    print("| measure | best of rounds (s) | full-product GFLOP/s |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {flops / seconds / 1e9:.0f} |")
    print(f"\ntop-k / GEMM roofline ({roofline_name}): {best['top-k'] / roofline:.3f}x")
    upper_triangle = best[next(name for name in best if name.startswith("upper"))]
    print(f"top-k / upper-triangle GEMM (the selection's own cost): {best['top-k'] / upper_triangle:.3f}x")
    print(f"top-k peak traced memory: {peak / 2**20:.1f} MiB (embeddings: {embeddings.nbytes / 2**20:.1f} MiB)")
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
