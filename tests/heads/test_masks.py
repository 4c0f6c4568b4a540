"""RLE strings (Kaggle-style) against an independent decoder and pycocotools, and the box/NMS numerics."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from pycocotools import mask as mask_utils

from predict.config import ResizeMode
from predict.heads import _ops
from predict.heads._masks import (
    boxes_to_original,
    decode_rle,
    encode_rle,
    encode_rles_by_id,
    parse_rle,
    to_original_size,
    to_original_sizes,
)


def loop_decode(text: str, shape: tuple[int, int], *, column_major: bool) -> np.ndarray:
    """The plainest possible decoder: pixel numbers one by one."""
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    numbers = [int(value) for value in text.split()]
    for start, length in zip(numbers[0::2], numbers[1::2]):
        for pixel in range(start - 1, start - 1 + length):
            flat[pixel] = True
    return flat.reshape(shape, order="F" if column_major else "C")


def coco_from_kaggle(text: str, shape: tuple[int, int]) -> dict:
    """Column-major Kaggle runs as pycocotools' uncompressed counts (alternating off/on lengths)."""
    numbers = [int(value) for value in text.split()]
    counts, position = [], 0
    for start, length in zip(numbers[0::2], numbers[1::2]):
        counts += [start - 1 - position, length]
        position = start - 1 + length
    counts.append(shape[0] * shape[1] - position)
    return mask_utils.frPyObjects({"counts": counts, "size": list(shape)}, *shape)


MASKS = {
    "empty": np.zeros((5, 7), dtype=bool),
    "full": np.ones((5, 7), dtype=bool),
    "one pixel": np.pad(np.ones((1, 1), dtype=bool), ((2, 2), (3, 3))),
    "first pixel": np.pad(np.ones((1, 1), dtype=bool), ((0, 4), (0, 6))),
    "last pixel": np.pad(np.ones((1, 1), dtype=bool), ((4, 0), (6, 0))),
    "random": np.random.default_rng(0).random((13, 9)) > 0.5,
}


@pytest.mark.parametrize("name", list(MASKS))
@pytest.mark.parametrize("column_major", [True, False])
def test_rle_round_trip_against_an_independent_decoder(name, column_major):
    mask = MASKS[name]
    text = encode_rle(mask, column_major=column_major)
    assert_array_equal(loop_decode(text, mask.shape, column_major=column_major), mask)
    assert_array_equal(decode_rle(text, mask.shape, column_major=column_major), mask)


@pytest.mark.parametrize("name", list(MASKS))
def test_column_major_rle_is_pycocotools_order(name):
    mask = MASKS[name]
    text = encode_rle(mask)
    assert_array_equal(mask_utils.decode(coco_from_kaggle(text, mask.shape)).astype(bool), mask)
    assert mask_utils.area(mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))) == sum(
        map(int, text.split()[1::2])
    )


def test_rle_exact_strings():
    mask = np.array([[0, 1, 1], [0, 1, 0]], dtype=bool)
    assert encode_rle(mask) == "3 3"  # column-major: (0,1) (1,1) (0,2) are pixels 3, 4, 5
    assert encode_rle(mask, column_major=False) == "2 2 5 1"
    assert encode_rle(np.zeros((2, 2))) == ""


def test_rle_errors():
    with pytest.raises(ValueError, match="whole numbers"):
        parse_rle("1 x")
    with pytest.raises(ValueError, match="pairs of start and length"):
        parse_rle("1 2 3")
    with pytest.raises(ValueError, match="1-indexed"):
        parse_rle("0 2")
    with pytest.raises(ValueError, match="past the 2x2 image"):
        decode_rle("3 3", (2, 2))


def test_box_convert_round_trips():
    boxes = np.array([[1.0, 2.0, 5.0, 10.0]])
    for fmt, expected in {"xywh": [1, 2, 4, 8], "cxcywh": [3, 6, 4, 8], "yxyx": [2, 1, 10, 5]}.items():
        converted = _ops.box_convert(boxes, "xyxy", fmt)
        assert_allclose(converted[0], expected)
        assert_allclose(_ops.box_convert(converted, fmt, "xyxy"), boxes)
    with pytest.raises(ValueError, match="unknown box format 'xy'"):
        _ops.box_convert(boxes, "xy", "xyxy")


def test_nms_is_class_wise():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert _ops.nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert _ops.nms(boxes, scores, 0.5, classes=np.array([0, 0, 1, 1])).tolist() == [0, 2, 3]
    assert _ops.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_boxes_and_maps_back_to_the_image():
    # A 50 x 100 image letterboxed into 64 x 64: scaled to 32 x 64, 16 rows of padding above.
    box = np.array([[0, 16, 64, 48]], dtype=np.float32)
    assert_allclose(
        boxes_to_original(box, (50, 100), (64, 64), resize_mode=ResizeMode.LETTERBOX), [[0, 0, 100, 50]], atol=1e-4
    )
    assert_allclose(
        boxes_to_original(box / 64, (50, 100), (64, 64), resize_mode=ResizeMode.RESIZE, normalized=True),
        [[0, 12.5, 100, 37.5]],
    )
    maps = np.zeros((1, 64, 64), dtype=np.float32)
    maps[:, 16:48] = 1
    restored = to_original_size(maps, (50, 100), resize_mode=ResizeMode.LETTERBOX)
    assert restored.shape == (1, 50, 100) and restored.min() == 1


@pytest.mark.parametrize("resize_mode", [ResizeMode.RESIZE, ResizeMode.LETTERBOX])
def test_a_batch_is_restored_as_each_image_alone(resize_mode):
    rng = np.random.default_rng(0)
    maps = rng.random((5, 3, 16, 16), dtype=np.float32)
    sizes = np.array([[40, 60], [0, 0], [40, 60], [16, 16], [33, 20]])  # row 1 could not be read
    restored = to_original_sizes(maps, sizes, resize_mode=resize_mode)
    assert restored[1] is None
    for slot in (0, 2, 3, 4):
        alone = to_original_size(maps[slot], tuple(sizes[slot]), resize_mode=resize_mode)
        assert restored[slot].shape == (3, *sizes[slot]) and np.array_equal(restored[slot], alone)


@pytest.mark.parametrize("column_major", [True, False])
def test_rles_by_id_equal_one_mask_at_a_time(column_major):
    rng = np.random.default_rng(1)
    labelled = rng.integers(0, 4, size=(13, 9)) * (rng.random((13, 9)) < 0.6)  # ids 1..3, adjacent ids, background
    labelled[0, 0], labelled[-1, -1] = 2, 3  # runs at the first and the last pixel
    rles = encode_rles_by_id(labelled, 5, column_major=column_major)  # ids 4 and 5 have no pixel
    expected = [encode_rle(labelled == number, column_major=column_major) for number in range(1, 6)]
    assert rles == expected and rles[3:] == ["", ""]
