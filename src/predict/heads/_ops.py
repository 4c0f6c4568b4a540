"""Numerics that several heads share, written once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax.

    Args:
        logits: float[..., C].
        axis: the class axis.

    Returns:
        float32 probabilities of the same shape, summing to 1 along `axis`.
    """
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large |x|: float[...] logits to float32 probabilities."""
    logits = np.asarray(logits, dtype=np.float32)
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp = np.exp(logits[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero (as `torch.nn.functional.normalize`).

    Args:
        vectors: float[N, D].

    Returns:
        float32[N, D].
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


# cosine_topk: a query's group maxima are taken over strided groups of this many candidates, so
# only groups that beat its running k-th best are looked at element by element.
_TOPK_GROUP = 16
_INT64_MIN = np.iinfo(np.int64).min
_LOW_32_BITS = np.int64(0xFFFFFFFF)
_LOWEST = np.finfo(np.float32).min


def cosine_topk(embeddings: np.ndarray, k: int, *, block_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For every row, the k most cosine-similar other rows, without ever holding the N x N matrix.

    The similarity matrix E @ E.T is symmetric, so it is computed in square blocks on and above the
    diagonal only (half the flops of the full product, one float32 GEMM per block into one reused
    buffer): block (i, j) serves the queries of block i along its rows and, when j > i, those of
    block j along its columns. Every query thus meets its candidates in ascending column order
    (blocks 0..i-1 through the transposed blocks, then i, i+1, ...), which the tie rule relies on.

    To keep the selection far cheaper than the GEMM, each block is first reduced to group maxima
    over strided groups of 16 candidates, along each direction (two fast passes); only the groups
    whose maximum beats a query's running k-th best similarity are read element by element, and
    the few candidates are merged into the running top-k with `np.partition`. A query's first
    block uses its k-th largest group maximum as the bound instead. For random data a query sees
    about k * ln(N / block_size) candidates in all, so the cost stays close to the GEMM's.

    Ties are broken by row index (the lower index ranks first), so the result is deterministic and
    equals sorting each row of the full matrix by (similarity descending, index ascending).
    Memory: one (block_size, block_size) float32 buffer, the int64[N, k] running top-k and the outputs.

    Args:
        embeddings: float32[N, D], L2-normalised (see `l2_normalize`) and finite; N < 2**32.
        k: neighbours per row, 0 <= k <= N - 1.
        block_size: rows (and columns) per block; the default keeps the buffer at 16 MB.

    Returns:
        similarities: float32[N, k], each row descending.
        indices: int64[N, k] row indices of those neighbours; never the row itself.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    rows = len(embeddings)
    if not 0 <= k < max(rows, 1):
        raise ValueError(f"k must be in [0, {rows - 1}] for {rows} rows (got {k})")
    similarities = np.empty((rows, k), dtype=np.float32)
    indices = np.empty((rows, k), dtype=np.int64)
    if k == 0:
        return similarities, indices
    size = min(_round_up(max(block_size, _TOPK_GROUP), _TOPK_GROUP), _round_up(rows, _TOPK_GROUP))
    buffer = np.empty(size * size, dtype=np.float32)
    state = _RunningTopk(
        keys=np.full((rows, k), _INT64_MIN, dtype=np.int64),  # see _topk_keys
        threshold=np.full(rows, -np.inf, dtype=np.float32),  # the k-th best so far; -inf until k are known
    )
    for row_start in range(0, rows, size):
        row_stop = min(row_start + size, rows)
        for column_start in range(row_start, rows, size):
            column_stop = min(column_start + size, rows)
            block = _similarity_block(embeddings, row_start, row_stop, column_start, column_stop, buffer)
            row_count, column_count = row_stop - row_start, column_stop - column_start
            # Row direction: group q of query r holds columns q, q + G, q + 2G, ... (G groups).
            row_maxima = _strided_group_maxima(block)
            _select(block, False, row_maxima[:row_count], row_start, column_start, state)
            if column_start != row_start:  # a diagonal block already served both directions
                column_maxima = block.reshape(_TOPK_GROUP, -1, block.shape[1]).max(axis=0).T
                _select(block, True, column_maxima[:column_count], column_start, row_start, state)
        # Rows of this block meet no more candidates: write them out.
        keys = np.sort(state.keys[row_start:row_stop], axis=1)[:, ::-1]
        similarities[row_start:row_stop] = _topk_values(keys)
        indices[row_start:row_stop] = _LOW_32_BITS - (keys & _LOW_32_BITS)
    return similarities, indices


@dataclass
class _RunningTopk:
    """Per query: the best k keys so far, and their k-th similarity (-inf while fewer than k are known)."""

    keys: np.ndarray
    threshold: np.ndarray


def _similarity_block(
    embeddings: np.ndarray, row_start: int, row_stop: int, column_start: int, column_stop: int, buffer: np.ndarray
) -> np.ndarray:
    """E[rows] @ E[columns].T into the start of `buffer`, padded with -inf to multiples of 16; self pairs -inf."""
    row_count, column_count = row_stop - row_start, column_stop - column_start
    padded_rows, padded_columns = _round_up(row_count, _TOPK_GROUP), _round_up(column_count, _TOPK_GROUP)
    block = buffer[: padded_rows * padded_columns].reshape(padded_rows, padded_columns)
    queries = embeddings[row_start:row_stop]
    # A copy on the diagonal: NumPy sends `a @ a.T` to syrk, measured 2x slower than gemm here.
    columns = queries.copy() if column_start == row_start else embeddings[column_start:column_stop]
    np.matmul(queries, columns.T, out=block[:row_count, :column_count])
    block[row_count:] = -np.inf  # padding never becomes a candidate
    block[:, column_count:] = -np.inf
    if column_start == row_start:  # never a row's own neighbour
        np.fill_diagonal(block, -np.inf)
    return block


def _strided_group_maxima(block: np.ndarray) -> np.ndarray:
    """float32[R, C / 16]: element q of row r is the maximum of columns q, q + C/16, q + 2C/16, ..."""
    groups = block.shape[1] // _TOPK_GROUP
    maxima = block[:, :groups].copy()
    for part in range(1, _TOPK_GROUP):  # 16 contiguous slices: 2x faster than .max over a middle axis
        np.maximum(maxima, block[:, part * groups : (part + 1) * groups], out=maxima)
    return maxima


def _select(
    block: np.ndarray, transposed: bool, maxima: np.ndarray, query_start: int, neighbour_start: int, state: _RunningTopk
) -> None:
    """Merge one block's candidates into the running top-k of its queries.

    Args:
        block: float32[R, C] C-contiguous similarities; queries are its rows, or its columns if `transposed`.
        transposed: whether the queries are the block's columns.
        maxima: float32[Q, n / 16] strided group maxima over each query's n candidates (Q real queries only).
        query_start, neighbour_start: row indices of block row 0 and block column 0.
        state: the running top-k of all rows, updated in place.
    """
    count, groups = maxima.shape
    queries = slice(query_start, query_start + count)
    k = state.keys.shape[1]
    # Strictly greater: an equal value in a later column loses the tie to the running one.
    bound = state.threshold[queries].copy()
    first = np.flatnonzero(state.threshold[queries] == -np.inf)  # fewer than k known yet
    if first.size:
        # At least k elements reach the k-th largest group maximum, so it bounds this block's share
        # of the top k from below; ties at it are kept (the next float down) since no earlier
        # column beats them. -inf (padding, self) never passes.
        kth = np.partition(maxima[first], groups - k, axis=1)[:, groups - k] if k <= groups else np.float32(_LOWEST)
        with np.errstate(over="ignore"):  # the float below _LOWEST is -inf, as wanted
            bound[first] = np.nextafter(np.maximum(kth, _LOWEST), np.float32(-np.inf))
    hit_queries, hit_groups = np.nonzero(maxima > bound[:, None])  # in query order
    if hit_queries.size == 0:
        return
    # Gather each hit group's 16 elements through flat indices: 3x faster than 2-D fancy indexing.
    query_stride, candidate_stride = (1, block.shape[1]) if transposed else (block.shape[1], 1)
    starts = hit_queries * query_stride + hit_groups * candidate_stride
    values = np.take(block.reshape(-1), starts[:, None] + np.arange(_TOPK_GROUP) * (groups * candidate_stride))
    hit, member = np.nonzero(values > bound[hit_queries, None])  # still in query order
    if hit.size == 0:
        return
    candidate_queries = hit_queries[hit]
    candidate_keys = _topk_keys(values[hit, member], hit_groups[hit] + member * groups + neighbour_start)
    keys = state.keys[queries]
    active = _merge_topk(keys, candidate_queries, candidate_keys, k)
    lowest_keys = keys[active].min(axis=1)
    # Similarities are finite, so -inf stays the mark of a query with fewer than k known.
    state.threshold[query_start + active] = np.where(lowest_keys != _INT64_MIN, _topk_values(lowest_keys), -np.inf)


def _merge_topk(keys: np.ndarray, candidate_rows: np.ndarray, candidate_keys: np.ndarray, k: int) -> np.ndarray:
    """Merge candidates (sorted by row) into the running int64[R, k] top-k keys, in place; returns the rows touched."""
    per_row = np.bincount(candidate_rows, minlength=len(keys))
    active = np.flatnonzero(per_row)
    starts = np.cumsum(per_row) - per_row
    rank = np.arange(candidate_rows.size) - starts[candidate_rows]
    width = k + int(per_row.max())
    merged = np.full((active.size, width), _INT64_MIN, dtype=np.int64)
    merged[:, :k] = keys[active]
    merged[np.searchsorted(active, candidate_rows), k + rank] = candidate_keys
    keys[active] = np.partition(merged, width - k, axis=1)[:, width - k :]
    return active


def _topk_keys(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """One int64 per (similarity, column) that sorts as (similarity ascending, column descending).

    The float32 bits map to an int32 of the same order (negative floats have their magnitude bits
    flipped) in the high half; `0xFFFFFFFF - column` fills the low half, so a larger key is a higher
    similarity, or the same similarity at a lower index. Partitioning keys is exact, tie-breaking included.
    """
    bits = (values + np.float32(0.0)).view(np.int32)  # + 0.0 turns -0.0 into 0.0
    ordered = np.where(bits >= 0, bits, bits ^ np.int32(0x7FFFFFFF))
    return (ordered.astype(np.int64) << 32) | (_LOW_32_BITS - columns.astype(np.int64))


def _topk_values(keys: np.ndarray) -> np.ndarray:
    """The float32 similarities back out of `_topk_keys` keys, bit for bit."""
    ordered = (keys >> 32).astype(np.int32)
    return np.where(ordered >= 0, ordered, ordered ^ np.int32(0x7FFFFFFF)).view(np.float32)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


# Box formats, named as torchvision names them (plus `yxyx`, the TF object-detection API's order).
BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")


def box_convert(boxes: np.ndarray, in_fmt: str, out_fmt: str) -> np.ndarray:
    """Convert boxes between formats (as `torchvision.ops.box_convert`, plus `yxyx`).

    Args:
        boxes: float[..., 4] in `in_fmt`.
        in_fmt, out_fmt: one of `BOX_FORMATS`.

    Returns:
        float32[..., 4] in `out_fmt`.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    a, b, c, d = (boxes[..., i] for i in range(4))
    if in_fmt == "xyxy":
        x1, y1, x2, y2 = a, b, c, d
    elif in_fmt == "yxyx":
        y1, x1, y2, x2 = a, b, c, d
    elif in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        raise ValueError(f"unknown box format {in_fmt!r}; expected one of {', '.join(BOX_FORMATS)}")
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "yxyx":
        out = (y1, x1, y2, x2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    elif out_fmt == "cxcywh":
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    else:
        raise ValueError(f"unknown box format {out_fmt!r}; expected one of {', '.join(BOX_FORMATS)}")
    return np.stack(out, axis=-1).astype(np.float32, copy=False)


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: float[..., N, 4] and float[..., M, 4] to float32[..., N, M] (0 for empty boxes)."""
    first = np.asarray(first, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    # One coordinate at a time: broadcasting (x, y) pairs runs NumPy's inner loops over 2 elements (measured
    # 330 -> 120 us for 32 images x 12 x 12 boxes). np.maximum(x, 0) is what np.clip(x, 0, None) calls.
    x1, y1, x2, y2 = (first[..., :, None, i] for i in range(4))
    other_x1, other_y1, other_x2, other_y2 = (second[..., None, :, i] for i in range(4))
    area_first = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    area_second = np.maximum(other_x2 - other_x1, 0) * np.maximum(other_y2 - other_y1, 0)
    width = np.maximum(np.minimum(x2, other_x2) - np.maximum(x1, other_x1), 0)
    height = np.maximum(np.minimum(y2, other_y2) - np.maximum(y1, other_y1), 0)
    overlap = width * height
    union = area_first + area_second - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0).astype(np.float32)


# NMS looks at the most confident candidates only: its IoU matrix is candidates^2 float32
# (4 MB at 1000), and a detector rarely has more than a few hundred boxes above a useful threshold.
NMS_MAX_CANDIDATES = 1000
# nms_rows takes as many images at a time as keep their IoU matrices within this many elements
# (4 MB of float32, as `nms` of one image at the 1000-candidate cap): a whole batch of a few
# dozen candidates per image, one image at the cap.
_NMS_CHUNK_ELEMENTS = 1 << 20


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, classes: np.ndarray | None = None
) -> np.ndarray:
    """Greedy non-maximum suppression, class-wise when `classes` is given (as `torchvision.ops.batched_nms`).

    A box is dropped when it overlaps a more confident kept box of the same class by IoU >
    `iou_threshold`. Class-wise suppression shifts each class's boxes by its own offset so boxes of
    different classes never overlap (torchvision's `batched_nms` trick). Only the
    `NMS_MAX_CANDIDATES` most confident boxes are considered. One image of `nms_rows`.

    Args:
        boxes: float[N, 4] xyxy.
        scores: float[N].
        iou_threshold: IoU above which the less confident box is dropped.
        classes: int[N] class index per box, or None for class-agnostic NMS.

    Returns:
        int64[K] indices of the kept boxes, most confident first (ties: lower index first).
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order, kept = nms_rows(
        boxes[None],
        scores[None],
        np.array([scores.size]),
        iou_threshold,
        classes=None if classes is None else np.asarray(classes).reshape(1, -1),
    )
    return order[0, kept[0]]


def nms_rows(
    boxes: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    iou_threshold: float,
    *,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`nms` for many images at once, each row one image's candidates, so that no step loops over images.

    Greedy NMS keeps a box unless a kept, more confident box of its class overlaps it by IoU >
    `iou_threshold`. Box i's fate depends only on boxes before it, so the rule has exactly one
    solution, which is found as a fixed point: start from "every box kept" and recompute every box
    from the boxes kept in the previous round until nothing changes. After round t the first t boxes
    are final, so it ends within `NMS_MAX_CANDIDATES` + 1 rounds; in practice after the length of the
    longest chain of suppressions (a handful), each round one matrix product over all images.

    Args:
        boxes: float[B, K, 4] xyxy; row b's first counts[b] entries are its candidates, the rest padding.
        scores: float[B, K].
        counts: int[B] candidates per row.
        iou_threshold: IoU above which the less confident box is dropped.
        classes: int[B, K] class index per box, or None for class-agnostic NMS.

    Returns:
        order: int64[B, M] (M = min(K, NMS_MAX_CANDIDATES)) each row's candidate indices, most
            confident first (ties: lower index first; as `nms` sorts them).
        kept: bool[B, M] whether order[b, m] survives; False for padding.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    counts = np.asarray(counts, dtype=np.int64)
    rows, width = scores.shape
    # NaN keys sort last and keep their order, so padding stays behind a row's candidates, NaN scores included.
    keys = np.where(np.arange(width) < counts[:, None], -scores, np.float32(np.nan))
    order = np.argsort(keys, axis=1, kind="stable")[:, :NMS_MAX_CANDIDATES].astype(np.int64)
    kept = np.arange(order.shape[1]) < counts[:, None]
    if order.shape[1] == 0:
        return order, kept
    chunk = max(1, _NMS_CHUNK_ELEMENTS // order.shape[1] ** 2)
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        picked = (np.arange(start, min(start + chunk, rows))[:, None], order[part])
        candidates = np.where(kept[part, :, None], boxes[picked], 0)  # padding: zeros, whatever was passed
        candidate_classes = None if classes is None else np.asarray(classes)[picked]
        kept[part] = _greedy_survivors(candidates, candidate_classes, kept[part], iou_threshold)
    return order, kept


def _greedy_survivors(
    candidates: np.ndarray, classes: np.ndarray | None, valid: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """bool[B, M]: the boxes greedy NMS keeps, from float32[B, M, 4] boxes sorted by confidence (padding zeros)."""
    if classes is not None:
        # Per image, as `nms` did one image at a time: the offset span comes from that image's boxes.
        span = (np.abs(candidates).max(axis=(1, 2)).astype(np.float64) * 2 + 1).astype(np.float32)
        candidates = candidates + (classes.astype(np.float32) * span[:, None])[..., None]
    # Box j can suppress box i only when j is more confident (j < i); a NaN IoU suppresses, as `<=` fails.
    positions = np.arange(valid.shape[1])
    suppresses = ~(box_iou(candidates, candidates) <= iou_threshold) & (positions[:, None] < positions)
    weights = suppresses.astype(np.float32)  # a float matrix product counts a box's kept suppressors
    kept = valid
    for _ in range(valid.shape[1] + 1):
        updated = valid & (np.matmul(kept.astype(np.float32)[:, None, :], weights)[:, 0] == 0)
        if (updated == kept).all():
            break
        kept = updated
    return kept
