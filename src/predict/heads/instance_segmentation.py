"""Instance segmentation head (image instance segmentation).

Raw outputs, as `head.layout` names them:
- `h2o`: H2O Hydrogen Torch's (batch, classes + 2, H, W) probabilities (or channels last): one map
  per class, then instance borders and borders between instances. Per class, pixels with
  probability >= `threshold` and no border (both border maps < `border_threshold`) are split into
  connected components (scipy.ndimage.label); the class's border pixels then join the nearest
  component they touch, and class regions without any core become instances of their own.
  Confidence = the mean class probability over the instance.
- `mask_rcnn`: `boxes` (batch, N, 4) xyxy (model-input pixels, or normalised), `scores` (batch, N),
  `classes` (batch, N) and `masks` (batch, N, [1,] h, w) probabilities: full-image masks when
  (h, w) is the model input's size (torchvision), else box-relative masks pasted into the box
  (Mask R-CNN's 28 x 28). Instances with score >= `score_threshold` are kept; where two of one
  class overlap, the more confident owns the pixel.
Maps are resized to each image's size before thresholding (letterbox padding cut away first).
Instances smaller than `min_instance_pixels` are dropped; ids run from 1 per class.

Labels: one row per image; `data.label_columns` = [class name column, RLE column], one entry per
instance (JSON lists in CSV); RLE as in semantic segmentation (`head.rle_order`).

Writes (FORMATS.md "Instance segmentation"):
- pkl: `raw_probabilities` float16 (n, classes + 2, H, W) at the model input's size (float16 to halve
  the biggest array; the run's notes say so). Layout `h2o`: the model's maps, activated. Layout
  `mask_rcnn` has no such maps; they are assembled from the kept detections: class c = per pixel
  the highest mask probability of class c's detections, and the two border channels are derived
  from those masks at `threshold` (0/1: instance borders, and pixels where masks overlap or touch).
  `instance_predictions` one int32 (H0, W0, classes) array per image (a 4-D array when all images
  share a size, else an object array), `confidences` list of `{class_name: {instance_id: confidence}}`,
  `class_names`, `{image_column}`.
- CSV: one row per image with exactly `{image_column}`, `{class_name_column}` (the predicted class
  of each instance), `instance_rle`, `confidence`, as JSON lists, one entry per instance, on both
  splits; other input columns (the true masks among them) are not repeated.
Metrics: `mAP` on masks at IoU 0.5 and `mAP@0.5:0.95` (pycocotools COCOeval, iouType segm).

scipy and torch are imported in the functions that use them: the head registry imports every head,
and runs of other problem types (and `predict show`) must not pay for them (issue 18).
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.context import ImageContext
from predict.enums import ResizeMode
from predict.errors import ConfigError, InputError
from predict.heads._masks import (
    boxes_to_original,
    coco_rle,
    decode_rle,
    encode_rles_by_id,
    to_float16,
    to_original_size,
    to_original_sizes,
)
from predict.heads.base import BlockColumn, Head, LastBlock, column_values, context_of, select_output
from predict.heads.semantic_segmentation import (
    MaskActivation,
    RleOrder,
    activate,
    channel_axis,
    channels_first,
    read_mask_labels,
)
from predict.report.coco_metrics import ImageObjects, coco_map
from predict.runners.base import TensorSpec
from predict.writers.checkpoint import checkpoint_folder
from predict.writers.row_arrays import read_rows, stack_rows


class InstanceLayout(StrEnum):
    """How the model hands out its instances (see the module docstring)."""

    H2O = "h2o"
    MASK_RCNN = "mask_rcnn"


@dataclass(frozen=True)
class ClassInstances:
    """One class's instances in an image: ids 1..k on a window of the image, 0 elsewhere in it."""

    window: tuple[slice, slice]  # (rows, columns) of the image
    ids: np.ndarray  # int32[window rows, window columns]


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of instance segmentation."""

    class_names: tuple[str, ...]  # class i of the model is class_names[i]
    layout: InstanceLayout = InstanceLayout.H2O
    activation: MaskActivation = MaskActivation.NONE  # h2o: sigmoid when the model gives logits
    threshold: float = 0.5  # a pixel belongs to a class (h2o) or to an instance's mask (mask_rcnn)
    border_threshold: float = 0.5  # h2o: a pixel is a border when either border map reaches it
    score_threshold: float = 0.05  # mask_rcnn: less confident instances are dropped
    min_instance_pixels: int = 1
    channels_last: bool | None = None  # h2o: (batch, H, W, classes + 2); default: found from the class count
    normalized_boxes: bool = False  # mask_rcnn: box coordinates are fractions of the model input size
    first_class_id: int = 0  # mask_rcnn: the id of class_names[0]
    rle_order: RleOrder = RleOrder.COLUMN_MAJOR
    output_name: str | None = None  # h2o: which output, when the model has several
    boxes_output: str = "boxes"  # mask_rcnn output names
    scores_output: str = "scores"
    classes_output: str = "classes"
    masks_output: str = "masks"

    def check(self) -> list[str]:
        """Ranges of the keys above."""
        errors = []
        if not self.class_names:
            errors.append("head.class_names must list the model's classes, in output order")
        elif len(set(self.class_names)) != len(self.class_names):
            errors.append(f"head.class_names has duplicates: {list(self.class_names)}")
        for key in ("threshold", "border_threshold", "score_threshold"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                errors.append(f"head.{key} must be in [0, 1] (got {value})")
        if self.min_instance_pixels < 1:
            errors.append(f"head.min_instance_pixels must be >= 1 (got {self.min_instance_pixels})")
        if self.activation is MaskActivation.SOFTMAX:
            errors.append("head.activation: instance maps are independent per channel; use sigmoid or none")
        return errors


class InstanceSegmentationHead(Head):
    """Instances per class at each image's size, their RLEs and confidences, and COCO mask mAP."""

    Config = Config
    model_keys = ("class_names",)
    context_type = ImageContext
    # Each row's instances, an RLE string each (about 6 KB a row here), stay in the checkpoint's files once saved:
    # held from scoring to the last file they grew the run's memory with its rows (issue 18).
    rows_on_disk = ("instances",)

    def __init__(
        self,
        *,
        config: Config,
        output: str | None,
        channels_last: bool,
        resize_mode: ResizeMode,
        class_column: str,
        input_column: str,
        labels: list[list[tuple[str, str]]] | None,
        source_name: str,
        scratch_folder: Path,
    ) -> None:
        self.config = config
        # Where the split's instance maps are stacked when too big for memory: the partial run's folder,
        # so a run killed while writing leaves nothing behind that the next run does not clear.
        self.scratch_folder = scratch_folder
        self.output = output
        self.channels_last = channels_last
        self.resize_mode = resize_mode
        self.class_column = class_column
        self.input_column = input_column
        self.labels = labels
        self.source_name = source_name
        self.notes: list[str] = [
            "raw_probabilities are float16 in the pkl (half the size of float32, about 3 significant digits)"
        ]
        if config.layout is InstanceLayout.MASK_RCNN:
            self.notes.append(
                "raw_probabilities (head.layout mask_rcnn): per class the highest mask probability of its "
                "detections, at the model input's size; the two border channels are derived from those masks "
                "(0 or 1), the model predicts none"
            )

    @classmethod
    def build(
        cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame
    ) -> InstanceSegmentationHead:
        config: Config = task.head
        model_name = task.model.name
        output, channels_last = None, False
        if config.layout is InstanceLayout.H2O:
            spec = select_output(outputs, config.output_name, model_name=model_name)
            output = spec.name
            channels_last = channel_axis(spec, len(config.class_names) + 2, config.channels_last, model_name=model_name)
        else:
            available = [spec.name for spec in outputs]
            for key in ("boxes_output", "scores_output", "classes_output", "masks_output"):
                if getattr(config, key) not in available:
                    raise ConfigError(
                        f"head.{key}: model {model_name} has no output '{getattr(config, key)}' (outputs: "
                        f"{', '.join(available)})"
                    )
        if len(task.data.label_columns) != 2:
            raise ConfigError(
                f"data.label_columns: {task.problem_type} takes two columns, [class name column, RLE mask column] "
                f"(got {list(task.data.label_columns)})"
            )
        class_column, mask_column = task.data.label_columns
        labels = None
        if class_column in dataframe.columns:
            labels = list(
                read_mask_labels(
                    dataframe, (class_column, mask_column), config.class_names, source=task.data.dataframe, unique=False
                )
            )
        return cls(
            config=config,
            output=output,
            channels_last=channels_last,
            resize_mode=task.preprocessing.resize_mode,
            class_column=class_column,
            input_column=task.input_column,
            labels=labels,
            source_name=task.data.dataframe.name,
            scratch_folder=checkpoint_folder(task.output_dir, task.data.split.value),
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """Raw outputs to per-row instance lists; reads the `ImageContext` (image loader)."""
        context = context_of(batch, ImageContext, head=self)
        rows = len(batch.row_ids)
        sizes = context.original_sizes
        instances = np.empty(rows, dtype=object)  # per row: [[class index, id in class, confidence, rle], ...]
        if self.config.layout is InstanceLayout.H2O:
            probabilities = activate(channels_first(outputs[self.output], self.channels_last), self.config.activation)
        else:  # assembled from the detections, row by row, at the model input's size
            input_height, input_width = (int(value) for value in context.input_sizes.max(axis=0))
            channels = len(self.config.class_names) + 2
            probabilities = np.zeros((rows, channels, input_height, input_width), dtype=np.float32)
        h2o = self.config.layout is InstanceLayout.H2O
        restored = to_original_sizes(probabilities, sizes, resize_mode=self.resize_mode) if h2o else None
        for slot in range(rows):
            size = (int(sizes[slot][0]), int(sizes[slot][1]))
            if size[0] == 0:  # a row that could not be read
                instances[slot] = []
                continue
            if h2o:
                found, confidences = self._h2o_instances(restored[slot])
            else:
                input_size = context.input_sizes[slot]
                found, confidences = self._mask_rcnn_instances(outputs, slot, size, input_size)
                probabilities[slot] = self._mask_rcnn_probabilities(outputs, slot, probabilities.shape[2:], input_size)
            instances[slot] = self._describe(found, confidences, size)
        return {
            "raw_probabilities": to_float16(probabilities),
            "instances": instances,
            "original_image_shapes": sizes.astype(np.int64),
        }

    def _h2o_instances(self, probabilities: np.ndarray) -> tuple[list[ClassInstances | None], list[list[float]]]:
        """float32[C + 2, h, w] to per class its instances (None without any pixel) and the confidences of
        their ids 1..k."""
        config = self.config
        classes = len(config.class_names)
        found, confidences = [], []
        for index in range(classes):
            # Only the box around the class's pixels is labelled (cores lie inside it, so every border
            # pixel's nearest core does too): the same ids and confidences, for a fraction of the work
            # when objects are small next to the image (issue 18).
            in_class = probabilities[index] >= config.threshold
            window = _bounding_window(in_class)
            if window is None:
                found.append(None)
                confidences.append([])
                continue
            # Borders only inside the window, all that is read of them (with orphans marked, not found by
            # np.unique, and `_relabel`'s bincounts: 2.7 -> 1.6 ms per 256x256 image here; issue 18).
            borders = probabilities[classes][window], probabilities[classes + 1][window]
            instance_map = _grown_instances(in_class[window], np.maximum(*borders) >= config.border_threshold)
            ids, class_confidences = self._relabel(instance_map, probabilities[index][window])
            found.append(ClassInstances(window, ids))
            confidences.append(class_confidences)
        return found, confidences

    def _relabel(self, instance_map: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """Drop instances under `min_instance_pixels`, number the rest 1..k; their mean probabilities.

        Pixel counts and sums by `np.bincount`, as `scipy.ndimage.mean` computes them for non-negative int
        labels (the same floats, tested; with np.unique and ndimage.mean: 1.43 instead of 1.27 ms per
        256x256 image for `_h2o_instances`, issue 18).
        """
        pixels = np.bincount(instance_map.ravel())  # per id, [0] the background
        kept = np.flatnonzero(pixels[1:] >= self.config.min_instance_pixels) + 1
        lookup = np.zeros(pixels.size, dtype=np.int32)
        lookup[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
        relabelled = lookup[instance_map]
        sums = np.bincount(relabelled.ravel(), weights=probability.ravel(), minlength=kept.size + 1)[1:]
        return relabelled, (sums / pixels[kept].astype(np.float64)).tolist()

    def _detections(
        self, outputs: dict[str, np.ndarray], slot: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """One image's Mask R-CNN outputs: float32[N] scores, int64[N] class indices, float32[N, h, w] masks,
        and the detections kept (score >= `score_threshold`, a known class), most confident first."""
        config = self.config
        scores = np.asarray(outputs[config.scores_output][slot], dtype=np.float32).reshape(-1)
        class_ids = np.rint(np.asarray(outputs[config.classes_output][slot], dtype=np.float64)).reshape(-1)
        class_ids = class_ids.astype(np.int64) - config.first_class_id
        masks = np.asarray(outputs[config.masks_output][slot], dtype=np.float32)
        masks = masks.reshape(len(scores), *masks.shape[-2:])
        classes = len(config.class_names)
        kept = (scores >= config.score_threshold) & (class_ids >= 0) & (class_ids < classes)
        order = [int(i) for i in np.argsort(-scores, kind="stable") if kept[i]]
        return scores, class_ids, masks, order

    def _mask_rcnn_instances(
        self, outputs: dict[str, np.ndarray], slot: int, size: tuple[int, int], input_size: np.ndarray
    ) -> tuple[list[ClassInstances], list[list[float]]]:
        """One image's detections to per class its instances (on the whole image) and the confidences of ids 1..k."""
        config = self.config
        classes = len(config.class_names)
        scores, class_ids, masks, order = self._detections(outputs, slot)
        boxes = boxes_to_original(
            outputs[config.boxes_output][slot],
            size,
            tuple(input_size),
            resize_mode=self.resize_mode,
            normalized=config.normalized_boxes,
        )
        full_image = masks.shape[1:] == (int(input_size[0]), int(input_size[1]))
        owner = np.zeros((*size, classes), dtype=np.int64)  # index + 1 of the detection owning each pixel
        for index in order:
            if full_image:
                mask = to_original_size(masks[index][None], size, resize_mode=self.resize_mode)[0] >= config.threshold
            else:
                mask = _paste(masks[index], boxes[index], size) >= config.threshold
            channel = owner[..., class_ids[index]]
            channel[mask & (channel == 0)] = index + 1  # the more confident instance keeps shared pixels
        found, confidences = [], []
        whole_image = (slice(0, size[0]), slice(0, size[1]))
        for class_index in range(classes):
            detections = [i for i in order if class_ids[i] == class_index]
            instance_map = np.zeros(size, dtype=np.int64)
            for number, index in enumerate(detections, start=1):
                instance_map[owner[..., class_index] == index + 1] = number
            found.append(ClassInstances(whole_image, self._relabel(instance_map, np.zeros(size, dtype=np.float32))[0]))
            pixels = np.bincount(instance_map.ravel(), minlength=len(detections) + 1)[1:]
            confidences.append(
                [float(scores[i]) for i, count in zip(detections, pixels) if count >= config.min_instance_pixels]
            )
        return found, confidences

    def _mask_rcnn_probabilities(
        self, outputs: dict[str, np.ndarray], slot: int, shape: tuple[int, int], input_size: np.ndarray
    ) -> np.ndarray:
        """One image's detections as H2O's maps at the model input's size: float32[C + 2, H, W].

        Class c: per pixel, the highest mask probability of the kept detections of class c (0 where
        none). The model predicts no borders; channels C and C + 1 are derived from the kept masks
        at `threshold`: 1 on a mask's pixels next to a pixel outside it (instance borders), and on
        pixels of a mask that another mask covers or touches (borders between instances), else 0.
        """
        from scipy import ndimage

        config = self.config
        classes = len(config.class_names)
        height, width = int(input_size[0]), int(input_size[1])
        maps = np.zeros((classes + 2, *shape), dtype=np.float32)
        _, class_ids, masks, order = self._detections(outputs, slot)
        boxes = np.asarray(outputs[config.boxes_output][slot], dtype=np.float32).reshape(-1, 4)
        if config.normalized_boxes:
            boxes = boxes * np.array([width, height] * 2, dtype=np.float32)
        boxes = np.clip(boxes, 0, np.array([width, height] * 2, dtype=np.float32))
        full_image = masks.shape[1:] == (height, width)
        covering = np.zeros((height, width), dtype=np.int32)  # masks that cover a pixel or touch it
        inside = np.zeros((height, width), dtype=bool)
        for index in order:
            probability = masks[index] if full_image else _paste(masks[index], boxes[index], (height, width))
            channel = maps[class_ids[index], :height, :width]
            np.maximum(channel, probability, out=channel)
            mask = probability >= config.threshold
            maps[classes, :height, :width][mask & ~ndimage.binary_erosion(mask, border_value=1)] = 1.0
            covering += ndimage.binary_dilation(mask)
            inside |= mask
        maps[classes + 1, :height, :width][inside & (covering >= 2)] = 1.0
        return maps

    def _describe(
        self, found: list[ClassInstances | None], confidences: list[list[float]], size: tuple[int, int]
    ) -> list[list]:
        """[[class index, id, confidence, rle], ...] for every instance, class by class, ids ascending."""
        column_major = self.config.rle_order is RleOrder.COLUMN_MAJOR
        described = []
        for class_index, (instances, class_confidences) in enumerate(zip(found, confidences, strict=True)):
            if not class_confidences:
                continue
            origin = (instances.window[0].start, instances.window[1].start)
            rles = encode_rles_by_id(
                instances.ids, len(class_confidences), column_major=column_major, origin=origin, shape=size
            )
            for number, (confidence, rle) in enumerate(zip(class_confidences, rles, strict=True), start=1):
                described.append([class_index, number, round(confidence, 6), rle])
        return described

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        names, rles, confidences = [], [], []
        for instances in predictions["instances"]:
            names.append(json.dumps([self.config.class_names[item[0]] for item in instances]))
            rles.append(json.dumps([item[3] for item in instances]))
            confidences.append(json.dumps([round(item[2], 4) for item in instances]))
        return {self.class_column: names, "instance_rle": rles, "confidence": confidences}

    def csv_table(
        self, dataframe: pd.DataFrame, predictions: dict[str, np.ndarray], *, valid: np.ndarray
    ) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray]:
        """Exactly `{image_column}`, then the instances (FORMATS.md): other input columns, the true
        masks among them, are not repeated (the true class column would sit beside predicted masks). The three
        columns are made a block of rows at a time, as the CSV writer asks for them."""
        made = LastBlock(
            len(predictions["instances"]), functools.partial(self._block_columns, predictions["instances"])
        )
        columns = {
            name: BlockColumn(made, operator.itemgetter(name))
            for name in (self.class_column, "instance_rle", "confidence")
        }
        return dataframe[[self.input_column]], columns, ~valid

    def _block_columns(self, instances: Sequence[list], start: int, stop: int) -> dict[str, list[str]]:
        """The prediction columns of rows `start:stop`, their instances read for those rows (from the checkpoint's
        files in a run)."""
        return self.prediction_columns({"instances": read_rows(instances, start, stop)})

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        instances, sizes = predictions["instances"], predictions["original_image_shapes"]
        confidences = []
        for row_instances in instances:
            row_confidences: dict[str, dict[int, float]] = {name: {} for name in self.config.class_names}
            for class_index, number, confidence, _ in row_instances:
                row_confidences[self.config.class_names[class_index]][int(number)] = float(confidence)
            confidences.append(row_confidences)
        maps = (self._instance_map(row_instances, size) for row_instances, size in zip(instances, sizes))
        shapes = {(int(height), int(width)) for height, width in sizes}
        if len(shapes) == 1:  # one 4-D array, built on disk when big (FORMATS.md; predict.writers.row_arrays)
            row_shape = (*shapes.pop(), len(self.config.class_names))
            instance_predictions = stack_rows(
                maps, count=len(instances), row_shape=row_shape, dtype=np.int32, folder=self.scratch_folder
            )
        else:
            instance_predictions = np.empty(len(instances), dtype=object)
            for index, item in enumerate(maps):
                instance_predictions[index] = item
        return {
            "raw_probabilities": predictions["raw_probabilities"],
            "instance_predictions": instance_predictions,
            "confidences": confidences,
            "class_names": list(self.config.class_names),
            self.input_column: column_values(dataframe, self.input_column),
        }

    def _instance_map(self, instances: list[list], size: np.ndarray) -> np.ndarray:
        """int32[H0, W0, classes]: each instance's id within its class on its pixels, from its RLE."""
        column_major = self.config.rle_order is RleOrder.COLUMN_MAJOR
        labelled = np.zeros((int(size[0]), int(size[1]), len(self.config.class_names)), dtype=np.int32)
        for class_index, number, _, rle in instances:
            labelled[..., class_index][decode_rle(rle, labelled.shape[:2], column_major=column_major)] = number
        return labelled

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        images = zip(itertools.count(), self.labels, predictions["instances"], predictions["original_image_shapes"])
        objects = itertools.starmap(self._coco_objects, images)
        return coco_map(objects, classes=len(self.config.class_names), iou_type="segm", notes=self.notes)

    def _coco_objects(self, row: int, pairs: list, instances: list, size: np.ndarray) -> ImageObjects:
        """An image's labelled and predicted instances as `coco_map` takes them (ids from 1)."""
        column_major = self.config.rle_order is RleOrder.COLUMN_MAJOR
        shape = (int(size[0]), int(size[1]))
        truths = []
        for name, rle in pairs:
            try:
                mask = decode_rle(rle, shape, column_major=column_major)
            except ValueError as error:
                raise InputError(f"{self.source_name}: row {row}, class {name!r}: RLE {error}") from None
            truths.append({"category_id": self.config.class_names.index(name) + 1, "segmentation": coco_rle(mask)})
        found = [
            {
                "category_id": class_index + 1,
                "score": float(confidence),
                "segmentation": coco_rle(decode_rle(rle, shape, column_major=column_major)),
            }
            for class_index, _, confidence, rle in instances
        ]
        return truths, found


def _paste(mask: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A box-relative float[h, w] mask resized into its xyxy box on a float32[H, W] canvas of the image."""
    import torch

    canvas = np.zeros(size, dtype=np.float32)
    x_min, y_min = int(np.floor(box[0])), int(np.floor(box[1]))
    x_max, y_max = int(np.ceil(box[2])), int(np.ceil(box[3]))
    if x_max <= x_min or y_max <= y_min:
        return canvas
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None],
        size=(y_max - y_min, x_max - x_min),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    canvas[y_min:y_max, x_min:x_max] = resized
    return canvas


def _grown_instances(region: np.ndarray, border: np.ndarray) -> np.ndarray:
    """int[h, w] instance ids 1..k of a class's bool[h, w] pixels split at bool[h, w] borders: the connected
    cores off the borders, each grown over the border pixels of its region nearest to it, then every region
    without a core as one more instance."""
    from scipy import ndimage

    cores, count = ndimage.label(region & ~border)
    regions, region_count = ndimage.label(region)
    if count:
        # Border pixels join the nearest core of the same connected region.
        nearest = ndimage.distance_transform_edt(cores == 0, return_distances=False, return_indices=True)
        grown = cores[nearest[0], nearest[1]]
        same_region = regions == regions[nearest[0], nearest[1]]
        instance_map = np.where(region & same_region, grown, 0)
    else:
        instance_map = np.zeros_like(cores)
    # Regions with no core at all (thin or tiny objects) are instances of their own, in region order.
    has_core = np.zeros(region_count + 1, dtype=bool)
    has_core[regions[instance_map > 0]] = True
    orphans = np.flatnonzero(~has_core[1:]) + 1
    if orphans.size:
        lookup = np.zeros(region_count + 1, dtype=np.int64)
        lookup[orphans] = count + np.arange(1, orphans.size + 1)
        instance_map = np.where(instance_map > 0, instance_map, lookup[regions])
    return instance_map


def _bounding_window(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest (rows, columns) slices holding every True pixel of a 2-D mask; None when there is none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1)
