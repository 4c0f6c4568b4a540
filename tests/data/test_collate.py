"""Batch loaders: in the main thread and in worker processes, the DataLoader's batches byte for byte, without torch."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predict.config import ImagePreprocessing
from predict.data.collate import Batch, InProcessBatches, batch_loader, from_shared, to_shared
from predict.data.image import ImageBatches, ImageInput
from predict.data.workers import WorkerBatches
from predict.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def image_batches(folder, *, batch_size: int = 6) -> ImageBatches:
    paths = pd.read_csv(folder / "labels.csv")["image_path"].tolist() + ["missing.png"]  # one unreadable row
    spec = ImageInput(name="image", height=16, width=16, channels=3, channels_first=True, dtype=np.dtype(np.float32))
    return ImageBatches(
        paths,
        data_folder=folder,
        image_input=spec,
        preprocessing=ImagePreprocessing(mean=(0.5,), std=(0.25,)),
        batch_size=batch_size,
        column="image_path",
    )


def context_arrays(batch) -> dict:
    """A batch's context as field name -> value ({} for None), to compare like the inputs."""
    context = batch.context
    if context is None:
        return {}
    return {field.name: getattr(context, field.name) for field in dataclasses.fields(context)}


def assert_same_batches(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        np.testing.assert_array_equal(mine.row_ids, theirs.row_ids)
        assert mine.errors == theirs.errors
        for mine_part, their_part in ((mine.inputs, theirs.inputs), (context_arrays(mine), context_arrays(theirs))):
            assert mine_part.keys() == their_part.keys()
            for name in mine_part:
                assert type(mine_part[name]) is np.ndarray and mine_part[name].dtype == their_part[name].dtype
                assert mine_part[name].tobytes() == their_part[name].tobytes()


@pytest.mark.parametrize("first_batch", [0, 2])
def test_in_process_and_worker_batches_equal_the_data_loaders(image_folder, first_batch):
    import torch.utils.data

    dataset = image_batches(image_folder)
    loader = batch_loader(dataset, num_workers=0, first_batch=first_batch)
    assert isinstance(loader, InProcessBatches) and loader.num_workers == 0 and loader.dataset is dataset
    assert len(loader) == len(dataset) - first_batch == 4 - first_batch
    got = [from_shared(batch) for batch in loader]
    # What the pipeline got before (issue 18): a DataLoader in the main process, and one with workers.
    single = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=range(first_batch, len(dataset)), collate_fn=to_shared
    )
    assert_same_batches(got, [from_shared(batch) for batch in single])
    for workers in (1, 2, 3, 8):  # 8: more workers than batches
        loader = batch_loader(dataset, num_workers=workers, first_batch=first_batch)
        assert isinstance(loader, WorkerBatches) and len(loader) == 4 - first_batch
        from_workers = list(loader)
        assert_same_batches(got, from_workers)
        assert all(batch.inputs["image"].flags.writeable for batch in from_workers)  # like arrays built here
    assert got[-1].errors == [
        (20, "row 20, image_path 'missing.png': file not found: " + str(image_folder / "missing.png"))
    ]
    assert multiprocessing.active_children() == []


class FailingBatches:
    """Batches of one row holding their index; batch `fail_at` raises `error` (or kills its worker)."""

    def __init__(self, count: int, fail_at: int, error: BaseException | None) -> None:
        self.count, self.fail_at, self.error = count, fail_at, error

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Batch:
        if index == self.fail_at:
            if self.error is None:
                os._exit(3)  # the worker dies as if killed: no exception to send
            raise self.error
        return Batch(np.array([index]), {"x": np.full((1, 4), index, dtype=np.float32)}, [], None)


def test_a_workers_error_is_raised_in_the_main_process_after_the_batches_before_it():
    loader = batch_loader(FailingBatches(6, 4, InputError("rows.csv: row 4: not a number")), num_workers=2)
    got = []
    with pytest.raises(InputError, match=r"^rows.csv: row 4: not a number$"):
        for batch in loader:
            got.append(int(batch.row_ids[0]))
    assert got == [0, 1, 2, 3]
    assert multiprocessing.active_children() == []


def test_a_worker_that_dies_is_named_with_its_exit_code():
    with pytest.raises(
        RuntimeError,
        match=r"decoding worker predict-decoder-0 \(pid \d+\) ended with exit code 3 before sending batch 2",
    ):
        list(batch_loader(FailingBatches(6, 2, None), num_workers=2))
    assert multiprocessing.active_children() == []


class PipeFillingBatches:
    """Batches of 4 MiB, far more than a pipe holds: each worker waits in `send` until the reader takes its
    batch, so none can finish its share and exit while the reader has only taken the first."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> Batch:
        return Batch(np.array([index]), {"x": np.zeros((1, 2**20), dtype=np.float32)}, [], None)


def test_workers_stop_when_the_reader_stops_early():
    # Small batches would not do: a worker that fits its whole share into its pipe exits on its own (seen on a
    # loaded machine: one child left to count).
    batches = iter(batch_loader(PipeFillingBatches(), num_workers=2))
    next(batches)
    assert len(multiprocessing.active_children()) == 2
    batches.close()  # what an error in the main loop does to the generator
    assert multiprocessing.active_children() == []


def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    # Batches far bigger than a pipe's buffer: both workers wait to write when the main process dies.
    code = (
        "import numpy as np, multiprocessing, sys;"
        "from predict.data.collate import Batch, batch_loader;"
        "Big = type('Big', (), {'__len__': lambda self: 100, '__getitem__': lambda self, i: "
        "Batch(np.array([i]), {'x': np.zeros((1, 2**20), dtype=np.float32)}, [], None)});"
        "batches = iter(batch_loader(Big(), num_workers=2)); next(batches);"
        "print(*[p.pid for p in multiprocessing.active_children()], flush=True); sys.stdin.read()"
    )
    main = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in main.stdout.readline().split()]
    assert len(pids) == 2
    main.kill()
    main.wait()
    for pid in pids:
        wait_until_gone(pid)


def wait_until_gone(pid: int) -> None:
    """Until process `pid` has exited (a zombie counts as exited); fails after a minute."""
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + 60
    while status.exists():
        try:
            if "\nState:\tZ" in status.read_text():
                return
        except OSError:
            return
        assert time.monotonic() < deadline, f"worker {pid} still running a minute after the main process died"
        time.sleep(0.05)


def test_loading_in_process_or_in_workers_never_imports_torch(image_folder):
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path;"
        "from tests.data.test_collate import image_batches;"
        "from predict.data.collate import batch_loader, from_shared;"
        f"dataset = image_batches(Path({str(image_folder)!r}));"
        "counts = [len(list(batch_loader(dataset, num_workers=n))) for n in (0, 2)];"
        "print(*counts, 'torch' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["4", "4", "False"]
