"""Object detection head (image object detection).

Raw outputs, as `head.layout` names them:
- `boxes_scores_classes`: already post-processed `boxes` (batch, N, 4), `scores` (batch, N) and
  `classes` (batch, N) (TF object-detection API, torchvision-style exports); no NMS is applied again.
- `yolo` (YOLOv8 and later): one output (batch, 4 + classes, anchors) (or (batch, anchors,
  4 + classes)); each anchor keeps its best class; class-wise NMS.
- `yolov5` (YOLOv5, YOLOv7): one output (batch, anchors, 5 + classes) (or transposed); column 4 is
  the objectness, and an anchor's confidence is objectness x its best class score; class-wise NMS.
- `ssd`: `boxes` (batch, anchors, 4) and `scores` (batch, anchors, classes [+ 1 background first]);
  every (anchor, class) pair above `score_threshold` is a candidate; class-wise NMS.
Boxes come in `head.box_format` (xyxy, xywh, cxcywh, yxyx), in pixels of the model input or
normalised to [0, 1] (`head.normalized_boxes`), and are mapped back to each image's own pixels
through the loader's resize or letterbox (`preprocessing.resize_mode`), then clipped to the image.

Labels: one row per image; `data.label_columns` names the class-name column, and `x_min, y_min,
x_max, y_max` hold the boxes in original-image pixels; all list-valued (JSON lists in CSV).

Writes (FORMATS.md "Object detection"):
- pkl: `boxes` float32 (n, 100, 4) xyxy pixels of the original image, `confidences` float32 (n, 100),
  `classes` (n, 100) class names; the 100 most confident boxes after NMS, padded with zeros and "".
  `{image_column}` (n,).
- CSV: one row per image, the input columns less the label columns, then `x_min, y_min, x_max,
  y_max, confidence, {class_name_column}` as JSON lists of the boxes whose confidence exceeds
  `head.probability_threshold`.
Metrics: `mAP` at IoU 0.5 and `mAP@0.5:0.95` (pycocotools COCOeval on all kept boxes).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.context import ImageContext
from predict.data.lists import list_columns
from predict.enums import ResizeMode
from predict.errors import ConfigError, InputError
from predict.heads import _ops
from predict.heads._masks import boxes_to_originals
from predict.heads.base import BlockColumn, Head, LastBlock, NamesByCode, column_values, context_of
from predict.report.coco_metrics import coco_map
from predict.runners.base import TensorSpec, format_shape
from predict.writers.row_arrays import iter_rows, read_rows

MAX_BOXES = 100  # boxes per image in the pkl (FORMATS.md)
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


class DetectionLayout(StrEnum):
    """How the model hands out its detections (see the module docstring)."""

    BOXES_SCORES_CLASSES = "boxes_scores_classes"
    YOLO = "yolo"
    YOLOV5 = "yolov5"
    SSD = "ssd"


# The YOLO layouts: the column where class scores start (4 box columns, then YOLOv5's objectness).
YOLO_COLUMNS = {DetectionLayout.YOLO: 4, DetectionLayout.YOLOV5: 5}


class BoxFormat(StrEnum):
    """Box coordinates, named as torchvision names them (`yxyx`: the TF object-detection API)."""

    XYXY = "xyxy"
    XYWH = "xywh"
    CXCYWH = "cxcywh"
    YXYX = "yxyx"


class ScoreActivation(StrEnum):
    """What turns raw scores into confidences: nothing (already probabilities), sigmoid or softmax."""

    NONE = "none"
    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of object detection."""

    class_names: tuple[str, ...]  # class index i of the model is class_names[i]
    layout: DetectionLayout = DetectionLayout.BOXES_SCORES_CLASSES
    box_format: BoxFormat | None = None  # default: cxcywh for yolo and yolov5, else xyxy
    normalized_boxes: bool = False  # coordinates are fractions of the model input's width and height
    first_class_id: int = 0  # boxes_scores_classes: the id of class_names[0] (1 for the TF detection API)
    score_activation: ScoreActivation = ScoreActivation.NONE
    background_class: bool = False  # ssd: score column 0 is "background" and is dropped
    score_threshold: float = 0.001  # boxes below it are dropped before NMS
    nms_iou_threshold: float = 0.5
    probability_threshold: float = 0.5  # boxes above it are listed in the CSV
    boxes_output: str | None = None  # output names; default: `boxes`/`scores`/`classes`, or the only output (yolo)
    scores_output: str | None = None
    classes_output: str | None = None

    def check(self) -> list[str]:
        """Ranges of the keys above."""
        errors = []
        if not self.class_names:
            errors.append("head.class_names must list the model's classes, in output order")
        elif len(set(self.class_names)) != len(self.class_names):
            errors.append(f"head.class_names has duplicates: {list(self.class_names)}")
        for key in ("score_threshold", "nms_iou_threshold", "probability_threshold"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                errors.append(f"head.{key} must be in [0, 1] (got {value})")
        return errors


class ObjectDetectionHead(Head):
    """Boxes, confidences and classes per image, scaled back to the image, and COCO mAP."""

    Config = Config
    context_type = ImageContext
    # 2.8 KB a row: 280 MB held from scoring to the last file at 100,000 rows (issue 18). The CSV, the pkl and the
    # metrics read them a block of rows at a time.
    rows_on_disk = ("boxes", "confidences", "class_ids")

    def __init__(
        self,
        *,
        config: Config,
        outputs: dict[str, str],
        box_format: str,
        resize_mode: ResizeMode,
        class_column: str,
        input_column: str,
        labels: Sequence[np.ndarray] | None,
    ) -> None:
        self.config = config
        self.outputs = outputs
        self.box_format = box_format
        self.resize_mode = resize_mode
        self.class_column = class_column
        self.input_column = input_column
        self.labels = labels
        self.notes: list[str] = []

    @classmethod
    def build(
        cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame
    ) -> ObjectDetectionHead:
        config: Config = task.head
        model_name = task.model.name
        if len(task.data.label_columns) != 1:
            raise ConfigError(
                "data.label_columns: object detection takes one column, the class names of each image's boxes "
                f"(the boxes are in {', '.join(BOX_COLUMNS)}); got {list(task.data.label_columns)}"
            )
        class_column = task.data.label_columns[0]
        names = {
            DetectionLayout.BOXES_SCORES_CLASSES: {
                "boxes": config.boxes_output,
                "scores": config.scores_output,
                "classes": config.classes_output,
            },
            DetectionLayout.YOLO: {"predictions": config.boxes_output},
            DetectionLayout.YOLOV5: {"predictions": config.boxes_output},
            DetectionLayout.SSD: {"boxes": config.boxes_output, "scores": config.scores_output},
        }[config.layout]
        chosen = _pick_outputs(outputs, names, layout=config.layout, model_name=model_name)
        if config.layout in YOLO_COLUMNS:
            _check_yolo_shape(
                next(spec for spec in outputs if spec.name == chosen["predictions"]), config, model_name=model_name
            )
        box_format = (
            config.box_format or (BoxFormat.CXCYWH if config.layout in YOLO_COLUMNS else BoxFormat.XYXY)
        ).value
        labels = None
        if class_column in dataframe.columns:
            missing = [column for column in BOX_COLUMNS if column not in dataframe.columns]
            if missing:
                raise ConfigError(
                    f"data.dataframe {task.data.dataframe.name} has '{class_column}' but no box column(s) "
                    f"{', '.join(missing)}"
                )
            labels = _read_labels(dataframe, class_column, config.class_names, source=task.data.dataframe)
        return cls(
            config=config,
            outputs=chosen,
            box_format=box_format,
            resize_mode=task.preprocessing.resize_mode,
            class_column=class_column,
            input_column=task.input_column,
            labels=labels,
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """Raw outputs to (B, 100) padded boxes; reads the `ImageContext` (image loader).

        The whole batch at once (issue 18): candidates, thresholds and boxes in original pixels over
        all images together, then every image's NMS in one `_ops.nms_rows`; per image it is the same
        arithmetic, in the same order, as one image at a time, so the results are identical.
        """
        context = context_of(batch, ImageContext, head=self)
        rows = len(batch.row_ids)
        boxes = np.zeros((rows, MAX_BOXES, 4), dtype=np.float32)
        confidences = np.zeros((rows, MAX_BOXES), dtype=np.float32)
        classes = np.full((rows, MAX_BOXES), -1, dtype=np.int64)
        readable = np.asarray(context.original_sizes)[:, 0] > 0  # height 0: a row that could not be read
        if not readable.any():
            return {"boxes": boxes, "confidences": confidences, "class_ids": classes}
        candidates = self._candidates(outputs, readable)
        in_pixels = boxes_to_originals(
            _ops.box_convert(candidates.boxes, self.box_format, "xyxy"),
            candidates.images,
            context.original_sizes,
            context.input_sizes,
            resize_mode=self.resize_mode,
            normalized=self.config.normalized_boxes,
        )
        padded = dataclasses.replace(candidates, boxes=in_pixels).padded(rows)
        if self.config.layout is DetectionLayout.BOXES_SCORES_CLASSES:  # already suppressed: only sorted
            keys = np.where(padded.valid, -padded.scores, np.float32(np.nan))  # NaN: padding sorts last
            order = np.argsort(keys, axis=1, kind="stable")
            kept = padded.valid[np.arange(rows)[:, None], order]
        else:
            order, kept = _ops.nms_rows(
                padded.boxes,
                padded.scores,
                padded.valid.sum(axis=1),
                self.config.nms_iou_threshold,
                classes=padded.class_ids,
            )
        slots = np.cumsum(kept, axis=1) - 1  # each kept box's place among its image's kept boxes
        chosen = kept & (slots < MAX_BOXES)
        images, positions = np.nonzero(chosen)
        sources = order[images, positions]
        boxes[images, slots[chosen]] = padded.boxes[images, sources]
        confidences[images, slots[chosen]] = padded.scores[images, sources]
        classes[images, slots[chosen]] = padded.class_ids[images, sources]
        return {"boxes": boxes, "confidences": confidences, "class_ids": classes}

    def _candidates(self, outputs: dict[str, np.ndarray], readable: np.ndarray) -> _Candidates:
        """The readable images' candidates above `score_threshold` with a known class, in image order."""
        config = self.config
        rows = len(readable)
        if config.layout is DetectionLayout.BOXES_SCORES_CLASSES:
            boxes = np.asarray(outputs[self.outputs["boxes"]], dtype=np.float32).reshape(rows, -1, 4)
            scores = self._activate(np.asarray(outputs[self.outputs["scores"]], dtype=np.float32).reshape(rows, -1))
            class_ids = (
                np.rint(np.asarray(outputs[self.outputs["classes"]], dtype=np.float64))
                .astype(np.int64)
                .reshape(rows, -1)
            ) - config.first_class_id
        elif config.layout in YOLO_COLUMNS:
            boxes, scores, class_ids = self._yolo_candidates(outputs)
        else:
            boxes = np.asarray(outputs[self.outputs["boxes"]], dtype=np.float32).reshape(rows, -1, 4)
            class_scores = self._activate(np.asarray(outputs[self.outputs["scores"]], dtype=np.float32))
            if config.background_class:
                class_scores = class_scores[..., 1:]
            # Every (anchor, class) pair is a candidate: image, anchor, class order as one image's np.nonzero.
            images, anchors, class_ids = np.nonzero((class_scores >= config.score_threshold) & readable[:, None, None])
            return _Candidates(
                images=images,
                boxes=boxes[images, anchors],
                scores=class_scores[images, anchors, class_ids],
                class_ids=class_ids.astype(np.int64),
            ).known(config)
        images, anchors = np.nonzero((scores >= config.score_threshold) & readable[:, None])
        return _Candidates(
            images=images,
            boxes=boxes[images, anchors],
            scores=scores[images, anchors],
            class_ids=class_ids[images, anchors],
        ).known(config)

    def _yolo_candidates(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every anchor with its best class: boxes float32[B, A, 4] (model format), scores float32[B, A] and
        class ids int64[B, A]."""
        config = self.config
        raw = np.asarray(outputs[self.outputs["predictions"]], dtype=np.float32)
        first_class = YOLO_COLUMNS[config.layout]
        channels = first_class + len(config.class_names)
        if raw.ndim != 3 or channels not in raw.shape[1:]:
            raise InputError(
                f"model output '{self.outputs['predictions']}' has shape {list(raw.shape[1:])} per image; head.layout "
                f"{config.layout} with {len(config.class_names)} head.class_names needs ({channels}, anchors) or "
                f"(anchors, {channels}): check head.layout and head.class_names"
            )
        if raw.shape[1] != channels:  # (anchors, channels)
            raw = raw.transpose(0, 2, 1)
        class_scores = self._activate(raw[:, first_class:].transpose(0, 2, 1))
        class_ids = class_scores.argmax(axis=2)
        scores = np.take_along_axis(class_scores, class_ids[..., None], axis=2)[..., 0]
        if config.layout is DetectionLayout.YOLOV5:  # objectness: a logit unless scores are probabilities already
            objectness = raw[:, 4] if config.score_activation is ScoreActivation.NONE else _ops.sigmoid(raw[:, 4])
            scores = scores * objectness
        return raw[:, :4].transpose(0, 2, 1), scores, class_ids.astype(np.int64)

    def _activate(self, scores: np.ndarray) -> np.ndarray:
        activation = self.config.score_activation
        if activation is ScoreActivation.SIGMOID:
            return _ops.sigmoid(scores)
        if activation is ScoreActivation.SOFTMAX:
            return _ops.softmax(scores, axis=-1)
        return scores

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        shown = predictions["confidences"] > self.config.probability_threshold
        shown &= predictions["class_ids"] >= 0
        rows, slots = np.nonzero(shown)  # row by row, each row's boxes in order
        counts = shown.sum(axis=1)
        boxes = np.round(predictions["boxes"][rows, slots].astype(np.float64), 2)
        columns = {name: _json_lists(boxes[:, j], counts) for j, name in enumerate(BOX_COLUMNS)}
        columns["confidence"] = _json_lists(
            np.round(predictions["confidences"][rows, slots].astype(np.float64), 4), counts
        )
        names = [json.dumps(name) for name in self.config.class_names]  # json.dumps of a list joins with ", "
        class_ids = predictions["class_ids"][rows, slots].tolist()
        starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
        columns[self.class_column] = [
            "[" + ", ".join([names[i] for i in class_ids[start:stop]]) + "]"
            for start, stop in itertools.pairwise(starts)
        ]
        return columns

    def csv_table(
        self, dataframe: pd.DataFrame, predictions: dict[str, np.ndarray], *, valid: np.ndarray
    ) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray]:
        """The predicted boxes take the place of the label columns of the same names (FORMATS.md)."""
        replaced = [column for column in (*BOX_COLUMNS, "confidence", self.class_column) if column in dataframe.columns]
        made = LastBlock(len(predictions["boxes"]), functools.partial(self._block_columns, predictions))
        names = (*BOX_COLUMNS, "confidence", self.class_column)
        columns = {name: BlockColumn(made, operator.itemgetter(name)) for name in names}
        return dataframe.drop(columns=replaced), columns, ~valid

    def _block_columns(self, predictions: dict[str, np.ndarray], start: int, stop: int) -> dict[str, list[str]]:
        """The prediction columns of rows `start:stop`, read from the arrays (on disk in a run) for those rows."""
        keys = ("boxes", "confidences", "class_ids")
        return self.prediction_columns({key: read_rows(predictions[key], start, stop) for key in keys})

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        names = np.array([*self.config.class_names, ""], dtype=object)
        return {
            "boxes": predictions["boxes"],
            "confidences": predictions["confidences"],
            "classes": NamesByCode(predictions["class_ids"], names),  # -1 (padding) picks the trailing ""
            self.input_column: column_values(dataframe, self.input_column),
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        images = zip(self.labels, *(iter_rows(predictions[key]) for key in ("boxes", "confidences", "class_ids")))
        classes = len(self.config.class_names)
        return coco_map(itertools.starmap(_coco_objects, images), classes=classes, iou_type="bbox", notes=self.notes)


def _coco_objects(
    labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An image's labelled boxes (float64[m, 5]: x_min, y_min, x_max, y_max, class index) and kept detections as
    `coco_map` takes them (xywh, ids from 1)."""
    truths = [
        {"category_id": int(class_id) + 1, "bbox": [x_min, y_min, x_max - x_min, y_max - y_min]}
        for x_min, y_min, x_max, y_max, class_id in np.asarray(labels, dtype=np.float64).reshape(-1, 5).tolist()
    ]
    kept = np.flatnonzero(class_ids >= 0)
    xywh = _ops.box_convert(boxes[kept], "xyxy", "xywh").astype(np.float64).tolist()
    found = [
        {"category_id": int(class_ids[i]) + 1, "bbox": xywh[k], "score": float(scores[i])} for k, i in enumerate(kept)
    ]
    return truths, found


@dataclass(frozen=True, kw_only=True)
class _Candidates:
    """A batch's candidate boxes, one entry each, grouped by image in ascending order.

    Attributes:
        images: int64[N] the row each candidate belongs to.
        boxes: float32[N, 4] (model format until mapped to the image).
        scores: float32[N].
        class_ids: int64[N].
    """

    images: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def known(self, config: Config) -> _Candidates:
        """Only those above `score_threshold` whose class is in `class_names`."""
        keep = (
            (self.scores >= config.score_threshold) & (self.class_ids >= 0) & (self.class_ids < len(config.class_names))
        )
        return _Candidates(
            images=self.images[keep], boxes=self.boxes[keep], scores=self.scores[keep], class_ids=self.class_ids[keep]
        )

    def padded(self, rows: int) -> _PaddedCandidates:
        """One row per image, its candidates first in their order, then padding (zeros, `valid` False)."""
        counts = np.bincount(self.images, minlength=rows)
        width = int(counts.max()) if rows else 0
        ranks = np.arange(len(self.images)) - (np.cumsum(counts) - counts)[self.images]
        padded = _PaddedCandidates(
            boxes=np.zeros((rows, width, 4), dtype=np.float32),
            scores=np.zeros((rows, width), dtype=np.float32),
            class_ids=np.zeros((rows, width), dtype=np.int64),
            valid=np.zeros((rows, width), dtype=bool),
        )
        padded.boxes[self.images, ranks] = self.boxes
        padded.scores[self.images, ranks] = self.scores
        padded.class_ids[self.images, ranks] = self.class_ids
        padded.valid[self.images, ranks] = True
        return padded


@dataclass(frozen=True, kw_only=True)
class _PaddedCandidates:
    """Candidates as float32[B, K, 4] boxes, float32[B, K] scores, int64[B, K] class ids and bool[B, K] `valid`."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    valid: np.ndarray


def _json_lists(values: np.ndarray, counts: np.ndarray) -> list[str]:
    """Consecutive runs of `values`, counts[r] for row r, each as the text json.dumps gives its list.

    One json.dumps for all values, cut at its ", " separators (numbers hold none), instead of one call
    per row and column: the detection CSV's columns took 2x the head's post-processing (issue 18).
    """
    text = json.dumps(values.tolist())
    items = text[1:-1].split(", ") if len(values) else []
    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    return ["[" + ", ".join(items[start:stop]) + "]" for start, stop in itertools.pairwise(starts)]


def _pick_outputs(
    outputs: tuple[TensorSpec, ...], wanted: dict[str, str | None], *, layout: DetectionLayout, model_name: str
) -> dict[str, str]:
    """Role (`boxes`, `scores`, ...) to output name: as configured, else the output named after the role."""
    available = [spec.name for spec in outputs]
    chosen = {}
    for role, name in wanted.items():
        if name is None:
            if role == "predictions" and len(available) == 1:
                name = available[0]
            elif role in available:
                name = role
            else:
                key = "boxes_output" if role == "predictions" else f"{role}_output"
                raise ConfigError(
                    f"head.{key} is missing: model {model_name} has no output named '{role}' for layout {layout} "
                    f"(outputs: {', '.join(available)}); name the one to use"
                )
        elif name not in available:
            key = "boxes_output" if role == "predictions" else f"{role}_output"
            raise ConfigError(
                f"head.{key}: model {model_name} has no output '{name}' (outputs: {', '.join(available)})"
            )
        chosen[role] = name
    return chosen


def _check_yolo_shape(spec: TensorSpec, config: Config, *, model_name: str) -> None:
    """Refuse, before any work, a static output shape that cannot hold 4 (+1) + len(class_names) columns."""
    channels = YOLO_COLUMNS[config.layout] + len(config.class_names)
    per_image = spec.shape[1:]
    if len(per_image) == 2 and None not in per_image and channels not in per_image:
        raise ConfigError(
            f"head.layout {config.layout}: model {model_name} output '{spec.name}' is {format_shape(spec.shape)}, but "
            f"{len(config.class_names)} head.class_names need {channels} columns ({YOLO_COLUMNS[config.layout]} + "
            "classes) "
            "on one axis: check head.layout (yolo: YOLOv8+, yolov5: with objectness) and head.class_names"
        )


def _read_labels(dataframe: pd.DataFrame, class_column: str, class_names: tuple[str, ...], *, source) -> BoxLabels:
    """Per row, its boxes as x_min, y_min, x_max, y_max and class index.

    Raises:
        InputError: a cell is not a list, lists of a row differ in length, a coordinate is not a
            number, a box has x_max < x_min or y_max < y_min, or a class is not in `head.class_names`.
    """
    index = {name: i for i, name in enumerate(class_names)}
    parts, part, counts = [], [], []
    for row, cells in enumerate(list_columns(dataframe, (*BOX_COLUMNS, class_column), source=source)):
        count = 0
        for *coordinates, name in zip(*cells):
            try:
                x_min, y_min, x_max, y_max = (float(value) for value in coordinates)
            except (TypeError, ValueError):
                raise InputError(
                    f"{source.name}: row {row}: box coordinates must be numbers (got {coordinates})"
                ) from None
            if not (x_max >= x_min and y_max >= y_min):
                raise InputError(f"{source.name}: row {row}: box {coordinates} has x_max < x_min or y_max < y_min")
            if str(name) not in index:
                raise InputError(
                    f"{source.name}: row {row}, column '{class_column}': class {name!r} is not in head.class_names "
                    f"({', '.join(class_names)})"
                )
            part.append((x_min, y_min, x_max, y_max, index[str(name)]))
            count += 1
        counts.append(count)
        if len(part) >= 4096:  # a block's boxes at a time into an array: as Python lists, 5x their size
            parts.append(np.array(part, dtype=np.float64))
            part = []
    parts.append(np.array(part, dtype=np.float64).reshape(-1, 5))
    return BoxLabels(np.concatenate(parts), np.asarray(counts, dtype=np.int64))


class BoxLabels(Sequence):
    """The labelled boxes of every row, float64[m, 5] each (x_min, y_min, x_max, y_max, class index), as one array:
    a Python list per box and row took 61 MB at 100,000 rows of about two boxes (issue 18)."""

    def __init__(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.values = values  # float64[boxes, 5], row after row
        self.starts = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} of {len(self)}")
        return self.values[int(self.starts[row]) : int(self.starts[row + 1])]
