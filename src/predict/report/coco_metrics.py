"""Mean average precision of boxes and masks through pycocotools' COCOeval (FORMATS.md "Metrics").

Images are numbered by row from 1, categories by class index + 1 (COCO ids start at 1); every
ground-truth object is `iscrowd: 0`. The metrics are COCOeval's `stats[0]` and `stats[1]`: area
range "all", 100 detections per image (the most the prediction files hold).

COCOeval keeps every image's IoU matrices and matching results until it accumulates (2.7 GB at
100,000 images), so images are evaluated a block at a time, and of each block only what
`accumulate` reads is kept: per category, the block's detection scores, matched / ignored flags and
ground-truth ignore flags, concatenated in image order. `accumulate` concatenates images in that
same order and sorts stably, so the precision it computes is the one a single COCOeval gives. It
runs once per category and IoU threshold, which it computes independently of the others, so that
it holds one of them at a time.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from predict.heap import return_freed_memory

BLOCK_IMAGES = 2048  # images per COCOeval.evaluate
MAX_DETECTIONS = 100

# An image's ground-truth objects and detections, as `coco_map` documents them.
ImageObjects = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def coco_map(
    images: Iterable[ImageObjects],
    *,
    classes: int,
    iou_type: str,
    notes: list[str] | None = None,
    block_images: int = BLOCK_IMAGES,
) -> dict[str, float]:
    """`mAP` at IoU 0.5 and `mAP@0.5:0.95`, as COCOeval's `stats[1]` and `stats[0]`.

    Args:
        images: per image, in order, its ground-truth objects, `{"category_id": int, "bbox": [x, y,
            w, h]}` for boxes or `{"category_id": int, "segmentation": coco_rle}` for masks, and its
            detections, the same plus `"score"`; read a block at a time.
        classes: how many categories there are (ids 1..classes).
        iou_type: `bbox` or `segm`.
        notes: where a note goes when the metric is undefined.
        block_images: images evaluated at a time.

    Returns:
        The two metrics; empty when there is no ground-truth object at all (AP is undefined).
    """
    merged: list[list[dict[str, np.ndarray] | None]] = [[] for _ in range(classes)]
    truth_count = detection_count = 0
    images = iter(images)
    while block := list(itertools.islice(images, block_images)):
        truth_count += sum(len(truths) for truths, _ in block)
        detection_count += sum(len(found) for _, found in block)
        for class_index, entry in enumerate(_evaluate_block(block, classes, iou_type)):
            merged[class_index].append(entry)
    if truth_count == 0:
        if notes is not None:
            notes.append("no mAP: the labels hold no object at all")
        return {}
    if detection_count == 0:
        return {"mAP": 0.0, "mAP@0.5:0.95": 0.0}
    return _accumulate(merged, iou_type)


def _evaluate_block(block: list[ImageObjects], classes: int, iou_type: str) -> list[dict[str, np.ndarray] | None]:
    """COCOeval's per-image results for a block of images, one merged entry per category."""
    from pycocotools.cocoeval import COCOeval

    ground_truth, results = _coco_pair(block, classes, iou_type)
    evaluation = COCOeval(ground_truth, results, iou_type)
    _area_all_only(evaluation.params, MAX_DETECTIONS)
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress
        evaluation.evaluate()
    # evalImgs is ordered category, area range (one), image: one slice per category.
    return [_merge(evaluation.evalImgs[k * len(block) : (k + 1) * len(block)]) for k in range(classes)]


def _coco_pair(block: list[ImageObjects], classes: int, iou_type: str) -> tuple[Any, Any]:
    """The block's ground truth and detections as two pycocotools COCO objects."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images = [{"id": index + 1, "height": 1, "width": 1} for index in range(len(block))]
    categories = [{"id": class_id} for class_id in range(1, classes + 1)]
    annotations, results = [], []
    for index, (truths, found) in enumerate(block):
        for item in truths:
            annotation = {**item, "image_id": index + 1, "id": len(annotations) + 1, "iscrowd": 0}
            if iou_type == "segm":
                annotation["area"] = float(mask_utils.area(item["segmentation"]))
                annotation["bbox"] = mask_utils.toBbox(item["segmentation"]).tolist()
            else:
                annotation["area"] = float(item["bbox"][2] * item["bbox"][3])
            annotations.append(annotation)
        results.extend({**item, "image_id": index + 1} for item in found)
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations, "categories": categories}
        ground_truth.createIndex()
        if results:
            return ground_truth, ground_truth.loadRes(results)
        empty = COCO()  # loadRes cannot take an empty list
        empty.dataset = {"images": images, "annotations": [], "categories": categories}
        empty.createIndex()
    return ground_truth, empty


def _area_all_only(params: Any, max_detections: int) -> None:
    """Evaluate area range "all" at one detection limit: all that `stats[0]` and `stats[1]` read."""
    params.areaRng = [params.areaRng[params.areaRngLbl.index("all")]]
    params.areaRngLbl = ["all"]
    params.maxDets = [max_detections]


def _merge(entries: list[dict[str, Any] | None]) -> dict[str, np.ndarray] | None:
    """What `accumulate` reads of a category's images, concatenated in image order."""
    kept = [entry for entry in entries if entry is not None]
    if not kept:
        return None
    return {
        "dtScores": np.concatenate([np.asarray(entry["dtScores"], dtype=np.float64) for entry in kept]),
        # accumulate only asks whether a detection matched (ids start at 1)
        "dtMatches": np.concatenate([entry["dtMatches"] > 0 for entry in kept], axis=1),
        "dtIgnore": np.concatenate([entry["dtIgnore"].astype(bool) for entry in kept], axis=1),
        "gtIgnore": np.concatenate([np.asarray(entry["gtIgnore"], dtype=np.int64) for entry in kept]),
    }


def _accumulate(merged: list[list[dict[str, np.ndarray] | None]], iou_type: str) -> dict[str, float]:
    """COCOeval.accumulate over the merged blocks, then `stats[0]` and `stats[1]` as summarize reads them.

    One category and IoU threshold at a time: accumulate computes each on its own (from that threshold's row of
    the matches), and holds several float64 copies of all the detections of what it is given at once: 44 MB
    for 300,000 detections of two categories at ten thresholds, 80 MB of the run's peak (issue 18).
    """
    from pycocotools.cocoeval import COCOeval

    defaults = COCOeval(iouType=iou_type).params
    thresholds = defaults.iouThrs
    precision = np.full((len(thresholds), len(defaults.recThrs), len(merged)), -1.0)  # iou threshold x recall x class
    for category, entries in enumerate(merged):
        for row in range(len(thresholds)):
            evaluation = COCOeval(iouType=iou_type)
            params = evaluation.params
            # Each block is one "image" to accumulate; the 100-per-image cut was made when it was evaluated.
            _area_all_only(params, sys.maxsize)
            params.iouThrs = thresholds[row : row + 1]
            params.catIds = [category + 1]
            params.imgIds = list(range(1, len(entries) + 1))
            evaluation.evalImgs = [_at_threshold(entry, row) for entry in entries]
            evaluation._paramsEval = params
            with contextlib.redirect_stdout(io.StringIO()):
                evaluation.accumulate()
            precision[row, :, category] = evaluation.eval["precision"][0, :, 0, 0, 0]
    return_freed_memory()  # what accumulate freed stays resident in the C heap otherwise
    at_half = precision[np.flatnonzero(thresholds == 0.5)]
    return {"mAP": _mean_defined(at_half), "mAP@0.5:0.95": _mean_defined(precision)}


def _at_threshold(entry: dict[str, np.ndarray] | None, row: int) -> dict[str, np.ndarray] | None:
    """A merged entry with only the matches of one IoU threshold (row of `dtMatches` and `dtIgnore`)."""
    if entry is None:
        return None
    return {**entry, "dtMatches": entry["dtMatches"][row : row + 1], "dtIgnore": entry["dtIgnore"][row : row + 1]}


def _mean_defined(precision: np.ndarray) -> float:
    """summarize's mean over the defined (> -1) precisions; 0 where none is defined."""
    defined = precision[precision > -1]
    return float(np.mean(defined)) if defined.size else 0.0
