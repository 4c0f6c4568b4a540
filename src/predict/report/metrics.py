"""Metrics under the names H2O Hydrogen Torch uses, computed with scikit-learn.

Classification (probabilities in, labels in):
- `binary`: ROC_AUC, LogLoss, and Accuracy / F1 at a 0.5 threshold.
- `multiclass`: ROC_AUC one-vs-rest, macro over the classes present with both outcomes; LogLoss;
  Accuracy and macro F1 of the argmax.
- `multilabel`: ROC_AUC macro over columns that hold both 0 and 1; LogLoss averaged over columns;
  Accuracy = exact match of all columns at 0.5 (subset accuracy); macro F1 at 0.5.
Regression: MAE, MSE, RMSE, R2, averaged uniformly over label columns.
A metric that is undefined for the data (one class only, a single row) is left out with a note.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
from collections.abc import Callable
from enum import StrEnum
from types import ModuleType
from typing import Any

import numpy as np

from predict.data.collate import can_fork
from predict.enums import ProblemType, Split
from predict.report.helper_process import HelperProcess

_helper: HelperProcess | None = None  # where scikit-learn is imported and the metrics run, once started


def start_import() -> bool:
    """Import scikit-learn's metrics while the model loads and scores (1.1-1.6 CPU-s on 2 cores, issue 18):
    in a forked helper process, which then computes them, where processes fork; else on a thread.

    Returns:
        whether this call started the helper: its caller stops it (`stop_helper`) when done. The CLI starts it
        before a run's imports and `predict benchmark` before its runs (its import is paid once); a run that
        finds it started uses it and leaves it.
    """
    global _helper
    if _helper is not None:
        return False
    if _can_fork_helper():
        _helper = HelperProcess("sklearn.metrics")
        return True
    threading.Thread(target=_sklearn, name="predict-import-sklearn", daemon=True).start()
    return False


def _can_fork_helper() -> bool:
    """Whether processes fork here, and this one is not a Ray driver already: a fork of Ray's running driver
    (its gRPC threads) left the driver's next dataset waiting forever (a second Ray run in one process)."""
    ray = sys.modules.get("ray")
    return can_fork() and not (ray is not None and ray.is_initialized())


def config_needs_scikit_learn(problem_type: ProblemType, label_columns: Any, split: Any) -> bool:
    """Whether a config promises metrics computed by scikit-learn, before its rows are read: its problem type's
    metrics are scikit-learn's, it names label columns and its split is not `test` (where labels may be left out)."""
    return bool(label_columns) and split != Split.TEST and problem_type.scikit_learn_metrics


def stop_helper() -> None:
    """End the helper process, if one was started, wherever it is (an import no longer needed is stopped). One
    left running ends with the process (a daemon, and it exits when its pipe ends)."""
    global _helper
    if _helper is not None:
        _helper.close()
        _helper = None


def _sklearn() -> ModuleType:
    """`sklearn.metrics`, imported on first use (a run without labels never pays for it)."""
    return importlib.import_module("sklearn.metrics")


def _computed(
    function: Callable[..., tuple[dict[str, float], list[str]]], *args: Any, notes: list[str]
) -> dict[str, float]:
    """`function(*args)`'s metrics, in the helper process if one was started; its notes added to `notes`. Not for
    arrays on disk (classification rows over 16 KiB: `writers.row_arrays`): a memory map would travel to the helper
    whole, as one copy in memory, where it is read here a block or a column at a time."""
    on_disk = any(isinstance(arg, np.memmap) for arg in args)
    result, added = function(*args) if _helper is None or on_disk else _helper.call(function, *args)
    notes.extend(added)
    return result


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
    return _computed(_classification_metrics, kind, labels, probabilities, notes=notes)


def _classification_metrics(
    kind: ClassificationKind, labels: np.ndarray, probabilities: np.ndarray
) -> tuple[dict[str, float], list[str]]:
    sk = _sklearn()
    notes: list[str] = []
    result: dict[str, float] = {}
    if kind is ClassificationKind.BINARY:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        result["ROC_AUC"] = _roc_auc_columns(labels[:, None], probabilities[:, None], notes)
        result["LogLoss"] = sk.log_loss(labels, probabilities, labels=[0, 1])
        predicted = (probabilities >= 0.5).astype(int)
        result["Accuracy"] = sk.accuracy_score(labels, predicted)
        result["F1"] = sk.f1_score(labels, predicted, zero_division=0.0)
    elif kind is ClassificationKind.MULTICLASS:
        classes = probabilities.shape[1]
        # 0/1 as int8, and scores in float64 a column or a block of rows at a time, not whole: scikit-learn's
        # log_loss alone made five float64 copies of rows x classes, the run's peak at 100,000 rows (issue 18).
        result["ROC_AUC"] = _roc_auc_columns(np.eye(classes, dtype=np.int8)[labels], probabilities, notes)
        result["LogLoss"] = _multiclass_log_loss(labels, probabilities)
        predicted = probabilities.argmax(axis=1)
        result["Accuracy"] = sk.accuracy_score(labels, predicted)
        result["F1"] = sk.f1_score(labels, predicted, average="macro", labels=list(range(classes)), zero_division=0.0)
    else:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        result["ROC_AUC"] = _roc_auc_columns(labels, probabilities, notes)
        result["LogLoss"] = float(
            np.mean([sk.log_loss(labels[:, j], probabilities[:, j], labels=[0, 1]) for j in range(labels.shape[1])])
        )
        predicted = (probabilities >= 0.5).astype(int)
        result["Accuracy"] = sk.accuracy_score(labels, predicted)
        result["F1"] = sk.f1_score(labels, predicted, average="macro", zero_division=0.0)
    return _finite(result, notes), notes


def regression_metrics(labels: np.ndarray, predictions: np.ndarray, *, notes: list[str]) -> dict[str, float]:
    """MAE, MSE, RMSE and R2, averaged over columns.

    Args:
        labels: float[N, M] actual values.
        predictions: float[N, M] predicted values.
        notes: receives a line for every metric left out and why.
    """
    return _computed(_regression_metrics, labels, predictions, notes=notes)


def _regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> tuple[dict[str, float], list[str]]:
    sk = _sklearn()
    notes: list[str] = []
    predictions = np.asarray(predictions, dtype=np.float64)
    mse = sk.mean_squared_error(labels, predictions)
    result = {
        "MAE": sk.mean_absolute_error(labels, predictions),
        "MSE": mse,
        "RMSE": math.sqrt(mse),
    }
    if len(labels) >= 2:
        result["R2"] = sk.r2_score(labels, predictions)
    else:
        notes.append("R2 left out: it needs at least two rows")
    return _finite(result, notes), notes


def _roc_auc_columns(labels: np.ndarray, scores: np.ndarray, notes: list[str]) -> float:
    """Macro ROC AUC over the columns whose labels hold both 0 and 1."""
    sk = _sklearn()
    usable = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < len(labels)]
    if len(usable) < labels.shape[1]:
        notes.append(
            f"ROC_AUC: {labels.shape[1] - len(usable)} of {labels.shape[1]} class(es) have only one outcome "
            "in the labels and are left out of the average"
        )
    if not usable:
        return math.nan
    return float(np.mean([sk.roc_auc_score(labels[:, j], np.asarray(scores[:, j], dtype=np.float64)) for j in usable]))


_LOG_LOSS_ROWS = 16_384  # rows per scikit-learn log_loss call: it copies its input five times (41 MB at 100,000 x 10)


def _multiclass_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """scikit-learn's multiclass log_loss over blocks of rows (their summed losses, over the row count), each
    block renormalised in float64: a softmax's rows sum to 1 only within float32 rounding, and scikit-learn
    warns then. Up to `_LOG_LOSS_ROWS` rows this is one call, the same value as `log_loss(normalize=True)`."""
    sk = _sklearn()
    classes = list(range(probabilities.shape[1]))
    total = 0.0
    for start in range(0, len(labels), _LOG_LOSS_ROWS):
        block = probabilities[start : start + _LOG_LOSS_ROWS].astype(np.float64)  # a copy, divided in place
        block /= block.sum(axis=1, keepdims=True)
        total += sk.log_loss(labels[start : start + _LOG_LOSS_ROWS], block, labels=classes, normalize=False)
    return total / len(labels)


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
