"""ClassificationHead on hand-made arrays: layouts, activation choice, columns, pkl keys, edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from predict.errors import ConfigError, InputError
from predict.heads.classification import Activation, ClassificationHead, LabelLayout
from predict.report.metrics import ClassificationKind
from predict.runners.base import TensorSpec
from predict.task import load_config
from tests.conftest import postprocess, write_config


def output(width, producer=None, name="scores"):
    return (TensorSpec(name=name, shape=(None, width), dtype=np.dtype(np.float32), producer=producer),)


def build(tmp_path, frame, label_columns, outputs, head=None, split="validation"):
    """A head built from a real (validated) config over a CSV of `frame`."""
    (tmp_path / "img").mkdir(exist_ok=True)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")  # load_config checks the file exists; the head only sees `outputs`
    frame.to_csv(tmp_path / "frame.csv", index=False)
    config = {
        "problem_type": "image_classification",
        "model": str(model),
        "data": {
            "dataframe": str(tmp_path / "frame.csv"),
            "split": split,
            "image_column": "image",
            "label_columns": label_columns,
        },
        "head": head or {},
    }
    task = load_config(write_config(tmp_path / "task.yaml", config))
    read = pd.read_csv(tmp_path / "frame.csv", dtype=str, keep_default_na=False)
    return ClassificationHead.build(task, outputs=outputs, dataframe=read)


FRAME = pd.DataFrame({"image": ["a.png", "b.png", "c.png", "d.png"], "label": ["dog", "cat", "dog", "bird"]})


def test_categorical_classes_sorted_and_softmax_on_logits(tmp_path):
    head = build(tmp_path, FRAME, ["label"], output(3, producer="Gemm"))
    assert head.layout is LabelLayout.CATEGORICAL and head.activation is Activation.SOFTMAX
    assert head.class_names == ("bird", "cat", "dog")
    logits = np.array([[0.0, 1.0, 3.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0], [4.0, 0.0, 0.0]], np.float32)
    predictions = postprocess(head, {"scores": logits})
    assert_allclose(predictions["predictions"].sum(axis=1), 1.0, rtol=1e-6)
    columns = head.prediction_columns(predictions)
    assert list(columns) == ["pred_label_bird", "pred_label_cat", "pred_label_dog", "pred_label"]
    assert list(columns["pred_label"]) == ["dog", "cat", "dog", "bird"]
    raw = head.raw_predictions(predictions, FRAME)
    assert list(raw) == ["predictions", "labels", "image"] and list(raw["labels"]) == ["bird", "cat", "dog"]
    assert head.metrics(predictions)["Accuracy"] == 1.0


def test_softmax_graph_is_not_softmaxed_twice(tmp_path):
    head = build(tmp_path, FRAME, ["label"], output(3, producer="Softmax"))
    assert head.activation is Activation.NONE
    probabilities = np.array([[0.2, 0.3, 0.5]] * 4, np.float32)
    assert_allclose(postprocess(head, {"scores": probabilities})["predictions"], probabilities)


def test_multi_label_columns_get_sigmoid(tmp_path):
    frame = pd.DataFrame({"image": ["a", "b", "c"], "x": [1, 0, 1], "y": [1, 1, 0]})
    head = build(tmp_path, frame, ["x", "y"], output(2))
    assert head.kind is ClassificationKind.MULTILABEL and head.activation is Activation.SIGMOID
    predictions = postprocess(head, {"scores": np.zeros((3, 2), np.float32)})
    assert_allclose(predictions["predictions"], 0.5)
    assert list(head.prediction_columns(predictions)) == ["pred_x", "pred_y"]


def test_one_hot_columns_are_multiclass(tmp_path):
    frame = pd.DataFrame({"image": ["a", "b", "c"], "x": [1, 0, 0], "y": [0, 1, 1]})
    head = build(tmp_path, frame, ["x", "y"], output(2))
    assert head.kind is ClassificationKind.MULTICLASS and head.activation is Activation.SOFTMAX
    assert list(head.labels) == [0, 1, 1]


def test_binary_width_two_keeps_class_one(tmp_path):
    frame = pd.DataFrame({"image": ["a", "b"], "y": [0, 1]})
    head = build(tmp_path, frame, ["y"], output(2, producer="Softmax"), head={"label_layout": "binary"})
    predictions = postprocess(head, {"scores": np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)})
    assert_allclose(predictions["predictions"], [[0.1], [0.8]])
    assert head.metrics(predictions)["Accuracy"] == 1.0


def test_test_split_without_labels_needs_class_names(tmp_path):
    frame = FRAME[["image"]]
    with pytest.raises(ConfigError, match=r"head.class_names is missing: test dataframe has no 'label' column"):
        build(tmp_path, frame, ["label"], output(3), split="test")
    head = build(tmp_path, frame, ["label"], output(3), split="test", head={"class_names": ["a", "b", "c"]})
    assert head.labels is None and head.metrics(postprocess(head, {"scores": np.zeros((4, 3), np.float32)})) == {}


def test_non_binary_values_in_label_columns(tmp_path):
    frame = pd.DataFrame({"image": ["a", "b"], "x": [1, 2], "y": [0, 1]})
    with pytest.raises(InputError, match=r"row 1, label column 'x': expected 0 or 1, got '2'"):
        build(tmp_path, frame, ["x", "y"], output(2))


def test_several_outputs_need_a_name(tmp_path):
    outputs = output(3, name="cls") + output(1, name="reg")
    with pytest.raises(ConfigError, match=r"head.output_name is missing: model model.onnx has 2 outputs \(cls, reg\)"):
        build(tmp_path, FRAME, ["label"], outputs)
    assert build(tmp_path, FRAME, ["label"], outputs, head={"output_name": "cls"}).output == "cls"
    with pytest.raises(ConfigError, match=r"head.output_name: model model.onnx has no output 'box'"):
        build(tmp_path, FRAME, ["label"], outputs, head={"output_name": "box"})


def test_output_with_too_many_axes(tmp_path):
    outputs = (TensorSpec(name="map", shape=(None, 3, 4, 4), dtype=np.dtype(np.float32)),)
    with pytest.raises(ConfigError, match=r"output 'map' has shape \(\?, 3, 4, 4\); expected \(batch, values\)"):
        build(tmp_path, FRAME, ["label"], outputs)
