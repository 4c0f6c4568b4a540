"""Benchmark: what handing batches over from decoding worker processes costs, in CPU-seconds.

Builds every batch of a task's rows three ways and counts the CPU-seconds of this process and its
children (user + system, `getrusage`) for one pass each: in this process (no hand-over at all), by
`predict.data.workers` (forked workers, pipes), and by torch's DataLoader workers with the collate
function the project used before (arrays as shared-memory tensors). The difference to the first is
the hand-over's cost; CPU-seconds are steadier than wall time on a shared machine.

    python scripts/bench_all_types.py --rows 8192 --types image_classification --workdir /tmp/bab-8192
    python scripts/bench_worker_handover.py /tmp/bab-8192/image_classification/task.yaml --passes 3
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable, Iterable

from predict.data.collate import BatchDataset, InProcessBatches, from_shared, to_shared
from predict.data.workers import WorkerBatches
from predict.plan import read_rows
from predict.problems import PROBLEMS
from predict.task import load_config


def cpu_seconds() -> float:
    """User + system CPU of this process and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def data_loader(dataset: BatchDataset, workers: int) -> Iterable:
    import torch.utils.data

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=range(len(dataset)), num_workers=workers, collate_fn=to_shared
    )
    return (from_shared(batch) for batch in loader)


def measure(build: Callable[[], Iterable]) -> tuple[float, float]:
    """CPU-seconds and wall seconds of one pass over every batch."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    for _ in build():
        pass
    return cpu_seconds() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    task, dataframe = read_rows(load_config(args.config))
    spec = PROBLEMS[task.problem_type]
    dataset = spec.build_dataset(task, dataframe, spec.load_runner(task, task.model, task.output_dir).inputs)
    import torch  # noqa: F401 - imported before timing, so the DataLoader's passes do not pay for it

    ways = {
        "in this process": lambda: InProcessBatches(dataset),
        f"{args.workers} forked workers, pipes (predict.data.workers)": lambda: WorkerBatches(dataset, args.workers),
        f"{args.workers} DataLoader workers, shared-memory tensors": lambda: data_loader(dataset, args.workers),
    }
    print(f"{len(dataset)} batches of {task.runtime.batch_size} rows, {args.passes} passes each, CPU-seconds / wall s")
    for name, build in ways.items():
        passes = [measure(build) for _ in range(args.passes)]
        shown = ", ".join(f"{cpu:.2f} / {wall:.2f}" for cpu, wall in passes)
        print(f"{name}: {shown}")


if __name__ == "__main__":
    main()
