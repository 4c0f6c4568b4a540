"""Benchmark: cosine top-k of N x D float32 embeddings against one float32 GEMM of the same size.

The roofline is the N x N product itself, done in the same (block_rows x block_columns) blocks
into one reused buffer, without any top-k; whichever of torch (MKL) and NumPy (OpenBLAS) is
faster sets it. Top-k and GEMM runs alternate, and the best of each is kept, so background load
hits both alike. Peak memory is the peak of Python-tracked allocations (NumPy buffers, outputs)
during the top-k call, measured in a separate run, on top of the embeddings themselves.

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

from predict.heads._ops import cosine_topk, l2_normalize  # noqa: E402

BLOCK_ROWS, BLOCK_COLUMNS = 1024, 4096  # cosine_topk's defaults


def blocked_gemm_torch(embeddings: np.ndarray) -> None:
    """The N x N product in blocks, into one reused buffer: the roofline top-k is measured against."""
    tensor = torch.from_numpy(embeddings)
    buffer = torch.empty(BLOCK_ROWS, BLOCK_COLUMNS)
    rows = len(tensor)
    for row_start in range(0, rows, BLOCK_ROWS):
        queries = tensor[row_start : row_start + BLOCK_ROWS]
        for column_start in range(0, rows, BLOCK_COLUMNS):
            columns = tensor[column_start : column_start + BLOCK_COLUMNS]
            torch.mm(queries, columns.T, out=buffer[: len(queries), : len(columns)])


def blocked_gemm_numpy(embeddings: np.ndarray) -> None:
    """The same product with NumPy's BLAS."""
    buffer = np.empty((BLOCK_ROWS, BLOCK_COLUMNS), dtype=np.float32)
    rows = len(embeddings)
    for row_start in range(0, rows, BLOCK_ROWS):
        queries = embeddings[row_start : row_start + BLOCK_ROWS]
        for column_start in range(0, rows, BLOCK_COLUMNS):
            columns = embeddings[column_start : column_start + BLOCK_COLUMNS]
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
    times: dict[str, list[float]] = {"gemm torch": [], "gemm numpy": [], "top-k": []}
    for _ in range(args.rounds):
        times["gemm torch"].append(timed(blocked_gemm_torch, embeddings))
        times["gemm numpy"].append(timed(blocked_gemm_numpy, embeddings))
        times["top-k"].append(timed(cosine_topk, embeddings, args.k))
        print({name: [round(value, 2) for value in values] for name, values in times.items()}, flush=True)

    tracemalloc.start()
    cosine_topk(embeddings, args.k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    best = {name: min(values) for name, values in times.items()}
    roofline_name = min(("gemm torch", "gemm numpy"), key=best.get)
    roofline = best[roofline_name]
    print(f"\nrows {args.rows}, dims {args.dims}, k {args.k}, {os.cpu_count()} CPU(s), torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| measure | best of rounds (s) | GFLOP/s |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {flops / seconds / 1e9:.0f} |")
    print(f"\ntop-k / GEMM roofline ({roofline_name}): {best['top-k'] / roofline:.3f}x")
    print(f"top-k peak traced memory: {peak / 2**20:.1f} MiB (embeddings: {embeddings.nbytes / 2**20:.1f} MiB)")
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
