"""The Ray Data engine writes the same files as the local engine, on a local Ray instance (2 CPUs)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from predict.config import Device
from predict.errors import ConfigError
from predict.pipeline import run_task
from predict.task import load_config
from tests.conftest import IMAGE_SIZE

ray = pytest.importorskip("ray", reason="Ray Data is not installed (pip install 'predict[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'predict[ray]')")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module, as a user's cluster would be: the engine joins it.
    Its workers run at the test's priority, as the engine's own instance does (else a loaded machine starves them)."""
    from predict.engines.ray import WORKER_PRIORITY

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=WORKER_PRIORITY)
    yield
    ray.shutdown()


def run_both(config: Path, tmp_path: Path, *overrides: str) -> dict[str, dict[str, Path]]:
    """Run the task on the local engine and on Ray; return each run's files."""
    files = {}
    for engine in ("local", "ray"):
        task = load_config(config, [*overrides, f"runtime.engine={engine}", f"output.dir={tmp_path / engine}"])
        summary = run_task(task, progress=False)
        files[engine] = summary.files
    assert any(note.startswith("ray: ") for note in json.loads(files["ray"]["report"].read_text())["notes"])
    return files


def assert_same_files(files: dict[str, dict[str, Path]]) -> None:
    local, distributed = files["local"], files["ray"]
    assert local.keys() == distributed.keys()
    assert local["csv"].read_bytes() == distributed["csv"].read_bytes()
    with open(local["pkl"], "rb") as handle:
        expected = pickle.load(handle)
    with open(distributed["pkl"], "rb") as handle:
        got = pickle.load(handle)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(expected[key]), err_msg=key)
    for name in ("metrics", "errors"):
        if name in local:
            assert local[name].read_bytes() == distributed[name].read_bytes()


def test_image_classification_with_skipped_rows_on_torch(torch_models, make_task, image_folder, tmp_path):
    """A .pt2 on the torch backend, a batch size that leaves a short last batch, an unreadable image."""
    module, _ = torch_models["softmax3"]
    program = tmp_path / "model.pt2"
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.export.save(
        torch.export.export(module.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)), program
    )
    frame = pd.read_csv(image_folder / "labels.csv", dtype=str, keep_default_na=False)
    frame.loc[5, "image_path"] = "missing.png"
    frame.to_csv(tmp_path / "rows.csv", index=False)
    config = make_task(program, data={
        "dataframe": str(tmp_path / "rows.csv"), "data_folder": str(image_folder), "image_column": "image_path",
        "label_columns": ["label"], "on_error": "skip",
    })  # fmt: skip
    files = run_both(config, tmp_path, "runtime.backend=torch", "runtime.batch_size=6")
    assert "errors" in files["ray"]
    assert_same_files(files)


def test_metric_learning_top_k_after_the_map(tmp_path):
    """Nearest neighbours and mAP are split-level: they run on the driver over every row Ray scored."""
    files = run_both(ROOT / "configs" / "image_metric_learning.yaml", tmp_path, "runtime.num_workers=0")
    assert_same_files(files)


def test_text_regression(tmp_path):
    files = run_both(
        ROOT / "configs" / "text_regression.yaml", tmp_path, "runtime.num_workers=0", "runtime.batch_size=16"
    )
    assert_same_files(files)


def test_cuda_on_a_cluster_without_gpus():
    from predict.engines.ray import gpus_per_actor

    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray cluster has a GPU")
    assert gpus_per_actor(ray, Device.AUTO) == 0
    with pytest.raises(ConfigError, match=r"runtime.device: cuda, but the Ray cluster has no GPU"):
        gpus_per_actor(ray, Device.CUDA)


def test_array_regression_from_a_memory_mapped_npy(tmp_path):
    """Windows from a `.npy`: Ray's tasks reopen the memory map from its path; a NaN row is skipped on both engines."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).eval()
    torch.onnx.export(
        module, (torch.zeros(1, 4, 3),), str(tmp_path / "windows.onnx"), input_names=["window"], output_names=["next"],
        dynamic_axes={"window": {0: "batch"}, "next": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    windows = np.random.default_rng(0).normal(size=(70, 4, 3)).astype(np.float32)
    windows[33, 1, 2] = np.inf
    np.save(tmp_path / "X.npy", windows)
    np.save(tmp_path / "y.npy", windows[:, -1, :2])
    config = tmp_path / "task.yaml"
    config.write_text(
        json.dumps(
            {
                "problem_type": "array_regression",
                "model": "windows.onnx",
                "data": {"inputs": "X.npy", "labels": "y.npy", "on_error": "skip"},
                "runtime": {"batch_size": 16},
            }
        )
    )
    files = run_both(config, tmp_path)
    assert "errors" in files["ray"]
    assert_same_files(files)
