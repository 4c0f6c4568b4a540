"""The CUDA path (provider, IO binding, pinned batches, float16): runs only where onnxruntime has CUDA."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from numpy.testing import assert_allclose

from predict.config import Device, Precision
from predict.runners.ort import CUDA, OrtRunner

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        CUDA not in onnxruntime.get_available_providers(), reason="onnxruntime has no CUDA provider here"
    ),
]


def test_cuda_runs_with_io_binding_and_matches_the_cpu(torch_models):
    _, model = torch_models["logits3"]
    image = np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32)
    cuda = OrtRunner(model, device=Device.CUDA)
    assert cuda.provider == CUDA and cuda.io_binding
    expected = OrtRunner(model, device=Device.CPU).run({"image": image})["scores"]
    assert_allclose(cuda.run({"image": image})["scores"], expected, rtol=1e-4, atol=1e-5)
    half = OrtRunner(model, device=Device.CUDA, precision=Precision.FP16)
    assert_allclose(half.run({"image": image})["scores"], expected, atol=5e-2)


def test_pipeline_on_cuda_reports_the_provider(make_task, torch_models, tmp_path):
    import json

    from predict.cli import main

    _, model = torch_models["logits3"]
    assert main(["--config", str(make_task(model)), "--quiet", "--set", "runtime.device=cuda"]) == 0
    assert json.loads((tmp_path / "out" / "validation_report.json").read_text())["provider"] == CUDA
