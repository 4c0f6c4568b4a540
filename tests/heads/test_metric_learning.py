"""Metric learning: blocked cosine top-k against a brute-force reference, mAP against a plain loop, head edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from predict.data.collate import Batch
from predict.errors import InputError
from predict.heads._ops import cosine_topk, l2_normalize
from predict.heads.metric_learning import MetricLearningHead
from predict.report.metrics import retrieval_mean_average_precision


def brute_force_topk(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The full float64 matrix, self masked, rows sorted by (similarity descending, index ascending)."""
    similarity = embeddings.astype(np.float64) @ embeddings.astype(np.float64).T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarity, order, axis=1), order


@pytest.mark.parametrize(
    ("rows", "dims", "k", "block_size"),
    [
        (2, 3, 1, 2048),
        (300, 16, 10, 64),
        (2000, 32, 50, 256),
        (2000, 32, 50, 272),
        (500, 8, 499, 128),
        (41, 4, 40, 7),
        (100, 8, 3, 16),
    ],
)
def test_cosine_topk_matches_brute_force(rows, dims, k, block_size):
    embeddings = l2_normalize(np.random.default_rng(rows).standard_normal((rows, dims)))
    similarities, indices = cosine_topk(embeddings, k, block_size=block_size)
    expected, _ = brute_force_topk(embeddings, k)
    assert similarities.dtype == np.float32 and indices.dtype == np.int64
    assert similarities.shape == indices.shape == (rows, k)
    assert not (indices == np.arange(rows)[:, None]).any()  # never the row itself
    assert (np.diff(similarities, axis=1) <= 0).all()
    # Values against the float64 reference; indices checked through the values they point at, so a
    # float32 near-tie that swaps two neighbours is not a failure.
    assert_allclose(similarities, expected, atol=1e-6)
    full = embeddings.astype(np.float64) @ embeddings.astype(np.float64).T
    assert_allclose(np.take_along_axis(full, indices, axis=1), similarities, atol=1e-6)


def test_cosine_topk_breaks_ties_by_lower_index():
    # Five copies of each of four vectors: exact ties at 1.0 and across blocks.
    embeddings = l2_normalize(np.repeat(np.random.default_rng(0).standard_normal((4, 8)), 5, axis=0))
    _similarities, indices = cosine_topk(embeddings, 6, block_size=3)
    _, expected = brute_force_topk(embeddings, 6)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(indices[0, :4], [1, 2, 3, 4])


def test_cosine_topk_ties_across_transposed_blocks():
    # 12 copies of 10 vectors, interleaved, in 8 blocks of 16: every query meets exact ties in
    # blocks it sees along columns (transposed) and along rows; the order must still be by index.
    embeddings = l2_normalize(np.tile(np.random.default_rng(1).standard_normal((10, 4)), (12, 1)))
    _, indices = cosine_topk(embeddings, 15, block_size=16)
    _, expected = brute_force_topk(embeddings, 15)
    np.testing.assert_array_equal(indices, expected)


def test_cosine_topk_rejects_k_out_of_range():
    with pytest.raises(ValueError, match=r"k must be in \[0, 2\] for 3 rows \(got 3\)"):
        cosine_topk(np.eye(3, dtype=np.float32), 3)


def reference_map(labels: list[str], neighbours: np.ndarray) -> float:
    """mAP@K written as the definition reads, one query at a time."""
    scores = []
    for query, ranked in enumerate(neighbours):
        relevant_total = sum(1 for other, label in enumerate(labels) if other != query and label == labels[query])
        if relevant_total == 0:
            continue
        hits, total = 0, 0.0
        for rank, neighbour in enumerate(ranked, start=1):
            if labels[neighbour] == labels[query]:
                hits += 1
                total += hits / rank
        scores.append(total / min(len(ranked), relevant_total))
    return float(np.mean(scores))


def test_map_matches_the_definition():
    rng = np.random.default_rng(3)
    labels = [str(value) for value in rng.integers(0, 5, size=60)] + ["lonely"]
    embeddings = l2_normalize(rng.standard_normal((61, 6)))
    _, neighbours = cosine_topk(embeddings, 7)
    notes: list[str] = []
    result = retrieval_mean_average_precision(np.asarray(labels, dtype=object), neighbours, notes=notes)
    assert result["mAP"] == pytest.approx(reference_map(labels, neighbours), abs=1e-12)
    assert notes == ["mAP: 1 of 61 row(s) have a label no other row shares and are left out"]


def test_map_is_one_for_a_perfect_ranking_and_left_out_without_relevant_rows():
    labels = np.array(["a", "a", "b", "b"], dtype=object)
    assert retrieval_mean_average_precision(labels, np.array([[1, 2], [0, 3], [3, 0], [2, 1]]), notes=[]) == {
        "mAP": 1.0
    }
    assert retrieval_mean_average_precision(labels, np.array([[2, 1], [2, 0], [0, 3], [0, 2]]), notes=[])["mAP"] == 0.5
    notes: list[str] = []
    assert retrieval_mean_average_precision(np.array(["a", "b"], dtype=object), np.array([[1], [0]]), notes=notes) == {}
    assert notes and notes[0].startswith("mAP left out")


def make_head(rows: int, top_k: int) -> MetricLearningHead:
    return MetricLearningHead(
        output="embedding",
        modality="image",
        top_k=top_k,
        input_column="path",
        names=pd.Series([f"img{i}.png" for i in range(rows)]),
        labels=None,
        notes=[],
    )


def test_fewer_neighbours_than_csv_columns_leaves_cells_empty():
    head = make_head(3, 2)
    embeddings = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    batch = Batch(np.arange(3), {}, [], None)
    predictions = head.finalize(head.postprocess({"embedding": embeddings}, batch))
    assert_allclose(np.linalg.norm(predictions["embeddings"], axis=1), 1.0, rtol=1e-6)
    columns = head.prediction_columns(predictions)
    assert list(columns) == [
        "top_1_similar_image",
        "top_2_similar_image",
        "top_3_similar_image",
        "top_1_cosine_similarity",
        "top_2_cosine_similarity",
        "top_3_cosine_similarity",
    ]
    assert list(columns["top_1_similar_image"]) == ["img1.png", "img0.png", "img1.png"]
    assert list(columns["top_3_similar_image"]) == ["", "", ""]
    assert np.isnan(columns["top_3_cosine_similarity"]).all()
    raw = head.raw_predictions(predictions, pd.DataFrame({"path": [f"img{i}.png" for i in range(3)]}))
    assert list(raw) == ["embeddings", "cosine_similarities", "similar_images", "path"]
    assert raw["similar_images"].shape == (3, 2)


def test_a_single_row_has_no_neighbours():
    head = make_head(1, 0)
    predictions = head.finalize(
        head.postprocess({"embedding": np.ones((1, 4), np.float32)}, Batch(np.arange(1), {}, [], None))
    )
    assert predictions["similar_images"].shape == (1, 0)
    assert list(head.prediction_columns(predictions)["top_1_similar_image"]) == [""]


def test_nan_embedding_names_its_row():
    head = make_head(4, 2)
    embeddings = np.ones((2, 3), np.float32)
    embeddings[1, 2] = np.nan
    with pytest.raises(InputError, match=r"row 3: the model's embedding 'embedding' holds NaN or inf \(1 such row"):
        head.postprocess({"embedding": embeddings}, Batch(np.array([2, 3]), {}, [], None))
