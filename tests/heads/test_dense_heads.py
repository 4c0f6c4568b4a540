"""Detection and segmentation heads on hand-made outputs: layouts, scaling back, edge cases."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from predict.config import ResizeMode
from predict.data.collate import Batch
from predict.data.context import ImageContext
from predict.errors import InputError
from predict.heads import _ops, instance_segmentation, object_detection, semantic_segmentation
from predict.heads._masks import boxes_to_original, decode_rle, encode_rle, mask_edges


def batch_of(original_sizes, input_size=(64, 64)) -> Batch:
    sizes = np.asarray(original_sizes, dtype=np.int64)
    context = ImageContext(
        original_sizes=sizes, input_sizes=np.tile(np.array(input_size, dtype=np.int64), (len(sizes), 1))
    )
    return Batch(np.arange(len(sizes)), {}, [], context)


def detection_head(layout, *, resize_mode=ResizeMode.RESIZE, labels=None, **config):
    names = {"boxes_scores_classes": {"boxes": "boxes", "scores": "scores", "classes": "classes"},
             "yolo": {"predictions": "predictions"}, "yolov5": {"predictions": "predictions"},
             "ssd": {"boxes": "boxes", "scores": "scores"}}[layout]  # fmt: skip
    if "box_format" in config:
        config["box_format"] = object_detection.BoxFormat(config["box_format"])
    config = object_detection.Config(class_names=("a", "b"), layout=object_detection.DetectionLayout(layout), **config)
    box_format = str(config.box_format or ("cxcywh" if layout in ("yolo", "yolov5") else "xyxy"))
    return object_detection.ObjectDetectionHead(
        config=config, outputs=names, box_format=box_format, resize_mode=resize_mode,
        class_column="class_name", input_column="image_path", labels=labels,
    )  # fmt: skip


def test_yolo_layout_nms_and_scaling_to_images_of_different_sizes():
    head = detection_head("yolo")
    # anchors: two overlapping "a" boxes (NMS keeps the better), one "b" box, one below threshold.
    raw = np.zeros((2, 6, 4), dtype=np.float32)
    raw[0, :4] = np.array([[16, 16, 8, 8], [17, 16, 8, 8], [48, 48, 16, 16], [30, 30, 4, 4]], dtype=np.float32).T
    raw[0, 4:] = np.array([[0.9, 0.1], [0.8, 0.1], [0.2, 0.7], [0.0005, 0.0]]).T
    predictions = head.postprocess({"predictions": raw}, batch_of([(32, 128), (64, 64)]))
    assert predictions["boxes"].shape == (2, 100, 4) and predictions["confidences"].shape == (2, 100)
    assert_allclose(predictions["confidences"][0, :3], [0.9, 0.7, 0.0])
    assert predictions["class_ids"][0, :3].tolist() == [0, 1, -1]
    # 64x64 input, 128 wide x 32 high image: x scaled by 2, y by 0.5.
    assert_allclose(predictions["boxes"][0, 0], [24, 6, 40, 10])
    assert_allclose(predictions["boxes"][0, 1], [80, 20, 112, 28])
    # The all-zero image has no box at all: padded with zeros and "" classes.
    assert not predictions["confidences"][1].any()
    raw_file = head.raw_predictions(predictions, pd.DataFrame({"image_path": ["x.png", "y.png"]}))
    classes = raw_file["classes"].whole()
    assert classes[0, :3].tolist() == ["a", "b", ""] and classes.shape == (2, 100)
    columns = head.prediction_columns(predictions)
    assert columns["x_min"] == ["[24.0, 80.0]", "[]"] and columns["class_name"] == ['["a", "b"]', "[]"]
    assert columns["confidence"][0] == "[0.9, 0.7]"


def test_yolov5_layout_multiplies_objectness_and_takes_anchors_first():
    head = detection_head("yolov5")
    # (anchors, 5 + classes): an anchor sure of its class but not of an object loses to one sure of both.
    raw = np.zeros((1, 3, 7), dtype=np.float32)
    raw[0, 0] = [16, 16, 8, 8, 0.3, 0.9, 0.1]  # confidence 0.3 x 0.9 = 0.27
    raw[0, 1] = [48, 48, 16, 16, 0.9, 0.2, 0.8]  # 0.9 x 0.8 = 0.72, class b
    raw[0, 2] = [30, 30, 4, 4, 0.001, 0.9, 0.0]  # 0.0009: under score_threshold 0.001
    predictions = head.postprocess({"predictions": raw}, batch_of([(64, 64)]))
    assert_allclose(predictions["confidences"][0, :3], [0.72, 0.27, 0.0], rtol=1e-6)
    assert predictions["class_ids"][0, :3].tolist() == [1, 0, -1]
    assert_allclose(predictions["boxes"][0, 0], [40, 40, 56, 56])
    # Logits: sigmoid on the objectness too.
    logits = detection_head("yolov5", score_activation=object_detection.ScoreActivation.SIGMOID)
    raw[0, 1, 4:] = [0.0, -10.0, 10.0]  # sigmoid: 0.5 x ~1.0
    assert logits.postprocess({"predictions": raw}, batch_of([(64, 64)]))["confidences"][0, 0] == pytest.approx(
        0.5, abs=1e-4
    )


@pytest.mark.parametrize(("layout", "columns"), [("yolo", 7), ("yolov5", 6), ("yolov5", 8)])
def test_yolo_outputs_that_do_not_fit_the_class_count_are_refused(layout, columns):
    head = detection_head(layout)
    with pytest.raises(
        InputError, match=rf"has shape \[3, {columns}\] per image; head.layout {layout} with 2 head.class_names"
    ):
        head.postprocess({"predictions": np.zeros((1, 3, columns), dtype=np.float32)}, batch_of([(64, 64)]))


def test_a_static_yolo_output_shape_is_checked_before_any_work():
    from predict.errors import ConfigError
    from predict.runners.base import TensorSpec

    config = object_detection.Config(class_names=("a", "b"), layout=object_detection.DetectionLayout.YOLOV5)
    fits = TensorSpec(name="out", shape=(None, 100, 7), dtype=np.dtype(np.float32))
    object_detection._check_yolo_shape(fits, config, model_name="m.onnx")
    symbolic = TensorSpec(name="out", shape=(None, None, 100), dtype=np.dtype(np.float32))
    object_detection._check_yolo_shape(symbolic, config, model_name="m.onnx")  # left to the first batch
    wrong = TensorSpec(name="out", shape=(None, 6, 100), dtype=np.dtype(np.float32))
    with pytest.raises(
        ConfigError,
        match=r"head.layout yolov5: model m.onnx output 'out' is \(\?, 6, 100\), but 2 head.class_names need 7",
    ):
        object_detection._check_yolo_shape(wrong, config, model_name="m.onnx")


def test_ssd_and_postprocessed_layouts_letterbox():
    # A 32 x 64 image letterboxed into 64 x 64: scale 1, 16 rows of padding above.
    head = detection_head("ssd", resize_mode=ResizeMode.LETTERBOX, normalized_boxes=True, background_class=True)
    boxes = np.array([[[0, 0.25, 0.5, 0.75], [0.5, 0.25, 1, 0.5]]], dtype=np.float32)
    scores = np.array([[[0.1, 0.9, 0.6], [0.9, 0.05, 0.0]]], dtype=np.float32)  # background first
    predictions = head.postprocess({"boxes": boxes, "scores": scores}, batch_of([(32, 64)]))
    assert predictions["class_ids"][0, :2].tolist() == [0, 1]  # one anchor, two classes: both kept
    assert_allclose(predictions["boxes"][0, :2], [[0, 0, 32, 32], [0, 0, 32, 32]])
    head = detection_head("boxes_scores_classes", box_format="yxyx", normalized_boxes=True, first_class_id=1)
    outputs = {
        "boxes": np.array([[[0, 0, 0.5, 0.5], [0, 0, 0, 0]]], dtype=np.float32),
        "scores": np.array([[0.8, 0.0]], dtype=np.float32),
        "classes": np.array([[2.0, 0.0]], dtype=np.float32),
    }
    predictions = head.postprocess(outputs, batch_of([(10, 20)]))
    assert predictions["class_ids"][0, :2].tolist() == [1, -1]
    assert_allclose(predictions["boxes"][0, 0], [0, 0, 10, 5])


def per_image_detections(head, outputs, original_sizes, input_size):
    """The head's steps one image at a time, as written before batching (issue 18): the reference."""
    config = head.config
    rows = len(original_sizes)
    boxes, confidences = np.zeros((rows, 100, 4), dtype=np.float32), np.zeros((rows, 100), dtype=np.float32)
    class_ids = np.full((rows, 100), -1, dtype=np.int64)
    activate = {"none": lambda x: x, "sigmoid": _ops.sigmoid, "softmax": _ops.softmax}[config.score_activation]
    for row, (height, width) in enumerate(original_sizes):
        if height == 0:
            continue
        if config.layout == "boxes_scores_classes":
            candidates = outputs["boxes"][row].reshape(-1, 4)
            scores = activate(outputs["scores"][row].reshape(-1))
            ids = np.rint(outputs["classes"][row].astype(np.float64)).astype(np.int64) - config.first_class_id
        elif config.layout == "ssd":
            class_scores = activate(outputs["scores"][row])[:, 1 if config.background_class else 0 :]
            anchors, ids = np.nonzero(class_scores >= config.score_threshold)
            candidates, scores = outputs["boxes"][row][anchors], class_scores[anchors, ids]
        else:
            raw = outputs["predictions"][row]
            first_class = object_detection.YOLO_COLUMNS[config.layout]
            raw = raw if raw.shape[0] == first_class + 2 else raw.T
            class_scores = activate(raw[first_class:].T)
            ids = class_scores.argmax(axis=1)
            scores = class_scores[np.arange(len(ids)), ids]
            if config.layout == "yolov5":
                scores = scores * (raw[4] if config.score_activation == "none" else _ops.sigmoid(raw[4]))
            candidates = raw[:4].T
        keep = (scores >= config.score_threshold) & (ids >= 0) & (ids < 2)
        candidates, scores, ids = candidates[keep], scores[keep], ids[keep]
        candidates = boxes_to_original(
            _ops.box_convert(candidates, head.box_format, "xyxy"), (height, width), input_size,
            resize_mode=head.resize_mode, normalized=config.normalized_boxes,
        )  # fmt: skip
        if config.layout == "boxes_scores_classes":
            order = np.argsort(-scores, kind="stable")[:100]
        else:
            order = _ops.nms(candidates, scores, config.nms_iou_threshold, classes=ids)[:100]
        boxes[row, : order.size], confidences[row, : order.size] = candidates[order], scores[order]
        class_ids[row, : order.size] = ids[order]
    return {"boxes": boxes, "confidences": confidences, "class_ids": class_ids}


def crowded_outputs(layout, rows, rng):
    """Random raw outputs of `rows` images whose boxes crowd the middle of a 64 x 64 input (NMS has work)."""
    anchors = 300
    centres = rng.uniform(20, 44, (rows, anchors, 2)).astype(np.float32)
    sizes = rng.uniform(2, 30, (rows, anchors, 2)).astype(np.float32)
    if layout == "yolo":  # (4 + classes, anchors), cxcywh pixels, probabilities
        scores = rng.random((rows, anchors, 2), dtype=np.float32)
        return {"predictions": np.concatenate([centres, sizes, scores], axis=2).transpose(0, 2, 1).copy()}
    if layout == "yolov5":  # (anchors, 5 + classes), logits
        logits = rng.normal(0, 3, (rows, anchors, 3)).astype(np.float32)
        return {"predictions": np.concatenate([centres, sizes, logits], axis=2)}
    corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=2) / 64  # normalised
    if layout == "ssd":  # xyxy, background + 2 class logits
        return {"boxes": corners, "scores": rng.normal(-1, 2, (rows, anchors, 3)).astype(np.float32)}
    return {  # yxyx, probabilities, class ids from 1 (a 3 and a 0 are not classes of the head)
        "boxes": corners[..., [1, 0, 3, 2]],
        "scores": rng.random((rows, anchors), dtype=np.float32),
        "classes": rng.integers(0, 4, (rows, anchors)).astype(np.float32),
    }


LAYOUT_CONFIGS = {
    "yolo": {"score_threshold": 0.3, "nms_iou_threshold": 0.3},
    "yolov5": {"score_activation": object_detection.ScoreActivation.SIGMOID, "nms_iou_threshold": 0.5},
    "ssd": {"score_activation": object_detection.ScoreActivation.SOFTMAX, "background_class": True,
            "normalized_boxes": True, "score_threshold": 0.2},
    "boxes_scores_classes": {"box_format": "yxyx", "normalized_boxes": True, "first_class_id": 1},
}  # fmt: skip


@pytest.mark.parametrize("resize_mode", list(ResizeMode))
@pytest.mark.parametrize("layout", list(LAYOUT_CONFIGS))
def test_a_batch_of_unreadable_rows_and_images_of_many_sizes_gets_what_each_image_gets_alone(layout, resize_mode):
    head = detection_head(layout, resize_mode=resize_mode, **LAYOUT_CONFIGS[layout])
    original_sizes = [(0, 0), (32, 128), (64, 64), (0, 0), (100, 37), (480, 640), (1, 1), (64, 64)]
    outputs = crowded_outputs(layout, len(original_sizes), np.random.default_rng(5))
    predictions = head.postprocess(outputs, batch_of(original_sizes))
    expected = per_image_detections(head, outputs, original_sizes, (64, 64))
    for key in ("boxes", "confidences", "class_ids"):
        assert predictions[key].dtype == expected[key].dtype
        assert_array_equal(predictions[key], expected[key])
    kept = (predictions["class_ids"] >= 0).sum(axis=1)
    assert kept[0] == kept[3] == 0 and kept[[1, 2, 4, 5, 6, 7]].all()  # unreadable rows stay empty


def test_a_batch_without_any_box_or_readable_image_is_all_padding():
    head = detection_head("yolo")
    raw = np.zeros((2, 6, 4), dtype=np.float32)
    for sizes in ([(0, 0), (0, 0)], [(64, 64), (0, 0)]):  # unreadable; readable but no score above threshold
        predictions = head.postprocess({"predictions": raw}, batch_of(sizes))
        assert not predictions["boxes"].any() and not predictions["confidences"].any()
        assert (predictions["class_ids"] == -1).all()


def test_csv_columns_are_each_row_shown_boxes_as_json_lists():
    head = detection_head("yolo", probability_threshold=0.5)
    rng = np.random.default_rng(2)
    predictions = {
        "boxes": rng.uniform(0, 5000, (5, 100, 4)).astype(np.float32),
        "confidences": rng.random((5, 100), dtype=np.float32),  # shown boxes are not a prefix of a row
        "class_ids": rng.integers(-1, 2, (5, 100)),
    }
    predictions["boxes"][0, :, 0] = np.nan  # json.dumps writes NaN
    predictions["boxes"][1, :, 1] = 1e20
    predictions["confidences"][2] = 0.0  # a row without any box
    columns = head.prediction_columns(predictions)
    for row in range(5):
        shown = (predictions["confidences"][row] > 0.5) & (predictions["class_ids"][row] >= 0)
        for j, name in enumerate(object_detection.BOX_COLUMNS):
            values = np.round(predictions["boxes"][row, shown, j].astype(np.float64), 2).tolist()
            assert columns[name][row] == json.dumps(values)
        confidences = np.round(predictions["confidences"][row, shown].astype(np.float64), 4).tolist()
        assert columns["confidence"][row] == json.dumps(confidences)
        assert columns["class_name"][row] == json.dumps([("a", "b")[i] for i in predictions["class_ids"][row, shown]])
    assert columns["x_min"][2] == columns["class_name"][2] == "[]" and "NaN" in columns["x_min"][0]
    empty = {key: value[:0] for key, value in predictions.items()}
    assert head.prediction_columns(empty) == {
        name: [] for name in (*object_detection.BOX_COLUMNS, "confidence", "class_name")
    }


def test_detection_metrics_match_pycocotools_on_a_perfect_and_an_empty_image():
    labels = [[[0.0, 0.0, 10.0, 10.0, 0]], []]
    head = detection_head("boxes_scores_classes", labels=labels)
    predictions = {
        "boxes": np.zeros((2, 100, 4), dtype=np.float32), "confidences": np.zeros((2, 100), dtype=np.float32),
        "class_ids": np.full((2, 100), -1),
    }  # fmt: skip
    predictions["boxes"][0, 0] = [0, 0, 10, 10]
    predictions["confidences"][0, 0] = 0.9
    predictions["class_ids"][0, 0] = 0
    assert head.metrics(predictions) == {"mAP": pytest.approx(1.0), "mAP@0.5:0.95": pytest.approx(1.0)}
    predictions["class_ids"][0, 0] = 1  # right box, wrong class
    assert head.metrics(predictions)["mAP"] == 0.0


def test_detection_labels_errors(tmp_path):
    source = tmp_path / "frame.csv"
    frame = pd.DataFrame(
        {"x_min": ["[0]"], "y_min": ["[0]"], "x_max": ["[1]"], "y_max": ["[1]"], "class_name": ['["c"]']}
    )
    with pytest.raises(
        InputError, match=r"frame.csv: row 0, column 'class_name': class 'c' is not in head.class_names \(a, b\)"
    ):
        object_detection._read_labels(frame, "class_name", ("a", "b"), source=source)
    frame["class_name"] = "not a list"
    with pytest.raises(InputError, match=r"row 0, column 'class_name': expected a list"):
        object_detection._read_labels(frame, "class_name", ("a", "b"), source=source)
    frame["class_name"] = '["a", "b"]'
    with pytest.raises(InputError, match=r"row 0: the lists of one image must be equally long"):
        object_detection._read_labels(frame, "class_name", ("a", "b"), source=source)
    frame["class_name"] = '["a"]'
    frame["x_max"] = "[-1]"
    with pytest.raises(InputError, match=r"row 0: box \[0, 0, -1, 1\] has x_max < x_min"):
        object_detection._read_labels(frame, "class_name", ("a", "b"), source=source)


def semantic_head(labels=None, **config):
    """A head over classes a and b; `labels`: per row, class name to true RLE (the label columns made of them)."""
    if labels is not None:
        labels = pd.DataFrame(
            {
                "class_name": [json.dumps(list(row)) for row in labels],
                "rle_mask": [json.dumps(list(row.values())) for row in labels],
            }
        )
    activations = {key: semantic_segmentation.MaskActivation(value) for key, value in config.items()}
    return semantic_segmentation.SemanticSegmentationHead(
        config=semantic_segmentation.Config(class_names=("a", "b"), **activations), output="maps", channels_last=False,
        resize_mode=ResizeMode.RESIZE, class_column="class_name", mask_column="rle_mask", input_column="image_path",
        labels=labels, source_name="frame.csv",
    )  # fmt: skip


def test_semantic_masks_resized_before_thresholding_and_metrics():
    # Class a fills the left half at model resolution; b is empty everywhere; a one-pixel true mask of b.
    maps = np.full((2, 2, 4, 4), -10, dtype=np.float32)
    maps[:, 0, :, :2] = 10
    truth_a = np.zeros((8, 6), dtype=bool)
    truth_a[:, :3] = True
    one_pixel = np.zeros((8, 6), dtype=bool)
    one_pixel[7, 5] = True
    labels = [{"a": encode_rle(truth_a), "b": encode_rle(one_pixel)}, {}]
    head = semantic_head(labels)
    predictions = head.postprocess({"maps": maps}, batch_of([(8, 6), (3, 5)], input_size=(4, 4)))
    assert predictions["masks"].dtype == np.float16 and predictions["masks"].shape == (2, 2, 4, 4)
    rles = semantic_segmentation.runs_to_rles(predictions["mask_runs"][0], 2)
    assert_array_equal(decode_rle(rles[0], (8, 6)), truth_a)
    assert rles[1] == ""  # an empty mask
    assert predictions["original_image_shapes"].tolist() == [[8, 6], [3, 5]]
    metrics = head.metrics(predictions)
    # a: 24 true pixels in row 0, predicted 24 + the 2x3 image's left part; b: one pixel missed.
    a_predicted = predictions["predicted_pixels"][:, 0].sum()
    assert metrics["IoU_a"] == pytest.approx(24 / a_predicted) and metrics["IoU_b"] == 0.0
    assert metrics["IoU"] == pytest.approx((24 / a_predicted) / 2)
    assert metrics["Dice_a"] == pytest.approx(48 / (a_predicted + 24))
    frame = pd.DataFrame({"image_path": ["x.png", "y.png"], "class_name": ['["a", "b"]', "[]"], "rle_mask": ["", ""]})
    table, columns, blank = head.csv_table(frame, predictions, valid=np.array([True, False]))
    table = table.block(0, len(table))
    assert table["class_name"].tolist() == ["a", "b", "a", "b"]
    assert table["rle_mask"].tolist() == [encode_rle(truth_a), encode_rle(one_pixel), "", ""]
    assert list(columns) == ["pred_rle_mask"] and blank.tolist() == [False, False, True, True]


def test_semantic_test_split_gets_class_id_and_the_configured_mask_column_name():
    head = semantic_head(activation="softmax")
    maps = np.zeros((1, 2, 2, 2), dtype=np.float32)
    maps[0, 1] = 1.0
    predictions = head.postprocess({"maps": maps}, batch_of([(2, 2)], input_size=(2, 2)))
    assert semantic_segmentation.runs_to_rles(predictions["mask_runs"][0], 2) == ["", "1 4"]
    table, columns, _ = head.csv_table(pd.DataFrame({"image_path": ["x.png"]}), predictions, valid=np.array([True]))
    assert table.block(0, 2).to_dict("list") == {"class_id": ["a", "b"], "image_path": ["x.png", "x.png"]}
    # pred_{rle_mask_column} even though this dataframe has no rle_mask column (FORMATS.md).
    assert list(table.columns) == ["class_id", "image_path"] and list(columns) == ["pred_rle_mask"]
    assert head.metrics(predictions) == {}


def test_semantic_label_rle_past_the_image_names_the_row():
    head = semantic_head([{"a": "1 100"}])
    with pytest.raises(
        InputError,
        match=r"frame.csv: row 0, column 'rle_mask', class 'a': RLE a run ends at pixel 100, past the 4x4 image",
    ):
        head.postprocess({"maps": np.zeros((1, 2, 4, 4), dtype=np.float32)}, batch_of([(4, 4)], input_size=(4, 4)))


def instance_head(layout="h2o", labels=None, **config):
    instance_layout = instance_segmentation.InstanceLayout(layout)
    return instance_segmentation.InstanceSegmentationHead(
        config=instance_segmentation.Config(class_names=("a", "b"), layout=instance_layout, **config), output="maps",
        channels_last=False, resize_mode=ResizeMode.RESIZE, class_column="class_name", input_column="image_path",
        labels=labels, source_name="frame.csv", scratch_folder=Path(tempfile.gettempdir()),
    )  # fmt: skip


def test_h2o_layout_splits_instances_at_borders_and_keeps_one_pixel_instances():
    maps = np.zeros((1, 4, 8, 8), dtype=np.float32)
    maps[0, 0, 1:7, 1:7] = 0.9  # one class-a region...
    maps[0, 3, :, 4] = 0.9  # ...cut in two by a border between instances
    maps[0, 1, 0, 0] = 0.8  # a one-pixel b instance, on an instance border
    maps[0, 2, 0, 0] = 0.9
    labels = [
        [
            ("a", encode_rle(np.pad(np.ones((6, 3), bool), ((1, 1), (1, 4))))),
            ("b", encode_rle(np.pad(np.ones((1, 1), bool), ((0, 7), (0, 7))))),
        ]
    ]
    head = instance_head(labels=labels)
    predictions = head.postprocess({"maps": maps}, batch_of([(8, 8)], input_size=(8, 8)))
    instances = predictions["instances"][0]
    assert [(item[0], item[1]) for item in instances] == [(0, 1), (0, 2), (1, 1)]
    assert [item[2] for item in instances] == pytest.approx([0.9, 0.9, 0.8])
    left = decode_rle(instances[0][3], (8, 8))
    right = decode_rle(instances[1][3], (8, 8))
    # The border column 4 joins a nearest core (both are one pixel away): every class pixel is in one instance.
    assert (
        left[1:7, 1:4].all() and right[1:7, 5:7].all() and left.sum() + right.sum() == 36 and not (left & right).any()
    )
    raw = head.raw_predictions(predictions, pd.DataFrame({"image_path": ["x.png"]}))
    assert raw["instance_predictions"].shape == (1, 8, 8, 2) and raw["instance_predictions"][0, 0, 0, 1] == 1
    assert raw["confidences"][0]["b"] == {1: pytest.approx(0.8)} and raw["raw_probabilities"].dtype == np.float16
    metrics = head.metrics(predictions)
    # b is found exactly; a's left half overlaps its label with IoU 0.75, so AP drops above IoU 0.75.
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["mAP@0.5:0.95"] < 1.0
    columns = head.prediction_columns(predictions)
    assert columns["class_name"] == ['["a", "a", "b"]'] and columns["confidence"] == ["[0.9, 0.9, 0.8]"]


def whole_image_instances(probabilities, classes, threshold=0.5, border_threshold=0.5, min_pixels=4):
    """The h2o layout's instances labelled over the whole image (the head labels a window around each class)."""
    from scipy import ndimage

    border = np.maximum(probabilities[classes], probabilities[classes + 1]) >= border_threshold
    labelled, confidences = np.zeros((*probabilities.shape[1:], classes), dtype=np.int32), []
    for index in range(classes):
        region = probabilities[index] >= threshold
        cores, count = ndimage.label(region & ~border)
        regions, region_count = ndimage.label(region)
        instance_map = np.zeros_like(cores)
        if count:
            nearest = ndimage.distance_transform_edt(cores == 0, return_distances=False, return_indices=True)
            same_region = regions == regions[nearest[0], nearest[1]]
            instance_map = np.where(region & same_region, cores[nearest[0], nearest[1]], 0)
        orphans = np.setdiff1d(np.arange(1, region_count + 1), np.unique(regions[instance_map > 0]))
        lookup = np.zeros(region_count + 1, dtype=np.int64)
        lookup[orphans] = count + np.arange(1, orphans.size + 1)
        instance_map = np.where(instance_map > 0, instance_map, lookup[regions])
        ids, counts = np.unique(instance_map[instance_map > 0], return_counts=True)
        kept = ids[counts >= min_pixels]
        renumber = np.zeros(int(instance_map.max()) + 1, dtype=np.int32)
        renumber[kept] = np.arange(1, kept.size + 1)
        labelled[..., index] = renumber[instance_map]
        means = ndimage.mean(probabilities[index], labels=labelled[..., index], index=np.arange(1, kept.size + 1))
        confidences.append([float(value) for value in np.atleast_1d(means)] if kept.size else [])
    return labelled, confidences


@pytest.mark.parametrize("seed", range(6))
def test_h2o_instances_labelled_in_a_window_equal_those_of_the_whole_image(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    maps = np.zeros((4, 40, 48), dtype=np.float32)
    for _ in range(int(rng.integers(0, 5))):  # blobs of either class, some on the image's edges, some touching
        index, top, left = int(rng.integers(0, 2)), int(rng.integers(-5, 38)), int(rng.integers(-5, 46))
        height, width = int(rng.integers(1, 14)), int(rng.integers(1, 14))
        box = (slice(max(top, 0), max(top + height, 0)), slice(max(left, 0), max(left + width, 0)))
        maps[index][box] = rng.uniform(0.5, 1.0)
        edge = ndimage.binary_dilation(maps[index] > 0) & ~ndimage.binary_erosion(maps[index] > 0)
        maps[2 + int(rng.integers(0, 2))][edge & (rng.random(edge.shape) < 0.7)] = 0.9
    found, confidences = instance_head(min_instance_pixels=4)._h2o_instances(maps)
    labelled = np.zeros((*maps.shape[1:], 2), dtype=np.int32)
    for index, instances in enumerate(found):
        if instances is not None:
            labelled[(*instances.window, index)] = instances.ids
    expected_labelled, expected_confidences = whole_image_instances(maps, classes=2)
    assert_array_equal(labelled, expected_labelled)
    assert confidences == expected_confidences


def test_grown_instances_number_coreless_regions_after_the_cores_in_region_order():
    region = np.zeros((5, 9), dtype=bool)
    region[0:2, 0:2] = region[0, 4] = region[3:5, 3:5] = region[1:4, 7:9] = True  # four regions
    border = np.zeros_like(region)
    border[0, 4] = border[3:5, 3:5] = True  # regions 2 and 3 are all border: no core
    border[1, 1] = True  # region 1: a core plus one border pixel, grown over
    expected = np.zeros((5, 9), dtype=np.int64)
    expected[0:2, 0:2], expected[0, 4], expected[3:5, 3:5], expected[1:4, 7:9] = 1, 3, 4, 2
    assert_array_equal(instance_segmentation._grown_instances(region, border), expected)
    assert_array_equal(instance_segmentation._grown_instances(region, np.ones_like(region)), ndimage_regions(region))


def ndimage_regions(region):
    from scipy import ndimage

    return ndimage.label(region)[0]


def test_mask_rcnn_layout_box_relative_masks_and_no_instances():
    outputs = {
        "boxes": np.array([[[0, 0, 4, 4], [4, 4, 8, 8]], [[0, 0, 0, 0], [0, 0, 0, 0]]], dtype=np.float32),
        "scores": np.array([[0.9, 0.01], [0.0, 0.0]], dtype=np.float32),
        "classes": np.array([[1, 0], [0, 0]], dtype=np.float32),
        "masks": np.ones((2, 2, 1, 28, 28), dtype=np.float32),
    }
    head = instance_head("mask_rcnn")
    predictions = head.postprocess(outputs, batch_of([(16, 16), (5, 7)], input_size=(8, 8)))
    first, second = predictions["instances"]
    assert second == [] and [(item[0], item[1]) for item in first] == [(1, 1)]
    mask = decode_rle(first[0][3], (16, 16))
    assert mask[:8, :8].all() and mask.sum() == 64  # the 4x4 box, scaled 2x to the image
    raw = head.raw_predictions(predictions, pd.DataFrame({"image_path": ["x.png", "y.png"]}))
    assert raw["instance_predictions"].dtype == object and raw["instance_predictions"][1].shape == (5, 7, 2)
    assert raw["confidences"][1] == {"a": {}, "b": {}}
    # raw_probabilities at the model's 8x8: b's mask in its box; a's detection is under score_threshold.
    probabilities = raw["raw_probabilities"]
    assert probabilities.shape == (2, 4, 8, 8) and probabilities.dtype == np.float16
    assert probabilities[0, 1, :4, :4].min() == 1.0 and probabilities[0, 1].sum() == 16
    assert not probabilities[0, 0].any()
    # Instance borders: the box's edges inside the image (row 3, column 3); no other mask touches it.
    assert_array_equal(np.argwhere(probabilities[0, 2]), [[0, 3], [1, 3], [2, 3], [3, 0], [3, 1], [3, 2], [3, 3]])
    assert not probabilities[0, 3].any() and not probabilities[1].any()


def test_mask_rcnn_raw_probabilities_from_full_image_masks_and_borders_between_instances():
    masks = np.zeros((1, 3, 6, 8), dtype=np.float32)
    masks[0, 0, :, :4] = 0.9  # a, the left half
    masks[0, 1, :, 4:] = 0.7  # b, the right half, touching a
    masks[0, 2, :, 4:] = 0.6  # b again, less sure, over the first b
    masks[0, 2, 0, 0] = 0.4  # under threshold: in the class map, in no mask
    outputs = {
        "boxes": np.array([[[0, 0, 4, 6], [4, 0, 8, 6], [4, 0, 8, 6]]], dtype=np.float32),
        "scores": np.array([[0.9, 0.8, 0.5]], dtype=np.float32),
        "classes": np.array([[0, 1, 1]], dtype=np.float32),
        "masks": masks,
    }
    head = instance_head("mask_rcnn")
    predictions = head.postprocess(outputs, batch_of([(6, 8)], input_size=(6, 8)))
    probabilities = predictions["raw_probabilities"][0].astype(np.float32)
    assert_allclose(probabilities[0], np.pad(np.full((6, 4), 0.9), ((0, 0), (0, 4))), atol=1e-3)
    expected_b = np.pad(np.full((6, 4), 0.7), ((0, 0), (4, 0)))
    expected_b[0, 0] = 0.4
    assert_allclose(probabilities[1], expected_b, atol=1e-3)  # the higher of b's two masks per pixel
    edges = np.zeros((6, 8))
    edges[:, 3:5] = 1  # a's right edge and b's left edge
    assert_array_equal(probabilities[2], edges)
    between = edges.copy()
    between[:, 4:] = 1  # the two b masks cover each other
    assert_array_equal(probabilities[3], between)
    assert any("mask_rcnn" in note and "derived" in note for note in head.notes)
    assert any("float16" in note for note in head.notes)


@pytest.mark.parametrize("labelled", [True, False])
def test_semantic_csv_made_by_block_is_the_whole_table_repeated_per_class(tmp_path, monkeypatch, labelled):
    from predict.writers import csv

    monkeypatch.setattr(csv, "CSV_CHUNK_ROWS", 3)  # chunk edges inside an input row's pair of CSV rows
    true_rles = [{"a": "1 2", "b": "3 1"}, {}, {"b": "2 2"}, {"a": "4 1"}, {}]
    head = semantic_head(true_rles if labelled else None)
    frame = pd.DataFrame(
        {
            "image_path": [f"{row}.png" for row in range(5)],
            "class_name": [json.dumps(list(rles)) for rles in true_rles],
            "rle_mask": [json.dumps(list(rles.values())) for rles in true_rles],
        },
        index=[10, 10, 11, 12, 13],  # not unique: rows are taken by position
    )
    predicted = np.empty(5, dtype=object)
    for row in range(5):
        predicted[row] = np.array([[0, row, row + 1]])  # class a: pixel row (RLE "row+1 1"); b: none
    valid = np.array([True, True, False, True, True])
    table, columns, blank = head.csv_table(frame, {"mask_runs": predicted}, valid=valid)
    csv.write_predictions_csv(tmp_path / "p.csv", table, columns, blank_rows=blank)
    expected = frame.iloc[np.repeat(np.arange(5), 2)].reset_index(drop=True)
    if labelled:
        expected["class_name"] = ["a", "b"] * 5
        expected["rle_mask"] = [rles.get(name, "") for rles in true_rles for name in ("a", "b")]
    else:
        expected.insert(0, "class_id", ["a", "b"] * 5)
    expected["pred_rle_mask"] = [rle for row in range(5) for rle in (f"{row + 1} 1", "")]
    expected.loc[[4, 5], "pred_rle_mask"] = ""
    assert (tmp_path / "p.csv").read_bytes() == expected.to_csv(index=False).encode()


def test_semantic_runs_give_each_class_its_rle():
    rng = np.random.default_rng(5)
    masks = rng.random((3, 7, 9)) < 0.4
    masks[1] = False  # an empty class between two others
    edges = mask_edges(masks)
    runs = semantic_segmentation.edges_to_runs(edges, 7 * 9)
    assert runs.dtype == np.int32 and runs.shape[1] == 3 and set(runs[:, 0].tolist()) == {0, 2}
    assert semantic_segmentation.runs_to_rles(runs, 3) == [encode_rle(mask) for mask in masks]
