"""Masks and boxes shared by the dense heads: RLE strings, and model-resolution maps and boxes back to each image.

RLE (FORMATS.md "Semantic segmentation"): Kaggle-style `"start length start length ..."`, starts
1-indexed, pixels numbered top to bottom, then left to right (column-major, as pycocotools numbers
them) by default, or left to right, then top to bottom (row-major) on request. An empty mask is `""`.
"""

from __future__ import annotations

import numpy as np

from predict.data.image import letterbox_geometry
from predict.enums import ResizeMode


def encode_rle(mask: np.ndarray, *, column_major: bool = True) -> str:
    """A binary mask as a Kaggle-style RLE string.

    Args:
        mask: bool[H, W] (any dtype; nonzero = on).
        column_major: number pixels down the columns first (the Kaggle default), else along the rows.

    Returns:
        `"start length ..."` with 1-indexed starts; `""` when the mask is empty.
    """
    flat = np.asarray(mask).ravel(order="F" if column_major else "C") != 0
    if not flat.size:
        return ""
    # Where a run starts or stops: one comparison of neighbours, plus the image's ends when a run touches
    # them (padding the whole mask and differencing it as integers was 2.7x slower at 256x256, issue 18).
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0] if flat[0] else [], changes, [flat.size] if flat[-1] else [])).astype(np.int64)
    if edges.size == 0:
        return ""
    starts, stops = edges[0::2], edges[1::2]
    runs = np.empty(edges.size, dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = stops - starts
    return " ".join(map(str, runs.tolist()))


def encode_rles_by_id(labelled: np.ndarray, count: int, *, column_major: bool = True) -> list[str]:
    """`encode_rle(labelled == id)` for every id 1..count, in one pass over the image.

    Args:
        labelled: int[H, W], 0 for background and 1..count for the instances.
        count: the highest id; an id with no pixel gets `""`.
    """
    flat = np.asarray(labelled).ravel(order="F" if column_major else "C")
    boundaries = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    ids = flat[starts]
    chosen = (ids >= 1) & (ids <= count)
    starts, lengths, ids = starts[chosen], lengths[chosen], ids[chosen]
    order = np.argsort(ids, kind="stable")  # per id, its runs in pixel order
    runs = np.stack([starts[order] + 1, lengths[order]], axis=1)
    first_run = np.searchsorted(ids[order], np.arange(1, count + 2))
    return [" ".join(map(str, runs[first_run[i] : first_run[i + 1]].ravel().tolist())) for i in range(count)]


def parse_rle(text: str) -> np.ndarray:
    """The integers of an RLE string as int64[2K] (start, length, ...).

    Raises:
        ValueError: not whole numbers, an odd count, a start < 1 or a length < 1.
    """
    try:
        runs = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise ValueError("expected space-separated whole numbers 'start length ...'") from None
    if runs.size % 2:
        raise ValueError(f"has {runs.size} numbers; expected pairs of start and length")
    if runs.size and (runs[0::2].min() < 1 or runs[1::2].min() < 1):
        raise ValueError("starts are 1-indexed and lengths >= 1")
    return runs


def decode_rle(text: str, shape: tuple[int, int], *, column_major: bool = True) -> np.ndarray:
    """An RLE string back to a mask.

    Args:
        text: `"start length ..."` as `encode_rle` writes it.
        shape: (height, width) of the image the mask belongs to.

    Returns:
        bool[height, width].

    Raises:
        ValueError: a malformed string, or a run past the last pixel.
    """
    runs = parse_rle(text)
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros(height * width, dtype=bool)
    if runs.size:
        starts, lengths = runs[0::2] - 1, runs[1::2]
        if int((starts + lengths).max()) > height * width:
            raise ValueError(f"a run ends at pixel {int((starts + lengths).max())}, past the {height}x{width} image")
        # Only the runs' own pixels are touched (a cumulative sum over the whole image was 4x slower at
        # 256x256, issue 18): run k's first pixel repeated over its length, plus 0, 1, 2, ... within it.
        firsts = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        mask[firsts + np.arange(int(lengths.sum()))] = True
    return mask.reshape((height, width), order="F" if column_major else "C")


def to_original_size(maps: np.ndarray, original_size: tuple[int, int], *, resize_mode: ResizeMode) -> np.ndarray:
    """Model-resolution maps of one image back onto the image itself, bilinearly.

    With letterbox pre-processing the padding is cut away first, so the maps line up with the
    image exactly as the loader placed it (see `predict.data.image.letterbox_geometry`).

    Args:
        maps: float[C, H, W] at the model's input resolution.
        original_size: (height, width) of the image.

    Returns:
        float32[C, height, width].
    """
    return _resized(np.asarray(maps, dtype=np.float32)[None], original_size, resize_mode=resize_mode)[0]


def to_original_sizes(
    maps: np.ndarray, original_sizes: np.ndarray, *, resize_mode: ResizeMode
) -> list[np.ndarray | None]:
    """`to_original_size` for every image of a batch, one after the other before anything else is done with
    them: interleaved with each image's other post-processing, torch's threads went back to sleep between
    interpolations and woke up for each, likely (measured: post-processing 3.8 -> 2.3 ms per 256x256 image). One
    call for the whole batch was no faster and doubled a run's peak RSS (glibc heap fragmentation).

    Args:
        maps: float[B, C, H, W] at the model's input resolution.
        original_sizes: int[B, 2] (height, width); a height of 0 marks a row that could not be read.

    Returns:
        per image float32[C, height, width], or None for a row that could not be read.
    """
    return [
        to_original_size(image, (height, width), resize_mode=resize_mode) if height else None
        for image, (height, width) in zip(maps, np.asarray(original_sizes).tolist(), strict=True)
    ]


def _resized(maps: np.ndarray, original_size: tuple[int, int], *, resize_mode: ResizeMode) -> np.ndarray:
    """float32[N, C, H, W] maps of N images of one size to float32[N, C, height, width]."""
    height, width = int(original_size[0]), int(original_size[1])
    if resize_mode is ResizeMode.LETTERBOX:
        new_height, new_width, top, left = letterbox_geometry(height, width, maps.shape[2], maps.shape[3])
        maps = maps[:, :, top : top + new_height, left : left + new_width]
    if maps.shape[2:] == (height, width):
        return np.ascontiguousarray(maps)
    import torch  # here only: `predict show`/`report` and non-dense runs never import torch (issue 18)

    resized = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(maps)), size=(height, width), mode="bilinear", align_corners=False
    )
    return resized.numpy()


def coco_rle(mask: np.ndarray) -> dict:
    """A mask as pycocotools' compressed RLE (for COCOeval), `counts` as bytes: bool[H, W] to dict."""
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))


def boxes_to_original(
    boxes: np.ndarray,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
    *,
    resize_mode: ResizeMode,
    normalized: bool = False,
) -> np.ndarray:
    """Boxes on the model input to pixels of the original image, undoing the loader's resize or letterbox.

    Args:
        boxes: float[K, 4] xyxy, in model-input pixels (or fractions of its size when `normalized`).
        original_size, input_size: (height, width) of the image and of the model input.

    Returns:
        float32[K, 4] xyxy pixels of the image, clipped to it.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return boxes_to_originals(
        boxes,
        np.zeros(len(boxes), dtype=np.int64),
        np.array([original_size], dtype=np.int64),
        np.array([[int(input_size[0]), int(input_size[1])]], dtype=np.int64),
        resize_mode=resize_mode,
        normalized=normalized,
    )


def boxes_to_originals(
    boxes: np.ndarray,
    images: np.ndarray,
    original_sizes: np.ndarray,
    input_sizes: np.ndarray,
    *,
    resize_mode: ResizeMode,
    normalized: bool = False,
) -> np.ndarray:
    """`boxes_to_original` for the boxes of a whole batch at once, each box in its own image.

    Args:
        boxes: float[K, 4] xyxy, in model-input pixels (or fractions of its size when `normalized`).
        images: int[K] the row of `original_sizes` and `input_sizes` each box belongs to.
        original_sizes, input_sizes: int[B, 2] (height, width) of each image and of its model input;
            only the rows that `images` names are read.

    Returns:
        float32[K, 4] xyxy pixels of each box's image, clipped to it.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    images = np.asarray(images, dtype=np.int64)
    sizes = np.concatenate([np.asarray(original_sizes), np.asarray(input_sizes)], axis=1)
    needed = np.zeros(len(sizes), dtype=bool)
    needed[images] = True  # an unreadable row (size 0) has no boxes, and no geometry
    # A batch's images mostly share one size: one geometry per distinct size, and per image its index.
    distinct: dict[tuple[int, ...], int] = {}
    geometry_index = np.zeros(len(sizes), dtype=np.int64)
    for row, size in zip(np.flatnonzero(needed).tolist(), sizes[needed].tolist(), strict=True):
        geometry_index[row] = distinct.setdefault(tuple(size), len(distinct))
    geometries = np.array(
        [_box_geometry(size[:2], size[2:], resize_mode=resize_mode) for size in distinct], dtype=np.float32
    ).reshape(-1, 4, 4)
    input_scale, offset, scale, limit = np.moveaxis(geometries[geometry_index[images]], 1, 0)
    if normalized:
        boxes = boxes * input_scale
    return np.clip((boxes - offset) * scale, 0, limit)


def _box_geometry(
    original_size: tuple[int, int], input_size: tuple[int, int], *, resize_mode: ResizeMode
) -> np.ndarray:
    """float32[4, 4] for one image size: input scale (normalised to input pixels), offset, scale, clip limit."""
    height, width = original_size
    input_height, input_width = input_size
    input_scale = [input_width, input_height] * 2
    if resize_mode is ResizeMode.LETTERBOX:
        new_height, new_width, top, left = letterbox_geometry(height, width, input_height, input_width)
        offset = [left, top] * 2
        scale = [width / new_width, height / new_height] * 2
    else:
        offset = [0, 0] * 2
        scale = [width / input_width, height / input_height] * 2
    return np.array([input_scale, offset, scale, [width, height] * 2], dtype=np.float32)
