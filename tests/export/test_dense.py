"""Exported detection graphs (YOLO, YOLOv5, SSD and post-processed layouts, NMS in the graph) and
segmentation graphs give the pipeline's pkl values: the same boxes after NMS, the same masks."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from numpy.testing import assert_allclose

from predict.enums import ResizeMode
from predict.heads._masks import encode_rle, to_original_size
from tests.export.helpers import CONFIGS, export, graph_outputs, metadata, op_domains, run_pipeline

DETECTION = CONFIGS / "image_object_detection.yaml"
LAYOUTS = {
    "yolo": (),
    "yolov5": ("model=models/dense_yolov5.onnx", "head.layout=yolov5"),
    "ssd": (
        "model=models/dense_ssd.onnx",
        "head.layout=ssd",
        "head.box_format=xyxy",
        "head.normalized_boxes=true",
        "head.score_activation=sigmoid",
    ),
    "boxes_scores_classes": (
        "model=models/dense_postprocessed.onnx",
        "head.layout=boxes_scores_classes",
        "head.box_format=yxyx",
        "head.normalized_boxes=true",
        "head.first_class_id=1",
    ),
    # the same YOLO model, images stretched instead of letterboxed: another way back to the image
    "yolo_resize": ("preprocessing.resize_mode=resize",),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_detection_graph_gives_the_pkl_boxes(layout, tmp_path):
    overrides = LAYOUTS[layout]
    out = tmp_path / "out"
    pkl = run_pipeline(DETECTION, out, *overrides)
    graph = export(DETECTION, out, tmp_path / "model.onnx", *overrides)
    outputs = graph_outputs(DETECTION, out, graph, *overrides)
    assert outputs["boxes"].shape == pkl["boxes"].shape == (16, 100, 4)
    assert list(map(list, outputs["classes"])) == list(map(list, pkl["classes"]))
    assert_allclose(outputs["boxes"], pkl["boxes"], atol=1e-5, rtol=0)
    assert_allclose(outputs["confidences"], pkl["confidences"], atol=1e-5, rtol=0)
    kept = (pkl["classes"] != "").sum()
    assert 0 < kept < pkl["classes"].size  # real boxes and padding are both compared
    assert np.array_equal(outputs["class_ids"] >= 0, pkl["classes"] != "")
    assert op_domains(graph) == {""}


def test_detection_graph_uses_the_standard_nms_op_with_an_explicit_cap(tmp_path):
    graph = export(DETECTION, tmp_path / "out", tmp_path / "model.onnx")
    model = onnx.load(str(graph))
    (nms,) = [node for node in model.graph.node if node.op_type == "NonMaxSuppression"]
    initializers = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    assert initializers[nms.input[2]].tolist() == [1000]  # max_output_boxes_per_class: 0 would keep nothing
    assert initializers[nms.input[3]].tolist() == [0.5]  # head.nms_iou_threshold
    props = metadata(graph)
    assert json.loads(props["class_names"]) == ["square", "circle"]
    assert props["resize_mode"] == "letterbox" and props["letterbox_fill"] == "114"
    assert props["score_threshold"] == "0.01" and props["nms_iou_threshold"] == "0.5"
    assert json.loads(props["inputs"]) == {"image": "uint8[batch, 64, 64, 3]", "original_sizes": "int64[batch, 2]"}


SEGMENTATION = CONFIGS / "image_semantic_segmentation.yaml"
SEGMENTATION_CASES = {
    "sigmoid": ("model=models/dense_semantic.onnx", "head.activation=sigmoid"),
    "softmax": ("model=models/dense_semantic.onnx", "head.activation=softmax"),
}


@pytest.mark.parametrize("case", SEGMENTATION_CASES, ids=list(SEGMENTATION_CASES))
def test_segmentation_graph_gives_the_pkl_masks(case, tmp_path):
    overrides = SEGMENTATION_CASES[case]
    out = tmp_path / "out"
    pkl = run_pipeline(SEGMENTATION, out, *overrides)
    graph = export(SEGMENTATION, out, tmp_path / "model.onnx", *overrides)
    outputs = graph_outputs(SEGMENTATION, out, graph, *overrides)
    assert pkl["masks"].dtype == np.float16  # the pkl's own precision
    assert_allclose(outputs["masks"], pkl["masks"].astype(np.float32), atol=1e-3, rtol=0)
    # Outside the graph, predict's own resize and RLE on the graph's probabilities give the pkl's RLE.
    for row, (probabilities, shape) in enumerate(zip(outputs["masks"], pkl["original_image_shapes"])):
        resized = to_original_size(probabilities, tuple(shape), resize_mode=ResizeMode.RESIZE)
        if case == "softmax":
            masks = resized.argmax(axis=0)[None] == np.arange(len(resized))[:, None, None]
        else:
            masks = resized >= 0.5
        assert [encode_rle(mask) for mask in masks] == list(pkl["rle_predictions"][row])
    assert outputs["binary_masks"].dtype == np.uint8 and outputs["binary_masks"].max() == 1
