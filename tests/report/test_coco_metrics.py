"""coco_map, evaluated a block of images at a time, against one pycocotools COCOeval over all images."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from predict.report.coco_metrics import _coco_pair, coco_map

CLASSES = 3


def _random_box(rng: np.random.Generator) -> list[float]:
    x, y = rng.uniform(0, 80, size=2)
    w, h = rng.uniform(2, 40, size=2)
    return [float(x), float(y), float(w), float(h)]


def _near(box: list[float], rng: np.random.Generator) -> list[float]:
    corner = [value + float(rng.normal(0, 3)) for value in box[:2]]
    return corner + [max(1.0, value + float(rng.normal(0, 3))) for value in box[2:]]


def _box_images(rng: np.random.Generator, count: int) -> list[tuple[list, list]]:
    """Images with 0-4 objects, detections near some of them plus strays; rounded scores tie across images;
    one image has 120 detections (more than the 100 COCOeval keeps per image)."""
    images = []
    for index in range(count):
        objects = int(rng.integers(0, 5))
        truths = [{"category_id": int(rng.integers(1, CLASSES)), "bbox": _random_box(rng)} for _ in range(objects)]
        found = []
        for truth in truths:
            if rng.random() < 0.7:
                found.append({"category_id": truth["category_id"], "bbox": _near(truth["bbox"], rng), "score": 0.0})
        strays = 120 if index == 5 else int(rng.integers(0, 3))
        for _ in range(strays):
            found.append({"category_id": int(rng.integers(1, CLASSES + 1)), "bbox": _random_box(rng), "score": 0.0})
        for item in found:
            item["score"] = round(float(rng.random()), 1)
        images.append((truths, found))
    return images


def _mask_images(rng: np.random.Generator, count: int) -> list[tuple[list, list]]:
    """The box images' boxes drawn as masks on 100 x 100 images."""

    def as_mask(item: dict) -> dict:
        x, y, w, h = (round(value) for value in item["bbox"])
        mask = np.zeros((100, 100), dtype=np.uint8, order="F")
        mask[max(y, 0) : y + h, max(x, 0) : x + w] = 1
        converted = {key: value for key, value in item.items() if key != "bbox"}
        converted["segmentation"] = mask_utils.encode(mask)
        return converted

    return [([as_mask(t) for t in truths], [as_mask(f) for f in found]) for truths, found in _box_images(rng, count)]


def _one_cocoeval(images: list[tuple[list, list]], iou_type: str) -> dict[str, float]:
    """The whole set in one COCOeval with its default parameters (every area range, 1/10/100 detections), read
    as summarize's stats[1] and stats[0]: what coco_map gave before it went a block at a time."""
    truth, results = _coco_pair(images, CLASSES, iou_type)  # every image as one block
    evaluation = COCOeval(truth, results, iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"mAP": float(evaluation.stats[1]), "mAP@0.5:0.95": float(evaluation.stats[0])}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("block_images", [1, 7, 1000])
def test_blocks_give_one_cocoeval_metrics(iou_type: str, block_images: int) -> None:
    rng = np.random.default_rng(3)
    images = _box_images(rng, 60) if iou_type == "bbox" else _mask_images(rng, 60)
    expected = _one_cocoeval(images, iou_type)
    assert 0.05 < expected["mAP"] < 0.95  # neither trivial nor zero
    got = coco_map(iter(images), classes=CLASSES, iou_type=iou_type, block_images=block_images)
    assert got == expected  # the same floats, not only close ones


def test_no_ground_truth_object_gives_no_metric_and_a_note() -> None:
    notes: list[str] = []
    images = [([], [{"category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}])] * 3
    assert coco_map(images, classes=2, iou_type="bbox", notes=notes) == {}
    assert notes == ["no mAP: the labels hold no object at all"]


def test_no_detection_scores_zero_and_blocks_without_detections_count_their_objects() -> None:
    truth = {"category_id": 1, "bbox": [10.0, 10.0, 20.0, 20.0]}
    assert coco_map([([truth], [])] * 3, classes=1, iou_type="bbox") == {"mAP": 0.0, "mAP@0.5:0.95": 0.0}
    # One of two blocks has no detection: its object is missed, so recall stops at one half.
    hit = ([truth], [{**truth, "score": 0.9}])
    got = coco_map([hit, ([truth], [])], classes=1, iou_type="bbox", block_images=1)
    assert got == _one_cocoeval([hit, ([truth], [])], "bbox")
    assert 0.4 < got["mAP"] < 0.6
