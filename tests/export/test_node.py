"""A second language: Node.js (onnxruntime-node) runs the exported image classifier and detector on the same
decoded images and its JSON equals the pipeline's pkl.

Needs `node` and `npm install --prefix scripts/node --ignore-scripts` (.ci/run does it); skips with the
reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from numpy.testing import assert_allclose

from predict.export.exporter import FRONT_ENDS
from predict.plan import build_plan, read_rows, resolve_model
from predict.task import load_config
from tests.export.helpers import CONFIGS, ROOT, export, run_pipeline

SCRIPT = ROOT / "scripts" / "node" / "run_exported.mjs"
NODE_MODULES = ROOT / "scripts" / "node" / "node_modules" / "onnxruntime-node"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed")
    if not NODE_MODULES.is_dir():
        pytest.skip("onnxruntime-node is missing: npm install --prefix scripts/node --ignore-scripts")
    return found


def write_feeds(config, output_dir, graph_inputs: list[str], folder, *overrides: str):
    """The loader's decoded rows as raw files and FEEDS.json, for the Node script."""
    task = load_config(config, [f"output.dir={output_dir}", *overrides])
    task, dataframe = read_rows(task)
    plan = build_plan(task, dataframe, resolve_model(task, output_dir=output_dir), output_dir=output_dir)
    front_end = FRONT_ENDS[plan.spec.modality.name].for_task(plan.task, plan.runner.inputs)
    dataset = plan.dataset()
    batches = [front_end.feeds(dataset, index)[1] for index in range(len(dataset))]
    spec = {}
    for name in graph_inputs:
        array = np.ascontiguousarray(np.concatenate([feeds[name] for feeds in batches]))
        (folder / f"{name}.bin").write_bytes(array.tobytes())
        spec[name] = {"type": array.dtype.name, "dims": list(array.shape), "file": f"{name}.bin"}
    (folder / "feeds.json").write_text(json.dumps(spec))
    return folder / "feeds.json"


def run_node(node: str, graph, feeds, out) -> dict:
    completed = subprocess.run(
        [node, str(SCRIPT), str(graph), str(feeds), str(out)], capture_output=True, text=True, check=False, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(out.read_text())


def test_node_runs_the_exported_image_classifier(node, torch_models, make_task, tmp_path):
    config = make_task(torch_models["logits3"][1], label_columns=["label"])
    out = tmp_path / "out"
    pkl = run_pipeline(config, out)
    graph = export(config, out, tmp_path / "model.onnx")
    feeds = write_feeds(config, out, ["image"], tmp_path)
    result = run_node(node, graph, feeds, tmp_path / "node.json")
    predictions = result["outputs"]["predictions"]
    assert predictions["dims"] == list(pkl["predictions"].shape)
    assert_allclose(np.array(predictions["data"]).reshape(predictions["dims"]), pkl["predictions"], atol=1e-5, rtol=0)
    assert result["outputs"]["classes"]["data"] == [pkl["labels"][i] for i in pkl["predictions"].argmax(axis=1)]
    assert json.loads(result["metadata"]["class_names"]) == ["cat", "dog", "fox"]  # metadata read in Node too


def test_node_runs_the_exported_detector(node, tmp_path):
    config = CONFIGS / "image_object_detection.yaml"
    out = tmp_path / "out"
    pkl = run_pipeline(config, out)
    graph = export(config, out, tmp_path / "model.onnx")
    feeds = write_feeds(config, out, ["image", "original_sizes"], tmp_path)
    outputs = run_node(node, graph, feeds, tmp_path / "node.json")["outputs"]
    boxes = np.array(outputs["boxes"]["data"], dtype=np.float32).reshape(outputs["boxes"]["dims"])
    assert_allclose(boxes, pkl["boxes"], atol=1e-5, rtol=0)
    confidences = np.array(outputs["confidences"]["data"], dtype=np.float32).reshape(outputs["confidences"]["dims"])
    assert_allclose(confidences, pkl["confidences"], atol=1e-5, rtol=0)
    assert np.array(outputs["classes"]["data"], dtype=object).reshape(16, 100).tolist() == pkl["classes"].tolist()
