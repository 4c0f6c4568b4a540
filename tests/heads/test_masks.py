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
    boxes_to_originals,
    common_pixels,
    decode_rle,
    edge_pixels,
    edges_to_rle,
    encode_rle,
    encode_rles_by_id,
    mask_edges,
    parse_rle,
    rle_edges,
    to_float16,
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


def test_overlapping_and_unsorted_runs_decode_as_the_union_of_their_pixels():
    # Written by other tools: runs out of order, touching or overlapping; each pixel is set once.
    mask = decode_rle("5 2 1 3 3 2 9 1", (3, 4), column_major=False)
    assert np.flatnonzero(mask.reshape(-1)).tolist() == [0, 1, 2, 3, 4, 5, 8]


def test_rle_errors():
    with pytest.raises(ValueError, match="whole numbers"):
        parse_rle("1 x")
    with pytest.raises(ValueError, match="pairs of start and length"):
        parse_rle("1 2 3")
    with pytest.raises(ValueError, match="1-indexed"):
        parse_rle("0 2")
    with pytest.raises(ValueError, match="past the 2x2 image"):
        decode_rle("3 3", (2, 2))


@pytest.mark.parametrize("column_major", [True, False])
def test_rles_by_id_of_a_window_equal_those_of_the_whole_image(column_major):
    rng = np.random.default_rng(5)
    image = np.zeros((9, 11), dtype=np.int32)
    # Windows touching each edge, spanning the whole height or width (runs then go on from one column or
    # row of the window to the next), one pixel, and the whole image.
    windows = [(0, 0, 4, 5), (5, 6, 9, 11), (0, 3, 9, 7), (2, 0, 6, 11), (4, 4, 5, 5), (0, 0, 9, 11), (3, 2, 8, 9)]
    for top, left, bottom, right in windows:
        for density in (0.3, 1.0):
            window = rng.integers(1, 4, size=(bottom - top, right - left)) * (
                rng.random((bottom - top, right - left)) < density
            )
            image[:] = 0
            image[top:bottom, left:right] = window
            rles = encode_rles_by_id(window, 4, column_major=column_major, origin=(top, left), shape=image.shape)
            assert rles == encode_rles_by_id(image, 4, column_major=column_major)
            assert rles == [encode_rle(image == number, column_major=column_major) for number in range(1, 5)]


def random_mask_stacks():
    """Stacks of masks of many sizes and densities, one-row and one-column images and every edge pixel among them."""
    rng = np.random.default_rng(2)
    stacks = [np.stack([mask for mask in MASKS.values() if mask.shape == (5, 7)])]
    for height, width in [(1, 1), (1, 7), (7, 1), (2, 2), (5, 9), (16, 3), (31, 32)]:
        for density in (0.0, 0.1, 0.5, 0.9, 1.0):
            stacks.append(rng.random((3, height, width)) < density)
    stacks.append(np.zeros((0, 4, 4), dtype=bool))
    return stacks


def loop_encode(mask: np.ndarray, *, column_major: bool) -> str:
    """A reference RLE encoder: one pixel at a time."""
    runs, start = [], None
    for index, on in enumerate([*mask.ravel(order="F" if column_major else "C").tolist(), False]):
        if on and start is None:
            start = index
        elif not on and start is not None:
            runs += [start + 1, index - start]
            start = None
    return " ".join(map(str, runs))


@pytest.mark.parametrize("column_major", [True, False])
def test_mask_edges_give_rle_strings_and_pixel_counts(column_major):
    for masks in random_mask_stacks():
        edges = mask_edges(masks, column_major=column_major)
        expected = [loop_encode(mask, column_major=column_major) for mask in masks]
        assert [edges_to_rle(mask) for mask in edges] == expected
        assert [encode_rle(mask, column_major=column_major) for mask in masks] == expected
        assert [edge_pixels(mask) for mask in edges] == [np.count_nonzero(mask) for mask in masks]


@pytest.mark.parametrize("column_major", [True, False])
def test_common_pixels_of_edges_equal_the_decoded_masks_overlap(column_major):
    rng = np.random.default_rng(3)
    for masks in random_mask_stacks():
        others = rng.permutation(masks) if len(masks) else masks
        for mask, other in zip(masks, others):
            first, second = mask_edges(np.stack([mask, other]), column_major=column_major)
            assert common_pixels(first, second) == np.count_nonzero(mask & other)
            assert common_pixels(second, first) == np.count_nonzero(mask & other)


@pytest.mark.parametrize("column_major", [True, False])
def test_rle_edges_read_an_rle_as_mask_edges_of_its_decoded_mask(column_major):
    for masks in random_mask_stacks():
        for mask in masks:
            text = encode_rle(mask, column_major=column_major)
            expected = mask_edges(mask[None], column_major=column_major)[0]
            assert_array_equal(rle_edges(text, mask.shape), expected)


def test_rle_edges_merge_unsorted_and_overlapping_runs_and_reject_runs_past_the_image():
    text = "5 2 1 3 3 2 9 1"  # pixels 0-5 and 8, as decode_rle paints them
    assert_array_equal(rle_edges(text, (3, 4)), [0, 6, 8, 9])
    assert_array_equal(rle_edges("1 2 3 2", (3, 4)), [0, 2, 2, 4])  # touching runs: the same pixels
    assert edge_pixels(rle_edges("1 2 3 2", (3, 4))) == 4
    with pytest.raises(ValueError, match="past the 2x2 image"):
        rle_edges("3 3", (2, 2))


def float16_edge_cases() -> np.ndarray:
    """float32 values where float16 rounding is delicate: every float16 value, the ties halfway between
    neighbours (round to even), just either side of them, float16's subnormals and underflow, overflow."""
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = np.sort(halves[np.isfinite(halves)].astype(np.float32))
    ties = (finite[:-1] + finite[1:]) / 2  # exact in float32
    beside = np.concatenate([np.nextafter(ties, np.float32(-np.inf)), np.nextafter(ties, np.float32(np.inf))])
    special = np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65520, 65519.996, 1e-8, 3e-8, 6e-8, 1e-45, 1e38], np.float32)
    return np.concatenate([finite, ties, beside, special, -special])


def test_to_float16_equals_numpys_conversion_bit_for_bit():
    rng = np.random.default_rng(4)
    random_bits = rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    probabilities = rng.random((3, 2, 16, 16)).astype(np.float32) ** 8  # many under float16's normal range
    for values in (float16_edge_cases(), random_bits[~np.isnan(random_bits)], probabilities):
        with np.errstate(over="ignore"):
            expected = values.astype(np.float16)
        converted = to_float16(values)
        assert converted.dtype == np.float16 and converted.shape == values.shape
        assert_array_equal(converted.view(np.uint16), expected.view(np.uint16))


def test_to_float16_leaves_nan_strided_and_other_dtypes_to_numpy():
    signalling, payload = np.array([0x7F800001, 0xFFC12345], dtype=np.uint32).view(np.float32)  # NaNs with payloads
    values = np.array([[0.25, np.nan], [signalling, payload]], dtype=np.float32)
    assert_array_equal(to_float16(values).view(np.uint16), values.astype(np.float16).view(np.uint16))
    assert_array_equal(to_float16(values.T[:, ::-1]), values.T[:, ::-1].astype(np.float16))  # a strided view
    doubles = np.array([1 + 2**-11 + 2**-40], dtype=np.float64)  # rounds up in one step, to even via float32
    assert to_float16(doubles) == doubles.astype(np.float16) and to_float16(doubles) != np.float16(np.float32(doubles))
    assert to_float16(np.zeros((0, 3), dtype=np.float32)).shape == (0, 3)


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


def greedy_nms_reference(boxes, scores, threshold, classes):
    """Textbook greedy NMS, one box at a time: most confident first (ties: lower index), the first 1000 only."""
    kept = []
    for i in sorted(range(len(scores)), key=lambda index: -scores[index])[: _ops.NMS_MAX_CANDIDATES]:
        overlaps = _ops.box_iou(boxes[i][None], boxes[kept])[0] if kept else np.zeros(0)
        if all(classes[j] != classes[i] or overlap <= threshold for j, overlap in zip(kept, overlaps, strict=True)):
            kept.append(i)
    return kept


def overlapping_boxes(rng, count):
    """Integer xyxy boxes crowded into a 60 x 60 area, so that many overlap (integers: the class offsets stay exact)."""
    corners = rng.integers(0, 40, (count, 2))
    return np.concatenate([corners, corners + rng.integers(1, 20, (count, 2))], axis=1).astype(np.float32)


def test_nms_rows_keeps_in_every_row_what_greedy_nms_keeps_in_that_image_alone():
    rng = np.random.default_rng(7)
    rows, width = 12, 40
    counts = rng.integers(0, width + 1, rows)
    counts[:2] = [0, width]  # an image without candidates, and one without padding
    boxes = overlapping_boxes(rng, rows * width).reshape(rows, width, 4)
    scores = rng.choice([0.2, 0.5, 0.7, 0.9], (rows, width)).astype(np.float32)  # ties: the lower index first
    classes = rng.integers(0, 3, (rows, width))
    padding = np.arange(width) >= counts[:, None]
    boxes[padding] = np.nan  # padding is never read as a box
    scores[padding] = 1.0
    for threshold in (0.0, 0.3, 0.7):
        order, kept = _ops.nms_rows(boxes, scores, counts, threshold, classes=classes)
        for row, count in enumerate(counts):
            expected = greedy_nms_reference(boxes[row, :count], scores[row, :count], threshold, classes[row, :count])
            assert order[row, kept[row]].tolist() == expected
            assert order[row, :count].tolist() == np.argsort(-scores[row, :count], kind="stable").tolist()
            assert kept[row].sum() == len(expected)  # padding is never kept


def test_nms_rows_caps_candidates_and_splits_large_batches_like_one_image_at_a_time():
    # 1,100 candidates per image: NMS sees the 1,000 most confident, and one image at a time fits in a chunk.
    rng = np.random.default_rng(3)
    rows, width = 6, 1100
    boxes = overlapping_boxes(rng, rows * width).reshape(rows, width, 4) * 10
    scores = rng.random((rows, width), dtype=np.float32)
    classes = rng.integers(0, 2, (rows, width))
    counts = np.array([1100, 999, 0, 1000, 1, 1100])
    order, kept = _ops.nms_rows(boxes, scores, counts, 0.5, classes=classes)
    assert order.shape == kept.shape == (rows, _ops.NMS_MAX_CANDIDATES)
    for row, count in enumerate(counts):
        alone = _ops.nms(boxes[row, :count], scores[row, :count], 0.5, classes=classes[row, :count])
        assert_array_equal(order[row, kept[row]], alone)
        assert np.isin(alone, np.argsort(-scores[row, :count], kind="stable")[: _ops.NMS_MAX_CANDIDATES]).all()


def test_nms_rows_offsets_classes_by_each_image_own_boxes():
    # IoU 0.3 / 0.7: both kept. Shifted by a class offset from the other image's 3e6-pixel box, float32
    # would round them onto each other (IoU > 0.5): the offset must come from each image's own boxes.
    boxes = np.zeros((2, 2, 4), dtype=np.float32)
    boxes[0, 0] = [0, 0, 3e6, 3e6]
    boxes[1] = [[0.6, 0, 1.1, 1], [0.4, 0, 0.9, 1]]
    scores = np.array([[0.9, 0.0], [0.9, 0.8]], dtype=np.float32)
    order, kept = _ops.nms_rows(boxes, scores, np.array([1, 2]), 0.5, classes=np.array([[0, 0], [1, 1]]))
    assert order[1, kept[1]].tolist() == [0, 1] == _ops.nms(boxes[1], scores[1], 0.5, classes=np.array([1, 1])).tolist()


def test_nms_without_classes_and_with_nan_scores_matches_greedy_nms():
    rng = np.random.default_rng(11)
    boxes = overlapping_boxes(rng, 50)
    scores = rng.random(50, dtype=np.float32)
    scores[[3, 17]] = np.nan  # NaN sorts last, as np.argsort puts it
    expected = greedy_nms_reference(boxes, np.nan_to_num(scores, nan=-1.0), 0.4, np.zeros(50))
    assert _ops.nms(boxes, scores, 0.4).tolist() == expected


def test_boxes_of_a_batch_map_back_each_to_its_own_image():
    boxes = np.array([[0, 16, 64, 48], [0, 0, 32, 32], [8, 8, 16, 16]], dtype=np.float32)
    images = np.array([0, 2, 2])
    original_sizes = np.array([[50, 100], [0, 0], [128, 128]])  # row 1 could not be read: no box, never read
    input_sizes = np.full((3, 2), 64)
    for mode in ResizeMode:
        mapped = boxes_to_originals(boxes, images, original_sizes, input_sizes, resize_mode=mode)
        for box, image, row in zip(boxes, images, mapped, strict=True):
            alone = boxes_to_original(box[None], tuple(original_sizes[image]), (64, 64), resize_mode=mode)
            assert_array_equal(row, alone[0])


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
