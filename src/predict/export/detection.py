"""Object detection's post-processing as ONNX nodes: decode, map to the image, class-wise NMS, the 100 best.

The same steps as `predict.heads.object_detection.ObjectDetectionHead.postprocess`, in its order:
1. candidates per (anchor, class): YOLO keeps each anchor's best class (YOLOv5: times its
   objectness), SSD every pair, post-processed outputs their own boxes; the score activation;
   `score_threshold` (scores >= it) and valid class ids;
2. boxes to xyxy (`box_format`, `normalized_boxes`), then to pixels of the original image by undoing
   the resize or letterbox (`predict.heads._masks.boxes_to_original`), clipped to the image: the
   graph takes each image's (height, width) as the input `original_sizes`;
3. only the `NMS_MAX_CANDIDATES` most confident candidates enter NMS (`predict.heads._ops.nms`);
4. class-wise NMS with the standard `NonMaxSuppression` op, `max_output_boxes_per_class` set to
   that cap (the op's default, 0, keeps nothing); post-processed outputs skip it, as the head does;
5. the `MAX_BOXES` most confident kept boxes, ties to the lower (anchor, class) index as the head's
   stable sort, padded with zeros, class id -1 and class name "".
"""

from __future__ import annotations

import json

import numpy as np

from predict.enums import ResizeMode
from predict.errors import ConfigError
from predict.export.agreement import Agreement
from predict.export.graph import GraphBuilder, element_type
from predict.export.outputs import HeadExport, Output
from predict.heads._ops import NMS_MAX_CANDIDATES
from predict.heads.object_detection import (
    MAX_BOXES,
    YOLO_COLUMNS,
    DetectionLayout,
    ObjectDetectionHead,
    ScoreActivation,
)
from predict.runners.base import TensorSpec, format_shape

SIZES_INPUT = "original_sizes"
_LOWEST = float(np.finfo(np.float32).min)
# Boxes of the graph and the pipeline are the same boxes when they overlap at least this much.
BOX_IOU = 0.999


class DetectionExport(HeadExport):
    """`boxes` (N, 100, 4) xyxy pixels of each image, `confidences` (N, 100), `class_ids` (N, 100) and `classes`."""

    def __init__(self, head: ObjectDetectionHead, outputs: dict[str, TensorSpec], input_size: tuple[int, int]) -> None:
        self.head = head
        self.specs = outputs
        self.input_size = input_size  # (height, width) of the model input

    def add(self, builder: GraphBuilder) -> list[Output]:
        config = self.head.config
        sizes = builder.input(SIZES_INPUT, np.int64, ["batch", 2])
        if config.layout is DetectionLayout.BOXES_SCORES_CLASSES:
            boxes, scores = self._postprocessed_candidates(builder)
        elif config.layout in YOLO_COLUMNS:
            boxes, scores = self._yolo_candidates(builder)
        else:
            boxes, scores = self._ssd_candidates(builder)
        # scores: float32 (N, anchors, classes); -inf marks what is no candidate.
        keep = builder.op("GreaterOrEqual", scores, builder.const(np.float32(config.score_threshold)))
        scores = builder.op("Where", keep, scores, builder.const(np.float32(-np.inf)))
        boxes = self._to_image(builder, boxes, sizes)
        if config.layout is not DetectionLayout.BOXES_SCORES_CLASSES:
            scores = self._nms(builder, boxes, _keep_top(builder, scores, NMS_MAX_CANDIDATES))
        return self._best(builder, boxes, scores)

    # -- 1. candidates -------------------------------------------------------------------------------

    def _activate(self, builder: GraphBuilder, scores: str) -> str:
        activation = self.head.config.score_activation
        if activation is ScoreActivation.SIGMOID:
            return builder.op("Sigmoid", scores)
        if activation is ScoreActivation.SOFTMAX:
            return builder.op("Softmax", scores, axis=-1)
        return scores

    def _float_output(self, builder: GraphBuilder, role: str) -> str:
        name = self.head.outputs[role]
        value = builder.model_output(name)
        if np.dtype(self.specs[name].dtype) != np.float32:
            value = builder.op("Cast", value, to=element_type(np.float32))
        return value

    def _postprocessed_candidates(self, builder: GraphBuilder) -> tuple[str, str]:
        """(N, K, 4) boxes and (N, K, 1) scores, -inf where the class id is not one of the classes."""
        config = self.head.config
        boxes = builder.op("Reshape", self._float_output(builder, "boxes"), builder.const([0, -1, 4]))
        scores = self._activate(builder, builder.op("Flatten", self._float_output(builder, "scores"), axis=1))
        classes = builder.model_output(self.head.outputs["classes"])
        classes = builder.op("Round", builder.op("Cast", classes, to=element_type(np.float64)))
        classes = builder.op("Cast", builder.op("Flatten", classes, axis=1), to=element_type(np.int64))
        classes = builder.op("Sub", classes, builder.const(np.int64(config.first_class_id)))
        valid = builder.op(
            "And",
            builder.op("GreaterOrEqual", classes, builder.const(np.int64(0))),
            builder.op("Less", classes, builder.const(np.int64(len(config.class_names)))),
        )
        scores = builder.op("Where", valid, scores, builder.const(np.float32(-np.inf)))
        self._classes = builder.op("Unsqueeze", classes, builder.const([2]))  # (N, K, 1): read by _best
        return boxes, builder.op("Unsqueeze", scores, builder.const([2]))

    def _yolo_candidates(self, builder: GraphBuilder) -> tuple[str, str]:
        """(N, anchors, 4) boxes and (N, anchors, classes) scores: each anchor's best class only."""
        config = self.head.config
        name = self.head.outputs["predictions"]
        first, classes = YOLO_COLUMNS[config.layout], len(config.class_names)
        raw = self._float_output(builder, "predictions")
        if _channels_first(self.specs[name], first + classes):
            raw = builder.op("Transpose", raw, perm=[0, 2, 1])  # (N, anchors, channels)
        boxes = _slice(builder, raw, 0, 4)
        class_scores = self._activate(builder, _slice(builder, raw, first, first + classes))
        best = builder.op("ArgMax", class_scores, axis=2, keepdims=1)
        scores = builder.op("GatherElements", class_scores, best, axis=2)
        if config.layout is DetectionLayout.YOLOV5:  # objectness: a logit unless scores are probabilities already
            objectness = _slice(builder, raw, 4, 5)
            if config.score_activation is not ScoreActivation.NONE:
                objectness = builder.op("Sigmoid", objectness)
            scores = builder.op("Mul", scores, objectness)
        one_hot = builder.op("Equal", best, builder.const(np.arange(classes, dtype=np.int64)))
        return boxes, builder.op("Where", one_hot, scores, builder.const(np.float32(-np.inf)))

    def _ssd_candidates(self, builder: GraphBuilder) -> tuple[str, str]:
        """(N, anchors, 4) boxes and (N, anchors, classes) scores: every (anchor, class) pair."""
        boxes = builder.op("Reshape", self._float_output(builder, "boxes"), builder.const([0, -1, 4]))
        scores = self._activate(builder, self._float_output(builder, "scores"))
        if self.head.config.background_class:
            scores = _slice(builder, scores, 1, 2**62)
        return boxes, scores

    # -- 2. boxes onto the image ---------------------------------------------------------------------

    def _to_image(self, builder: GraphBuilder, boxes: str, sizes: str) -> str:
        """(N, K, 4) model-input boxes in `box_format` to xyxy pixels of each image, clipped (float32)."""
        boxes = _to_xyxy(builder, boxes, self.head.box_format)
        input_height, input_width = self.input_size
        if self.head.config.normalized_boxes:
            boxes = builder.op("Mul", boxes, builder.const(np.array([input_width, input_height] * 2, np.float32)))
        sizes = builder.op("Cast", sizes, to=element_type(np.float64))
        height, width = _slice(builder, sizes, 0, 1, axis=1), _slice(builder, sizes, 1, 2, axis=1)  # (N, 1)
        if self.head.resize_mode is ResizeMode.LETTERBOX:
            new_height, new_width, top, left = _letterbox_geometry(builder, height, width, self.input_size)
            offset = builder.op("Concat", left, top, left, top, axis=1)
        else:
            new_height, new_width = builder.const([[float(input_height)]]), builder.const([[float(input_width)]])
            offset = builder.const(np.zeros((1, 4)))
        # In float64, then float32: the head divides Python floats into a float32 array.
        x_scale, y_scale = builder.op("Div", width, new_width), builder.op("Div", height, new_height)
        scale = builder.op("Concat", x_scale, y_scale, x_scale, y_scale, axis=1)
        upper = builder.op("Concat", width, height, width, height, axis=1)
        offset, scale, upper = (_per_image(builder, value) for value in (offset, scale, upper))
        boxes = builder.op("Mul", builder.op("Sub", boxes, offset), scale)
        return builder.op("Min", builder.op("Max", boxes, builder.const(np.float32(0))), upper)

    # -- 3.-5. NMS and the best boxes ----------------------------------------------------------------

    def _nms(self, builder: GraphBuilder, boxes: str, scores: str) -> str:
        """(N, anchors, classes) scores of the boxes class-wise NMS keeps, -inf elsewhere."""
        by_class = builder.op("Transpose", scores, perm=[0, 2, 1])  # (N, classes, anchors), as the op takes
        selected = builder.op(
            "NonMaxSuppression",
            boxes,
            by_class,
            builder.const([NMS_MAX_CANDIDATES]),
            builder.const(np.array([self.head.config.nms_iou_threshold], np.float32)),
            builder.const(np.array([_LOWEST], np.float32)),  # strictly above: every finite score, never -inf
        )
        kept_scores = builder.op("GatherND", by_class, selected)
        at = builder.op("Gather", selected, builder.const([0, 2, 1]), axis=1)  # (image, anchor, class)
        empty = builder.op(
            "ConstantOfShape", builder.op("Shape", scores), value=_tensor(np.array([-np.inf], np.float32))
        )
        return builder.op("ScatterND", empty, at, kept_scores)

    def _best(self, builder: GraphBuilder, boxes: str, scores: str) -> list[Output]:
        """The MAX_BOXES most confident (anchor, class) pairs of each image, padded."""
        classes = builder.op("Gather", builder.op("Shape", scores), builder.const(2), axis=0)
        flat = builder.op("Flatten", scores, axis=1)  # index = anchor * classes + class
        top_scores, top = _top(builder, flat, MAX_BOXES)
        anchors = builder.op("Div", top, classes)
        if self.head.config.layout is DetectionLayout.BOXES_SCORES_CLASSES:
            class_ids = builder.op("GatherElements", builder.op("Flatten", self._classes, axis=1), top, axis=1)
        else:
            class_ids = builder.op("Mod", top, classes)
        top_boxes = builder.op("GatherND", boxes, builder.op("Unsqueeze", anchors, builder.const([2])), batch_dims=1)
        valid = builder.op("Not", builder.op("IsInf", top_scores, detect_positive=0))
        confidences = builder.op("Where", valid, top_scores, builder.const(np.float32(0)))
        top_boxes = builder.op(
            "Where", builder.op("Unsqueeze", valid, builder.const([2])), top_boxes, builder.const(np.float32(0))
        )
        class_ids = builder.op("Where", valid, class_ids, builder.const(np.int64(-1)))
        boxes_out = _pad_boxes(builder, top_boxes, 0.0, rank=3)
        confidences, class_ids = _pad_boxes(builder, confidences, 0.0), _pad_boxes(builder, class_ids, -1)
        names = np.asarray([*self.head.config.class_names, ""], dtype=object)  # -1 picks ""
        classes_out = builder.op("Gather", builder.const(names), class_ids, axis=0)
        return [
            ("boxes", boxes_out, np.float32, ["batch", MAX_BOXES, 4]),
            ("confidences", confidences, np.float32, ["batch", MAX_BOXES]),
            ("class_ids", class_ids, np.int64, ["batch", MAX_BOXES]),
            ("classes", classes_out, object, ["batch", MAX_BOXES]),
        ]

    def metadata(self) -> dict[str, str]:
        config = self.head.config
        return {
            "class_names": json.dumps(list(config.class_names)),
            "layout": str(config.layout),
            "box_format": self.head.box_format,
            "score_threshold": str(config.score_threshold),
            "nms_iou_threshold": str(config.nms_iou_threshold),
            "probability_threshold": str(config.probability_threshold),
            "max_boxes": str(MAX_BOXES),
            "original_sizes": "int64 (N, 2): each image's (height, width) before resizing; boxes are in its pixels",
        }

    def outside(self) -> list[str]:
        return [f"listing the boxes above probability_threshold {self.head.config.probability_threshold} (the CSV)"]

    def compare(self, graph: dict[str, np.ndarray], pipeline: dict[str, np.ndarray], *, atol: float) -> Agreement:
        return compare_detections(graph, pipeline, atol=atol)


def compare_detections(graph: dict[str, np.ndarray], pipeline: dict[str, np.ndarray], *, atol: float) -> Agreement:
    """Box count and classes per image, then IoU, coordinates and confidences of the boxes in the same slots."""
    from predict.heads._ops import box_iou

    agreement = Agreement()
    graph_ids, pipeline_ids = graph["class_ids"], pipeline["class_ids"]
    agreement.fraction("box count agreement", (graph_ids >= 0).sum(axis=1) == (pipeline_ids >= 0).sum(axis=1))
    both = (graph_ids >= 0) & (pipeline_ids >= 0)
    agreement.fraction("box class agreement", graph_ids[both] == pipeline_ids[both])
    first, second = graph["boxes"][both], pipeline["boxes"][both]
    overlaps = np.array([box_iou(a[None], b[None])[0, 0] for a, b in zip(first, second)], dtype=np.float64)
    degenerate = np.all(first == second, axis=1)  # equal empty boxes have IoU 0 but are the same
    agreement.fraction(f"boxes with IoU >= {BOX_IOU}", (overlaps >= BOX_IOU) | degenerate)
    agreement.figures["min box IoU"] = float(np.where(degenerate, 1.0, overlaps).min(initial=1.0))
    agreement.max_difference("boxes (pixels)", first, second, tolerance=max(atol, 1e-3))
    agreement.max_difference("confidences", graph["confidences"], pipeline["confidences"], tolerance=atol)
    return agreement


def _channels_first(spec: TensorSpec, channels: int) -> bool:
    """Whether a YOLO output is (N, channels, anchors), as the head decides per batch (channels first when
    axis 1 has `channels` entries), from the axes the model fixes.

    Raises:
        ConfigError: neither axis is static, so the graph could not fix the layout.
    """
    first, second = (spec.shape[1:] + (None, None))[:2]
    if first is not None:
        return first == channels
    if second is not None and second != channels:
        return True  # axis 1 must hold the channels: the head refuses any other shape
    if second == channels:
        return False
    raise ConfigError(
        f"model output '{spec.name}' has shape {format_shape(spec.shape)}: export needs axis 1 or 2 static to tell "
        f"(batch, {channels}, anchors) from (batch, anchors, {channels}) in the graph"
    )


def _slice(builder: GraphBuilder, value: str, start: int, stop: int, *, axis: int = -1) -> str:
    return builder.op("Slice", value, builder.const([start]), builder.const([stop]), builder.const([axis]))


def _to_xyxy(builder: GraphBuilder, boxes: str, box_format: str) -> str:
    """`predict.heads._ops.box_convert(boxes, box_format, "xyxy")` on (N, K, 4)."""
    if box_format == "xyxy":
        return boxes
    a, b, c, d = builder.op("Split", boxes, builder.const([1, 1, 1, 1]), axis=2, outputs=4)
    if box_format == "yxyx":
        corners = (b, a, d, c)
    elif box_format == "xywh":
        corners = (a, b, builder.op("Add", a, c), builder.op("Add", b, d))
    else:  # cxcywh
        half_width = builder.op("Div", c, builder.const(np.float32(2)))
        half_height = builder.op("Div", d, builder.const(np.float32(2)))
        corners = (
            builder.op("Sub", a, half_width),
            builder.op("Sub", b, half_height),
            builder.op("Add", a, half_width),
            builder.op("Add", b, half_height),
        )
    return builder.op("Concat", *corners, axis=2)


def _letterbox_geometry(
    builder: GraphBuilder, height: str, width: str, input_size: tuple[int, int]
) -> tuple[str, str, str, str]:
    """`predict.data.image.letterbox_geometry` on float64 (N, 1) sizes: new height, new width, top, left."""
    target_height, target_width = (builder.const([[float(value)]]) for value in input_size)
    scale = builder.op("Min", builder.op("Div", target_height, height), builder.op("Div", target_width, width))
    one = builder.const([[1.0]])
    # Round is half to even, as Python's round().
    new_height = builder.op(
        "Min", target_height, builder.op("Max", one, builder.op("Round", builder.op("Mul", height, scale)))
    )
    new_width = builder.op(
        "Min", target_width, builder.op("Max", one, builder.op("Round", builder.op("Mul", width, scale)))
    )
    two = builder.const([[2.0]])
    top = builder.op("Floor", builder.op("Div", builder.op("Sub", target_height, new_height), two))
    left = builder.op("Floor", builder.op("Div", builder.op("Sub", target_width, new_width), two))
    return new_height, new_width, top, left


def _per_image(builder: GraphBuilder, value: str) -> str:
    """float64 (N, 4) to float32 (N, 1, 4), broadcast over an image's boxes."""
    return builder.op("Unsqueeze", builder.op("Cast", value, to=element_type(np.float32)), builder.const([1]))


def _top(builder: GraphBuilder, flat: str, count: int) -> tuple[str, str]:
    """TopK of (N, M) along M with k = min(count, M): descending, ties to the lower index."""
    columns = builder.op("Gather", builder.op("Shape", flat), builder.const([1]), axis=0)
    k = builder.op("Min", columns, builder.const([count]))
    return builder.op("TopK", flat, k, axis=1, largest=1, sorted=1, outputs=2)


def _keep_top(builder: GraphBuilder, scores: str, count: int) -> str:
    """(N, anchors, classes) scores with all but the `count` highest (over anchors x classes) set to -inf."""
    flat = builder.op("Flatten", scores, axis=1)
    _, top = _top(builder, flat, count)
    chosen = builder.op(
        "ScatterElements",
        builder.op("ConstantOfShape", builder.op("Shape", flat), value=_tensor(np.array([0], np.float32))),
        top,
        builder.op("ConstantOfShape", builder.op("Shape", top), value=_tensor(np.array([1], np.float32))),
        axis=1,
    )
    chosen = builder.op("Reshape", builder.op("Cast", chosen, to=element_type(np.bool_)), builder.op("Shape", scores))
    return builder.op("Where", chosen, scores, builder.const(np.float32(-np.inf)))


def _pad_boxes(builder: GraphBuilder, value: str, fill: float, *, rank: int = 2) -> str:
    """(N, k) or (N, k, 4) to (N, MAX_BOXES[, 4]) with `fill`; k <= MAX_BOXES."""
    count = builder.op("Gather", builder.op("Shape", value), builder.const([1]), axis=0)
    missing = builder.op("Sub", builder.const([MAX_BOXES]), count)
    zeros = builder.const([0] * (rank + 1))  # begins of every axis, then the end of the batch axis
    pads = builder.op("Concat", zeros, missing, *([builder.const([0])] if rank == 3 else []), axis=0)
    dtype = np.int64 if fill == -1 else np.float32
    return builder.op("Pad", value, pads, builder.const(np.array(fill, dtype=dtype)))


def _tensor(array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(array)
