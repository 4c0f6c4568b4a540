"""Masks and boxes shared by the dense heads: RLE strings, and model-resolution maps and boxes back to each image.

RLE (FORMATS.md "Semantic segmentation"): Kaggle-style `"start length start length ..."`, starts
1-indexed, pixels numbered top to bottom, then left to right (column-major, as pycocotools numbers
them) by default, or left to right, then top to bottom (row-major) on request. An empty mask is `""`.
"""

from __future__ import annotations

import itertools

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
    return edges_to_rle(mask_edges(np.asarray(mask)[None] != 0, column_major=column_major)[0])


def mask_edges(masks: np.ndarray, *, column_major: bool = True) -> list[np.ndarray]:
    """Per mask of a stack, the pixel numbers where its runs start and stop, in RLE order.

    The runs without a Fortran-order copy of each mask: column-major changes are found between
    vertical neighbours of the C-ordered masks (and from a column's last pixel to the next one's
    first), then sorted into column-major order; there are few changes next to pixels (RLEs of the two
    256x256 masks of an image through Fortran-order copies: 0.36 ms of copies alone, this: 0.05 ms in all).

    Args:
        masks: bool[N, H, W].
        column_major: number pixels down the columns first, else along the rows.

    Returns:
        per mask int64[2K]: 0-indexed start, stop (exclusive), start, stop, ...; empty for an empty mask.
    """
    masks = np.asarray(masks, dtype=bool)
    count, height, width = masks.shape
    pixels = height * width
    if not pixels:
        return [np.zeros(0, dtype=np.int64) for _ in range(count)]
    span = pixels + 1  # mask i's pixel numbers 0..pixels as keys i * span + number, so one sort orders all
    flat = masks.reshape(count, pixels)
    changes = _column_major_changes(masks) if column_major else _row_major_changes(flat)
    ends = [np.flatnonzero(flat[:, 0]) * span, np.flatnonzero(flat[:, -1]) * span + pixels]  # runs at either end
    keys = np.sort(np.concatenate([*changes, *ends]).astype(np.int64, copy=False))
    bounds = np.searchsorted(keys, np.arange(count + 1) * span)
    numbers = keys % span
    return [numbers[bounds[i] : bounds[i + 1]] for i in range(count)]


def _column_major_changes(masks: np.ndarray) -> list[np.ndarray]:
    """Keys `mask * (H * W + 1) + number` of the column-major pixel numbers that differ from the pixel before."""
    height, width = masks.shape[1:]
    span = height * width + 1
    keys = []
    if height > 1:  # within a column: pixel (y, x) is number x * H + y
        mask, rest = np.divmod(np.flatnonzero(masks[:, 1:] != masks[:, :-1]), (height - 1) * width)
        row, column = np.divmod(rest, width)
        keys.append(mask * span + column * height + row + 1)
    if width > 1:  # a column's first pixel against the last pixel of the column before
        mask, column = np.divmod(np.flatnonzero(masks[:, 0, 1:] != masks[:, -1, :-1]), width - 1)
        keys.append(mask * span + (column + 1) * height)
    return keys


def _row_major_changes(flat: np.ndarray) -> list[np.ndarray]:
    """Keys `mask * (H * W + 1) + number` of the row-major pixel numbers that differ from the pixel before."""
    pixels = flat.shape[1]
    if pixels < 2:
        return []
    mask, number = np.divmod(np.flatnonzero(flat[:, 1:] != flat[:, :-1]), pixels - 1)
    return [mask * (pixels + 1) + number + 1]


def edges_to_rle(edges: np.ndarray) -> str:
    """`mask_edges`' starts and stops of one mask as its RLE string (`""` for none)."""
    return edges_to_rles(edges, [0, len(edges)])[0]


def edges_to_rles(edges: np.ndarray, bounds: list[int]) -> list[str]:
    """The starts and stops of several masks, one after another, as each one's RLE string: mask i's are
    `edges[bounds[i]:bounds[i + 1]]`. One NumPy pass for all (a pass per mask cost more than the strings)."""
    runs = np.empty(len(edges), dtype=np.int64)
    runs[0::2] = edges[0::2] + 1
    runs[1::2] = edges[1::2] - edges[0::2]
    numbers = runs.tolist()
    return [" ".join(map(str, numbers[start:stop])) for start, stop in itertools.pairwise(bounds)]


def rle_edges(text: str, shape: tuple[int, int]) -> np.ndarray:
    """The starts and stops of an RLE string's pixels, as `mask_edges` gives them, without decoding it.

    Args:
        text: `"start length ..."`.
        shape: (height, width) of the image the mask belongs to.

    Returns:
        int64[2K], sorted, the runs disjoint (runs given out of order or overlapping are merged).

    Raises:
        ValueError: a malformed string, or a run past the last pixel (as `decode_rle`).
    """
    runs = parse_rle(text)
    height, width = int(shape[0]), int(shape[1])
    edges = np.empty(runs.size, dtype=np.int64)
    edges[0::2] = runs[0::2] - 1
    edges[1::2] = edges[0::2] + runs[1::2]
    if edges.size and int(edges[1::2].max()) > height * width:
        raise ValueError(f"a run ends at pixel {int(edges[1::2].max())}, past the {height}x{width} image")
    if np.any(edges[2::2] < edges[1:-1:2]):  # out of order or overlapping: the pixels decode_rle would set
        return mask_edges(decode_rle(text, (1, height * width))[None], column_major=False)[0]
    return edges


def edge_pixels(edges: np.ndarray) -> int:
    """The pixel count of a mask from its starts and stops."""
    return int((edges[1::2] - edges[0::2]).sum())


def common_pixels(first: np.ndarray, second: np.ndarray) -> int:
    """The pixels two masks share, from their starts and stops (each sorted, runs disjoint)."""
    if not first.size or not second.size:
        return 0
    return int((_pixels_before(first, second[1::2]) - _pixels_before(first, second[0::2])).sum())


def _pixels_before(edges: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """For each pixel number, how many of the mask's pixels come before it (edges sorted, runs disjoint)."""
    starts, stops = edges[0::2], edges[1::2]
    before_run = np.concatenate(([0], np.cumsum(stops - starts)))  # pixels in runs 0..k-1
    started = np.searchsorted(starts, numbers, side="left")  # runs starting before each number
    unreached = np.maximum(stops[started - 1] - numbers, 0)  # the part of the last started run at or after it
    return before_run[started] - np.where(started > 0, unreached, 0)


def encode_rles_by_id(
    labelled: np.ndarray,
    count: int,
    *,
    column_major: bool = True,
    origin: tuple[int, int] = (0, 0),
    shape: tuple[int, int] | None = None,
) -> list[str]:
    """`encode_rle(image == id)` for every id 1..count, in one pass over `labelled`.

    The image may be larger than `labelled`, 0 outside it: only the window around an image's instances
    is then read and copied (issue 18: the instance segmentation head's full-image id maps, and their
    strided Fortran-order copies, cost more than the rest of its RLE work).

    Args:
        labelled: int[h, w], 0 for background and 1..count for the instances.
        count: the highest id; an id with no pixel gets `""`.
        origin: (row, column) of `labelled`'s first pixel in the image.
        shape: (height, width) of the image; default `labelled`'s own.
    """
    labelled = np.asarray(labelled)
    height, width = labelled.shape if shape is None else (int(shape[0]), int(shape[1]))
    top, left = int(origin[0]), int(origin[1])
    if column_major:  # the transposed image, numbered along its rows
        labelled, (height, width), (top, left) = labelled.T, (width, height), (left, top)
    # A zero column after the window unless it spans the image's width: no run goes on from one of its
    # rows to the next, where the image has pixels outside the window in between.
    padded = np.zeros((labelled.shape[0], labelled.shape[1] + (labelled.shape[1] < width)), dtype=labelled.dtype)
    padded[:, : labelled.shape[1]] = labelled
    flat = padded.ravel()
    boundaries = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    ids = flat[starts]
    chosen = (ids >= 1) & (ids <= count)
    starts, lengths, ids = starts[chosen], lengths[chosen], ids[chosen]
    row, column = np.divmod(starts, padded.shape[1])
    starts = (top + row) * width + left + column  # pixel numbers in the image
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


def to_float16(maps: np.ndarray) -> np.ndarray:
    """`maps.astype(np.float16)`, bit for bit, converted by torch when they are float32 without NaN.

    numpy converts in software, and slowly for values under float16's normal range (most background
    probabilities): a batch of 32 2x64x64 maps took 7 ms, 0.1 ms in torch (issue 18). Both round to
    nearest even (every non-NaN float32 checked); NaN payloads may differ, so maps with a NaN, and
    other dtypes (float64 would round twice), stay with numpy.
    """
    maps = np.asarray(maps)
    if maps.dtype != np.float32 or np.isnan(maps).any():
        return maps.astype(np.float16)
    import torch  # here only, as in `_resized`

    return torch.from_numpy(np.ascontiguousarray(maps)).to(torch.float16).numpy()


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
