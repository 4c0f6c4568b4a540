"""`--precision fp16 | int8`: the network is lowered, the pre- and post-processing stay float32, and the
agreement with the pipeline is printed next to the speed-up (never the default, never gating)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from numpy.testing import assert_allclose

from predict.cli import main
from tests.export.helpers import CONFIGS, export, graph_outputs, metadata, run_pipeline


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_lower_precision_graph_is_written_with_its_agreement_and_speed(
    precision, torch_models, make_task, tmp_path, capsys
):
    config = make_task(torch_models["logits3"][1], label_columns=["label"])
    out = tmp_path / "out"
    pkl = run_pipeline(config, out)
    capsys.readouterr()
    graph = export(config, out, tmp_path / "model.onnx", extra=("--precision", precision, "--calibration-rows", "8"))
    printed = capsys.readouterr().out
    assert f"{precision} graph vs pipeline: predictions max abs diff" in printed
    assert "rows/s on this CPU: plain model" in printed and "x the fp32 graph" in printed
    props = metadata(graph)
    assert props["precision"] == precision
    assert json.loads(props["inputs"]) == {"image": "uint8[batch, 16, 16, 3]"}
    assert json.loads(props["outputs"])["predictions"] == "float32[batch, 3]"  # io types kept
    model = onnx.load(str(graph))
    ops = {node.op_type for node in model.graph.node}
    if precision == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert "calibrated on the model inputs of 8 rows" in printed
    else:
        assert onnx.TensorProto.FLOAT16 in {tensor.data_type for tensor in model.graph.initializer}
    outputs = graph_outputs(config, out, graph)
    assert_allclose(outputs["predictions"], pkl["predictions"], atol=0.05)  # close, not equal


def test_fp16_detection_keeps_box_arithmetic_in_float32(tmp_path):
    config = CONFIGS / "image_object_detection.yaml"
    out = tmp_path / "out"
    pkl = run_pipeline(config, out)
    graph = export(config, out, tmp_path / "model.onnx", extra=("--precision", "fp16"))
    model = onnx.load(str(graph))
    (nms,) = [node for node in model.graph.node if node.op_type == "NonMaxSuppression"]
    assert not nms.name.startswith("model/")  # the post-processing, not the network
    outputs = graph_outputs(config, out, graph)
    kept = outputs["class_ids"] >= 0
    assert outputs["boxes"].dtype == np.float32
    assert kept.sum() > 0 and np.all(np.isin(outputs["classes"][kept], ["square", "circle"]))
    assert abs(int(kept.sum()) - int((pkl["classes"] != "").sum())) <= 0.1 * kept.sum()


def test_unknown_precision_is_refused(tmp_path, capsys):
    config = CONFIGS / "image_regression.yaml"
    with pytest.raises(SystemExit):
        main(["export", "--config", str(config), "-o", str(tmp_path / "x.onnx"), "--precision", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err
