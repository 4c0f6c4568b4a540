"""Typed batch contexts: each loader builds the one its problem type's head reads, and it crosses processes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from predict.config import TaskConfig
from predict.data.collate import Batch, BatchDataset, batch_loader, from_shared, to_shared
from predict.data.context import ChunkContext, Context, ImageContext, WindowContext, WordContext
from predict.plan import read_rows
from predict.problems import PROBLEMS
from predict.runners.base import TensorSpec
from predict.task import load_config
from tests.heads.test_dense_heads import detection_head

ROOT = Path(__file__).resolve().parents[2]
FLOAT, INT = np.dtype(np.float32), np.dtype(np.int64)


def spec(name: str, shape: tuple, dtype: np.dtype) -> TensorSpec:
    return TensorSpec(name=name, shape=shape, dtype=dtype)


TEXT_INPUTS = (spec("input_ids", (None, None), INT), spec("attention_mask", (None, None), INT))

# The committed examples (configs/*.yaml), one per loader layout, with the model inputs their
# models take (written out here, so no model is loaded), and the context their batches carry.
LAYOUTS = {
    "image_classification": ((spec("image", (None, 32, 32, 3), FLOAT),), ImageContext),
    "image_object_detection": ((spec("images", (None, 3, 64, 64), FLOAT),), ImageContext),
    "image_semantic_segmentation": ((spec("image", (None, 64, 64, 3), FLOAT),), ImageContext),
    "image_instance_segmentation": ((spec("images", (None, 3, 64, 64), FLOAT),), ImageContext),
    "text_regression": (TEXT_INPUTS, type(None)),
    "text_token_classification": (TEXT_INPUTS, WordContext),
    "text_span_prediction": ((*TEXT_INPUTS, spec("token_type_ids", (None, None), INT)), WindowContext),
    "audio_regression": ((spec("waveform", (None, 8000), FLOAT),), ChunkContext),
    "array_regression": ((spec("features", (None, 10), FLOAT),), type(None)),
}
HEADS = {spec.head for spec in PROBLEMS.values()}


def example_loader(name: str) -> tuple[TaskConfig, BatchDataset]:
    """The task of configs/{name}.yaml and its loader's batches."""
    task, dataframe = read_rows(load_config(ROOT / "configs" / f"{name}.yaml"))
    model_inputs, _ = LAYOUTS[name]
    return task, PROBLEMS[task.problem_type].build_dataset(task, dataframe, model_inputs)


def fields_of(context: Context) -> dict[str, object]:
    if context is None:
        return {}
    return {field.name: getattr(context, field.name) for field in dataclasses.fields(context)}


@pytest.mark.parametrize("name", LAYOUTS)
def test_each_loader_builds_the_context_its_head_reads(name):
    task, dataset = example_loader(name)
    batch = dataset[0]
    _, expected = LAYOUTS[name]
    assert type(batch.context) is expected
    rows = len(batch.row_ids)
    context = batch.context
    if isinstance(context, ImageContext):
        assert context.original_sizes.dtype == context.input_sizes.dtype == np.int64
        assert context.original_sizes.shape == context.input_sizes.shape == (rows, 2)
        assert (context.original_sizes > 0).all()
    elif isinstance(context, WordContext):
        tokens = batch.inputs["input_ids"].shape[1]
        assert context.word_ids.dtype == context.word_counts.dtype == np.int32
        assert context.word_ids.shape == (rows, tokens) and context.word_counts.shape == (rows,)
        assert context.word_ids.min() == -1 and (context.word_ids.max(axis=1) < context.word_counts).all()
    elif isinstance(context, WindowContext):
        windows, tokens = batch.inputs["input_ids"].shape
        assert windows > rows  # some contexts are longer than max_length
        assert context.window_rows.dtype == np.int64 and context.window_rows.shape == (windows,)
        assert set(context.window_rows) == set(batch.row_ids)
        assert context.offsets.dtype == np.int32 and context.offsets.shape == (windows, tokens, 2)
        assert context.contexts.dtype == object and context.contexts.shape == (rows,)
        assert all(isinstance(text, str) for text in context.contexts)
    elif isinstance(context, ChunkContext):
        assert context.chunk_counts.dtype == np.int64 and context.chunk_counts.shape == (rows,)
        assert context.chunk_counts.sum() == len(batch.inputs["waveform"]) > rows  # some clips are longer than 1 s
    # The registry's head reads what this loader builds, or nothing.
    head_context = PROBLEMS[task.problem_type].head.context_type
    assert head_context is None or isinstance(context, head_context)


def test_every_head_declares_a_context_class_or_none():
    classes = typing.get_args(Context)
    assert {head.__name__: head.context_type for head in HEADS if head.context_type is not None} == {
        "ObjectDetectionHead": ImageContext,
        "SemanticSegmentationHead": ImageContext,
        "InstanceSegmentationHead": ImageContext,
        "SpanPredictionHead": WindowContext,
        "TokenClassificationHead": WordContext,
    }
    assert all(head.context_type is None or head.context_type in classes for head in HEADS)


@pytest.mark.parametrize(
    "name",
    [
        "image_object_detection",
        "text_token_classification",
        "text_span_prediction",
        "audio_regression",
        "array_regression",
    ],
)
def test_contexts_round_trip_through_shared_memory(name):
    import torch

    batch = example_loader(name)[1][0]
    shared = to_shared(batch)
    assert type(shared.context) is type(batch.context)
    for field, value in fields_of(shared.context).items():
        original = fields_of(batch.context)[field]
        if original.dtype == object:
            assert value is original  # pickled as it is
        else:
            assert isinstance(value, torch.Tensor)
    back = from_shared(shared)
    assert type(back.context) is type(batch.context)
    for field, value in fields_of(back.context).items():
        original = fields_of(batch.context)[field]
        assert type(value) is np.ndarray and value.dtype == original.dtype
        if original.dtype == object:
            assert value.tolist() == original.tolist()
        else:
            assert value.tobytes() == original.tobytes()


def test_a_worker_process_hands_over_a_window_context():
    _, dataset = example_loader("text_span_prediction")
    batch = dataset[0]
    got = from_shared(next(iter(batch_loader(dataset, num_workers=1))))
    assert isinstance(got.context, WindowContext)
    for field, value in fields_of(got.context).items():
        assert type(value) is np.ndarray
        np.testing.assert_array_equal(value, fields_of(batch.context)[field])


def test_a_head_given_another_loaders_context_names_both():
    head = detection_head("yolo")
    outputs = {"predictions": np.zeros((1, 6, 3), dtype=np.float32)}
    words = WordContext(word_ids=np.zeros((1, 4), dtype=np.int32), word_counts=np.ones(1, dtype=np.int32))
    with pytest.raises(
        TypeError,
        match=r"^ObjectDetectionHead reads a batch context ImageContext but its loader built WordContext: "
        r"the problem type's loader and head do not match$",
    ):
        head.postprocess(outputs, Batch(np.arange(1), {}, [], words))
    with pytest.raises(TypeError, match=r"ImageContext but its loader built no context \(None\): "):
        head.postprocess(outputs, Batch(np.arange(1), {}, [], None))


def test_audio_workers_forked_after_torch_used_its_threads_do_not_hang(tmp_path):
    # The probe's path: log-mel features computed here first (torch's thread pool running), then
    # workers forked; torch's pool does not survive a fork, so a worker that used it would hang.
    # 20 s clips in batches of 8: enough work per call for torch to use its threads.
    rate = 8000
    soundfile.write(tmp_path / "long.wav", np.sin(np.arange(rate * 20) * 0.3).astype(np.float32) * 0.3, rate)
    pd.DataFrame({"audio_path": ["long.wav"] * 16, "sound": ["tone"] * 16}).to_csv(tmp_path / "rows.csv", index=False)
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; import numpy as np, torch;"
        "from tests.data.test_context import mel_dataset;"
        "from predict.data.collate import InProcessBatches, batch_loader;"
        f"dataset = mel_dataset(Path({str(tmp_path)!r}));"
        "torch.ones(20_000_000).exp().sum();"
        "expected = list(InProcessBatches(dataset)); got = list(batch_loader(dataset, num_workers=2));"
        "same = all(np.array_equal(a.inputs[k], b.inputs[k]) for a, b in zip(expected, got) for k in a.inputs);"
        "print(len(got) == len(expected) == 2 and same)"
    )
    try:
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("decoding workers hung after a fork (torch's thread pool)")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["True"]


def mel_dataset(folder: Path) -> BatchDataset:
    """configs/audio_classification.yaml's log-mel loader over `folder`/rows.csv, batches of 8."""
    overrides = [f"data.dataframe={folder / 'rows.csv'}", f"data.data_folder={folder}", "runtime.batch_size=8"]
    task, dataframe = read_rows(load_config(ROOT / "configs" / "audio_classification.yaml", overrides))
    model_inputs = (spec("log_mel", (None, 64, 17, 1), FLOAT),)  # the example model's input
    return PROBLEMS[task.problem_type].build_dataset(task, dataframe, model_inputs)
