"""RegressionHead on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from predict.errors import ConfigError
from predict.heads.regression import RegressionHead
from predict.runners.base import TensorSpec
from predict.task import load_config
from tests.conftest import postprocess, write_config


def build(tmp_path, frame, label_columns, width):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    frame.to_csv(tmp_path / "frame.csv", index=False)
    config = {
        "problem_type": "image_regression",
        "model": str(model),
        "data": {"dataframe": str(tmp_path / "frame.csv"), "image_column": "image", "label_columns": label_columns},
    }
    task = load_config(write_config(tmp_path / "task.yaml", config))
    outputs = (TensorSpec(name="y", shape=(None,) if width is None else (None, width), dtype=np.dtype(np.float32)),)
    return RegressionHead.build(task, outputs=outputs, dataframe=pd.read_csv(tmp_path / "frame.csv", dtype=str))


def test_columns_pkl_and_metrics(tmp_path):
    frame = pd.DataFrame({"image": ["a", "b", "c"], "h": [1.0, 2.0, 3.0], "w": [0.0, 0.5, 1.0]})
    head = build(tmp_path, frame, ["h", "w"], 2)
    predictions = postprocess(head, {"y": np.array([[1.0, 0.0], [2.5, 0.5], [3.0, 1.5]], np.float64)})
    assert predictions["predictions"].dtype == np.float32
    columns = head.prediction_columns(predictions)
    assert list(columns) == ["pred_h", "pred_w"]
    assert_allclose(columns["pred_h"], [1.0, 2.5, 3.0])
    raw = head.raw_predictions(predictions, frame)
    assert list(raw) == ["predictions", "labels", "image"] and list(raw["labels"]) == ["h", "w"]
    metrics = head.metrics(predictions)
    assert metrics["MAE"] == pytest.approx((0.5 + 0.5) / 6)


def test_rank_one_output_is_one_column(tmp_path):
    frame = pd.DataFrame({"image": ["a", "b"], "h": [1.0, 2.0]})
    head = build(tmp_path, frame, ["h"], None)
    assert postprocess(head, {"y": np.array([1.0, 2.0], np.float32)})["predictions"].shape == (2, 1)


def test_width_must_match_label_columns(tmp_path):
    frame = pd.DataFrame({"image": ["a"], "h": [1.0]})
    with pytest.raises(
        ConfigError, match=r"data.label_columns has 1 column\(s\) but model model.onnx output 'y' predicts 3"
    ):
        build(tmp_path, frame, ["h"], 3)


def test_single_row_leaves_r2_out(tmp_path):
    frame = pd.DataFrame({"image": ["a"], "h": [1.0]})
    head = build(tmp_path, frame, ["h"], 1)
    metrics = head.metrics(postprocess(head, {"y": np.array([[2.0]], np.float32)}))
    assert "R2" not in metrics and metrics["RMSE"] == 1.0
    assert any("R2 left out" in note for note in head.notes)
