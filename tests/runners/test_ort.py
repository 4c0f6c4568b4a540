"""OrtRunner options on the CPU: IO binding and float16 give the same answers, or a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from predict.config import Precision, Toggle
from predict.errors import ConfigError
from predict.runners.backend import load_runner
from predict.runners.ort import OrtRunner
from predict.task import load_config
from tests.conftest import export_torch

pytest.importorskip("onnxconverter_common")


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((5, 3, 16, 16), dtype=np.float32)


def test_io_binding_matches_plain_run(torch_models, image):
    _, model = torch_models["softmax3"]
    plain = OrtRunner(model, io_binding=Toggle.OFF)
    bound = OrtRunner(model, io_binding=Toggle.ON)
    assert bound.io_binding and not plain.io_binding
    assert_array_equal(bound.run({"image": image})["scores"], plain.run({"image": image})["scores"])


def test_io_binding_with_a_fixed_batch_model(torch_models, image):
    _, model = torch_models["fixed_batch4"]
    plain = OrtRunner(model, io_binding=Toggle.OFF).run({"image": image})["scores"]
    assert_array_equal(OrtRunner(model, io_binding=Toggle.ON).run({"image": image})["scores"], plain)


def test_float16_is_checked_against_float32(torch_models, image):
    module, model = torch_models["logits3"]
    runner = OrtRunner(model, precision=Precision.FP16)
    outputs = runner.run({"image": image})["scores"]
    assert outputs.dtype == np.float32  # inputs and outputs keep their types
    with torch.no_grad():
        expected = module(torch.from_numpy(image)).numpy()
    assert_allclose(outputs, expected, atol=5e-2)
    assert any("float16 vs float32 on the first batch" in note for note in runner.notes)


class Overflowing(torch.nn.Module):
    """Fine in float32, infinite in float16 (65504 is float16's largest value)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.mean(dim=(2, 3)) * 1e5 + 1e5


def test_float16_that_drifts_is_refused(tmp_path, image):
    model = export_torch(Overflowing(), tmp_path / "overflow.onnx")
    runner = OrtRunner(model, precision=Precision.FP16)
    with pytest.raises(
        ConfigError,
        match=r"runtime.precision: fp16 moves output 'scores' by \S+ \(max \|float32\| .*use precision: fp32",
    ):
        runner.run({"image": image})


@pytest.mark.parametrize(
    ("config", "memory_pattern"), [("text_span_prediction.yaml", False), ("text_token_classification.yaml", True)]
)
def test_span_predictions_windows_run_without_a_memory_pattern(config, memory_pattern):
    # A different window count in nearly every batch: a plan per shape only grew the run's memory (issue 18).
    task = load_config(Path(__file__).resolve().parents[2] / "configs" / config)
    runner = load_runner(task, task.model)
    assert runner.session.get_session_options().enable_mem_pattern is memory_pattern
