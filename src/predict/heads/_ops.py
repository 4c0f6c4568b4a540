"""Numerics that several heads share, written once."""

from __future__ import annotations

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


# cosine_topk: a row's group maxima are taken over groups of this many columns (strided by
# columns/_TOPK_GROUP), so only groups that beat a row's running k-th best are looked at element by element.
_TOPK_GROUP = 16
_INT64_MIN = np.iinfo(np.int64).min
_LOW_32_BITS = np.int64(0xFFFFFFFF)


def cosine_topk(
    embeddings: np.ndarray, k: int, *, block_rows: int = 1024, block_columns: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """For every row, the k most cosine-similar other rows, without ever holding the N x N matrix.

    Row blocks of `block_rows` queries are multiplied with column blocks of `block_columns` rows
    (one float32 GEMM per block pair, into one reused buffer), and a running top-k per query is
    kept across column blocks. To keep the selection far cheaper than the GEMM, each block is
    first reduced to group maxima over groups of 16 columns (one fast pass); only the groups whose
    maximum beats the query's current k-th best similarity are read element by element, and the
    few candidates are merged into the running top-k with `np.partition`. For random data a query
    sees about k * ln(N / block_columns) candidates in all, so the cost stays close to the GEMM's.

    Ties are broken by row index (the lower index ranks first), so the result is deterministic and
    equals sorting each row of the full matrix by (similarity descending, index ascending).
    Memory: one (block_rows, block_columns) float32 buffer plus the (N, k) outputs.

    Args:
        embeddings: float32[N, D], L2-normalised (see `l2_normalize`) and finite; N < 2**32.
        k: neighbours per row, 0 <= k <= N - 1.
        block_rows, block_columns: block shape; the defaults keep the buffer at 16 MB.

    Returns:
        similarities: float32[N, k], each row descending.
        indices: int64[N, k] row indices of those neighbours; never the row itself.
    """
    import torch

    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    rows = len(embeddings)
    if not 0 <= k < max(rows, 1):
        raise ValueError(f"k must be in [0, {rows - 1}] for {rows} rows (got {k})")
    similarities = np.empty((rows, k), dtype=np.float32)
    indices = np.empty((rows, k), dtype=np.int64)
    if k == 0:
        return similarities, indices
    group = _TOPK_GROUP
    # Enough groups per block (2k) that the first block's k-th group maximum is a tight threshold,
    # but never wider than the data.
    columns_per_block = _round_up(max(block_columns, 2 * k * group), group)
    columns_per_block = min(columns_per_block, _round_up(rows, group))
    groups = columns_per_block // group
    buffer = np.empty((min(block_rows, rows), columns_per_block), dtype=np.float32)
    buffer_t, embeddings_t = torch.from_numpy(buffer), torch.from_numpy(embeddings)
    group_offsets = np.arange(group) * groups  # group q holds columns q, q + groups, q + 2 * groups, ...
    lowest = np.finfo(np.float32).min

    for row_start in range(0, rows, len(buffer)):
        count = min(len(buffer), rows - row_start)
        queries = embeddings_t[row_start : row_start + count]
        block = buffer[:count]
        keys = np.full((count, k), _INT64_MIN, dtype=np.int64)  # running top-k, see _topk_keys
        threshold = None  # the running k-th best similarity per query, once k are known
        for column_start in range(0, rows, columns_per_block):
            width = min(columns_per_block, rows - column_start)
            if width == columns_per_block:
                torch.mm(queries, embeddings_t[column_start : column_start + width].T, out=buffer_t[:count])
            else:  # the last, narrower block: pad with -inf, which never becomes a candidate
                np.matmul(embeddings[row_start : row_start + count], embeddings[column_start:rows].T, out=block[:, :width])
                block[:, width:] = -np.inf
            first, last = max(row_start, column_start), min(row_start + count, column_start + width)
            if first < last:  # the queries themselves are in this block: never their own neighbour
                own = np.arange(first, last)
                block[own - row_start, own - column_start] = -np.inf
            maxima = torch.amax(buffer_t[:count].view(count, group, groups), dim=1).numpy()
            if threshold is None:
                # At least k elements reach the k-th largest group maximum, so it bounds the top k
                # from below; ties at it are kept (>=) because no earlier column competes yet.
                bound = np.partition(maxima, groups - k, axis=1)[:, groups - k] if k <= groups else np.full(count, lowest)
                bound = np.maximum(bound, lowest)  # -inf (padding, self) never passes
                hit_rows, hit_groups = np.nonzero(maxima >= bound[:, None])
                columns = hit_groups[:, None] + group_offsets
                values = block[hit_rows[:, None], columns]
                keep = values >= bound[hit_rows, None]
            else:
                # Strictly greater: an equal value in a later column loses the tie to the running one.
                hit_rows, hit_groups = np.nonzero(maxima > threshold[:, None])
                if hit_rows.size == 0:
                    continue
                columns = hit_groups[:, None] + group_offsets
                values = block[hit_rows[:, None], columns]
                keep = values > threshold[hit_rows, None]
            candidate_rows = np.broadcast_to(hit_rows[:, None], columns.shape)[keep]  # ascending
            if candidate_rows.size == 0:
                continue
            candidate_keys = _topk_keys(values[keep], columns[keep] + column_start)
            _merge_topk(keys, candidate_rows, candidate_keys, k)
            threshold = _topk_values(keys.min(axis=1))
        keys = np.sort(keys, axis=1)[:, ::-1]
        similarities[row_start : row_start + count] = _topk_values(keys)
        indices[row_start : row_start + count] = _LOW_32_BITS - (keys & _LOW_32_BITS)
    return similarities, indices


def _merge_topk(keys: np.ndarray, candidate_rows: np.ndarray, candidate_keys: np.ndarray, k: int) -> None:
    """Merge candidates (sorted by row) into the running int64[R, k] top-k keys, in place."""
    per_row = np.bincount(candidate_rows, minlength=len(keys))
    active = np.flatnonzero(per_row)
    starts = np.cumsum(per_row) - per_row
    rank = np.arange(candidate_rows.size) - starts[candidate_rows]
    width = k + int(per_row.max())
    merged = np.full((active.size, width), _INT64_MIN, dtype=np.int64)
    merged[:, :k] = keys[active]
    merged[np.searchsorted(active, candidate_rows), k + rank] = candidate_keys
    keys[active] = np.partition(merged, width - k, axis=1)[:, width - k :]


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
    """Pairwise IoU of xyxy boxes: float[N, 4] and float[M, 4] to float32[N, M] (0 for empty boxes)."""
    first = np.asarray(first, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    area_first = np.clip(first[:, 2] - first[:, 0], 0, None) * np.clip(first[:, 3] - first[:, 1], 0, None)
    area_second = np.clip(second[:, 2] - second[:, 0], 0, None) * np.clip(second[:, 3] - second[:, 1], 0, None)
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    union = area_first[:, None] + area_second[None, :] - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0).astype(np.float32)


# NMS looks at the most confident candidates only: its IoU matrix is candidates^2 float32
# (4 MB at 1000), and a detector rarely has more than a few hundred boxes above a useful threshold.
NMS_MAX_CANDIDATES = 1000


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, classes: np.ndarray | None = None) -> np.ndarray:
    """Greedy non-maximum suppression, class-wise when `classes` is given (as `torchvision.ops.batched_nms`).

    A box is dropped when it overlaps a more confident kept box of the same class by IoU >
    `iou_threshold`. Class-wise suppression shifts each class's boxes by its own offset so boxes of
    different classes never overlap (torchvision's `batched_nms` trick). Only the
    `NMS_MAX_CANDIDATES` most confident boxes are considered.

    Args:
        boxes: float[N, 4] xyxy.
        scores: float[N].
        iou_threshold: IoU above which the less confident box is dropped.
        classes: int[N] class index per box, or None for class-agnostic NMS.

    Returns:
        int64[K] indices of the kept boxes, most confident first (ties: lower index first).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")[:NMS_MAX_CANDIDATES]
    if order.size == 0:
        return order.astype(np.int64)
    candidates = boxes[order]
    if classes is not None:
        span = float(np.abs(candidates).max()) * 2 + 1
        candidates = candidates + (np.asarray(classes)[order].astype(np.float32) * span)[:, None]
    overlaps = box_iou(candidates, candidates)
    keep = np.ones(order.size, dtype=bool)
    for index in range(order.size):
        if keep[index]:
            keep[index + 1 :] &= overlaps[index, index + 1 :] <= iou_threshold
    return order[keep].astype(np.int64)
