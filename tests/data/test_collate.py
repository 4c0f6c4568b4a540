"""Batch loaders: the in-process loader gives the DataLoader's batches, byte for byte, without torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predict.config import ImagePreprocessing
from predict.data.collate import InProcessBatches, batch_loader, from_shared, to_shared
from predict.data.image import ImageBatches, ImageInput

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
def test_in_process_batches_equal_the_data_loaders(image_folder, first_batch):
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
    workers = batch_loader(dataset, num_workers=2, first_batch=first_batch)
    assert isinstance(workers, torch.utils.data.DataLoader)
    assert_same_batches(got, [from_shared(batch) for batch in single])
    assert_same_batches(got, [from_shared(batch) for batch in workers])
    assert got[-1].errors == [
        (20, "row 20, image_path 'missing.png': file not found: " + str(image_folder / "missing.png"))
    ]


def test_workers_send_tensors_and_the_main_side_gets_arrays(image_folder):
    import torch

    dataset = image_batches(image_folder)
    shared = next(iter(batch_loader(dataset, num_workers=1)))
    assert isinstance(shared.inputs["image"], torch.Tensor)  # crossed through shared memory
    batch = from_shared(shared)
    assert isinstance(batch.inputs["image"], np.ndarray) and isinstance(batch.row_ids, np.ndarray)


def test_in_process_loading_never_imports_torch(image_folder):
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path;"
        "from tests.data.test_collate import image_batches;"
        "from predict.data.collate import batch_loader, from_shared;"
        f"batches = [from_shared(b) for b in batch_loader(image_batches(Path({str(image_folder)!r})), num_workers=0)];"
        "print(len(batches), 'torch' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["4", "False"]
