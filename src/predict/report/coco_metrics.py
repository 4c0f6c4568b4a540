"""Mean average precision of boxes and masks through pycocotools' COCOeval (FORMATS.md "Metrics").

Images are numbered by row from 1, categories by class index + 1 (COCO ids start at 1); every
ground-truth object is `iscrowd: 0`. COCOeval's area ranges and `maxDets` stay at their defaults
(100 detections per image, the most the prediction files hold).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np


def coco_map(
    truths: list[list[dict[str, Any]]],
    detections: list[list[dict[str, Any]]],
    *,
    classes: int,
    iou_type: str,
    notes: list[str] | None = None,
) -> dict[str, float]:
    """`mAP` at IoU 0.5 and `mAP@0.5:0.95`, as COCOeval's `stats[1]` and `stats[0]`.

    Args:
        truths: per image, its objects: `{"category_id": int, "bbox": [x, y, w, h]}` for boxes, or
            `{"category_id": int, "segmentation": coco_rle}` for masks.
        detections: per image, the same plus `"score"`.
        classes: how many categories there are (ids 1..classes).
        iou_type: `bbox` or `segm`.
        notes: where a note goes when the metric is undefined.

    Returns:
        The two metrics; empty when there is no ground-truth object at all (AP is undefined).
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not any(truths):
        if notes is not None:
            notes.append("no mAP: the labels hold no object at all")
        return {}
    images = [{"id": index + 1, "height": 1, "width": 1} for index in range(len(truths))]
    annotations, results = [], []
    for index, (objects, found) in enumerate(zip(truths, detections)):
        for item in objects:
            annotation = {**item, "image_id": index + 1, "id": len(annotations) + 1, "iscrowd": 0}
            if iou_type == "segm":
                annotation["area"] = float(mask_utils.area(item["segmentation"]))
                annotation["bbox"] = mask_utils.toBbox(item["segmentation"]).tolist()
            else:
                annotation["area"] = float(item["bbox"][2] * item["bbox"][3])
            annotations.append(annotation)
        results.extend({**item, "image_id": index + 1} for item in found)
    if not results:
        return {"mAP": 0.0, "mAP@0.5:0.95": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print progress
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": class_id} for class_id in range(1, classes + 1)],
        }
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = np.maximum(evaluation.stats, 0.0)  # -1 means "no such objects"; ruled out above
    return {"mAP": float(stats[1]), "mAP@0.5:0.95": float(stats[0])}
