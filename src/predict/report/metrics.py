"""Metrics under the names H2O Hydrogen Torch uses, computed as scikit-learn computes them.

Classification (probabilities in, labels in):
- `binary`: ROC_AUC, LogLoss, and Accuracy / F1 at a 0.5 threshold.
- `multiclass`: ROC_AUC one-vs-rest, macro over the classes present with both outcomes; LogLoss;
  Accuracy and macro F1 of the argmax.
- `multilabel`: ROC_AUC macro over columns that hold both 0 and 1; LogLoss averaged over columns;
  Accuracy = exact match of all columns at 0.5 (subset accuracy); macro F1 at 0.5.
Regression: MAE, MSE, RMSE, R2, averaged uniformly over label columns.
A metric that is undefined for the data (one class only, a single row) is left out with a note.

Each metric is written out in NumPy with scikit-learn's definitions (`roc_auc_score`, `log_loss`
with probabilities clipped to [eps, 1 - eps], `accuracy_score`, `f1_score` with
`zero_division=0`, `mean_absolute_error`, `mean_squared_error`, `r2_score` with
`force_finite=True`); `tests/report/test_metrics.py` checks them against scikit-learn. Importing
scikit-learn (and the SciPy it pulls in) took 1.3-3 s on the 2-core development VM, more than a
whole small run (issue 18).
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np


class ClassificationKind(StrEnum):
    """How labels and probabilities relate."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"


def classification_metrics(
    kind: ClassificationKind, labels: np.ndarray, probabilities: np.ndarray, *, notes: list[str]
) -> dict[str, float]:
    """ROC_AUC, LogLoss, Accuracy and F1.

    Args:
        kind: binary, multiclass or multilabel.
        labels: binary int[N] 0/1; multiclass int[N] class indices; multilabel int[N, C] 0/1.
        probabilities: binary float[N]; multiclass and multilabel float[N, C].
        notes: receives a line for every metric left out and why.

    Returns:
        Metric name to value.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    result: dict[str, float] = {}
    if kind is ClassificationKind.BINARY:
        result["ROC_AUC"] = _roc_auc_columns(labels[:, None], probabilities[:, None], notes)
        result["LogLoss"] = _log_loss(labels, np.stack([1 - probabilities, probabilities], axis=1))
        predicted = (probabilities >= 0.5).astype(int)
        result["Accuracy"] = _accuracy(labels, predicted)
        result["F1"] = _f1(labels[:, None] == 1, predicted[:, None] == 1)
    elif kind is ClassificationKind.MULTICLASS:
        classes = probabilities.shape[1]
        one_hot = np.eye(classes, dtype=int)[labels]
        result["ROC_AUC"] = _roc_auc_columns(one_hot, probabilities, notes)
        # Rows of a softmax sum to 1 within float32 rounding; renormalise in float64 (scikit-learn warns otherwise).
        normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
        result["LogLoss"] = _log_loss(labels, normalised)
        predicted = probabilities.argmax(axis=1)
        result["Accuracy"] = _accuracy(labels, predicted)
        # Macro over every class of the model, including classes neither true nor predicted (F1 0 there).
        result["F1"] = _f1(one_hot == 1, predicted[:, None] == np.arange(classes))
    else:
        result["ROC_AUC"] = _roc_auc_columns(labels, probabilities, notes)
        result["LogLoss"] = float(
            np.mean(
                [
                    _log_loss(labels[:, j], np.stack([1 - probabilities[:, j], probabilities[:, j]], axis=1))
                    for j in range(labels.shape[1])
                ]
            )
        )
        predicted = (probabilities >= 0.5).astype(int)
        result["Accuracy"] = _accuracy(labels, predicted)
        result["F1"] = _f1(labels == 1, predicted == 1)
    return _finite(result, notes)


def regression_metrics(labels: np.ndarray, predictions: np.ndarray, *, notes: list[str]) -> dict[str, float]:
    """MAE, MSE, RMSE and R2, averaged over columns.

    Args:
        labels: float[N, M] actual values.
        predictions: float[N, M] predicted values.
        notes: receives a line for every metric left out and why.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels, predictions = labels[:, None], predictions.reshape(len(predictions), -1)
    # Per column, then the plain mean of the columns (scikit-learn's multioutput="uniform_average").
    mse = float(np.average(np.average((labels - predictions) ** 2, axis=0)))
    result = {
        "MAE": float(np.average(np.average(np.abs(predictions - labels), axis=0))),
        "MSE": mse,
        "RMSE": math.sqrt(mse),
    }
    if len(labels) >= 2:
        result["R2"] = _r2(labels, predictions)
    else:
        notes.append("R2 left out: it needs at least two rows")
    return _finite(result, notes)


def _roc_auc_columns(labels: np.ndarray, scores: np.ndarray, notes: list[str]) -> float:
    """Macro ROC AUC over the columns whose labels hold both 0 and 1."""
    usable = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < len(labels)]
    if len(usable) < labels.shape[1]:
        notes.append(
            f"ROC_AUC: {labels.shape[1] - len(usable)} of {labels.shape[1]} class(es) have only one outcome "
            "in the labels and are left out of the average"
        )
    if not usable:
        return math.nan
    return float(np.mean([_roc_auc(labels[:, j], scores[:, j]) for j in usable]))


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of one column: the probability that a random positive row scores
    above a random negative one, ties counting half (the Mann-Whitney U statistic over P * N).

    This is the area scikit-learn's `roc_auc_score` integrates with the trapezoidal rule (a tie
    between a positive and a negative row is the diagonal step of its curve); here it is counted
    exactly, from average ranks, so the two agree to float64 rounding.

    Args:
        labels: int[N] 0/1, both present.
        scores: float[N], higher meaning positive.
    """
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], len(ranked)]
    # Rows tied on a score share the mean of the ranks (1-based) they span.
    ranks = np.repeat((starts + ends + 1) / 2, ends - starts)
    positive = labels[order] == 1
    positives, negatives = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean cross-entropy of class indices int[N] under float64[N, C] probabilities, each clipped to
    [eps, 1 - eps] as scikit-learn's `log_loss` does (eps of float64), so a confident miss is finite."""
    eps = np.finfo(probabilities.dtype).eps
    clipped = np.clip(probabilities, eps, 1 - eps)
    return float(np.average(-np.log(clipped[np.arange(len(labels)), labels])))


def _accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """The share of rows predicted exactly (all columns of a row, for int[N, C] multilabel rows)."""
    correct = labels == predicted
    return float(np.average(correct if correct.ndim == 1 else correct.all(axis=1)))


def _f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Macro F1 over the columns of bool[N, C] truth and predictions: per column 2 TP / (2 TP + FP + FN),
    0 where a column is neither true nor predicted on any row (scikit-learn's `zero_division=0`)."""
    true_positives = (truth & predicted).sum(axis=0)
    denominator = 2 * true_positives + (~truth & predicted).sum(axis=0) + (truth & ~predicted).sum(axis=0)
    scores = np.divide(2 * true_positives, denominator, out=np.zeros(truth.shape[1]), where=denominator > 0)
    return float(np.average(scores))


def _r2(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The coefficient of determination, per column, then averaged; a column of constant labels
    scores 1 when predicted exactly and 0 otherwise (scikit-learn's `force_finite=True`)."""
    residual = ((labels - predictions) ** 2).sum(axis=0)
    total = ((labels - np.average(labels, axis=0)) ** 2).sum(axis=0)
    scores = np.ones(labels.shape[1])
    defined = total != 0
    scores[defined] = 1 - residual[defined] / total[defined]
    scores[~defined & (residual != 0)] = 0.0
    return float(np.average(scores))


def _finite(result: dict[str, float], notes: list[str]) -> dict[str, float]:
    kept = {}
    for name, value in result.items():
        if math.isfinite(value):
            kept[name] = float(value)
        else:
            notes.append(f"{name} left out: undefined for these labels")
    return kept


def retrieval_mean_average_precision(
    labels: np.ndarray, neighbours: np.ndarray, *, notes: list[str]
) -> dict[str, float]:
    """`mAP` at K of a nearest-neighbour ranking, where rows with the same label are relevant.

    For query row i with ranked neighbours r_1..r_K (never i itself), rel_j = [label(r_j) == label(i)],
    P@j = (rel_1 + ... + rel_j) / j, and R_i = the number of *other* rows labelled like i. Then
    AP@K(i) = (sum_j P@j * rel_j) / min(K, R_i), which is 1 exactly when the first min(K, R_i)
    neighbours are all relevant. mAP = the mean of AP@K over the queries with R_i >= 1; a query
    whose label no other row shares has nothing to find and is left out (with a note).

    Args:
        labels: [N] class labels (any comparable values).
        neighbours: int[N, K] row indices, best first.
        notes: receives a line when queries or the whole metric are left out.

    Returns:
        {"mAP": value}, or {} when no query has a relevant row or K is 0.
    """
    labels = np.asarray(labels)
    rows, k = neighbours.shape
    _, label_ids, label_counts = np.unique(labels, return_inverse=True, return_counts=True)
    label_ids = label_ids.reshape(-1)
    relevant_total = label_counts[label_ids] - 1
    usable = relevant_total > 0
    if k == 0 or not usable.any():
        notes.append("mAP left out: no row has another row with its label within reach (or top_k_similar is 0)")
        return {}
    if not usable.all():
        notes.append(f"mAP: {int((~usable).sum())} of {rows} row(s) have a label no other row shares and are left out")
    relevant = label_ids[neighbours] == label_ids[:, None]
    precision_at = np.cumsum(relevant, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at * relevant).sum(axis=1)[usable] / np.minimum(k, relevant_total[usable])
    return {"mAP": float(average_precision.mean())}
