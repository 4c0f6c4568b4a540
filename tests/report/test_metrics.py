"""Metrics against scikit-learn called directly on the same numbers.

`predict.report.metrics` computes them in NumPy (importing scikit-learn costs seconds; issue 18), so
these tests hold it to scikit-learn's values to float64 rounding, ties, clipping and empty classes included.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from predict.report.metrics import ClassificationKind, classification_metrics, regression_metrics

RNG = np.random.default_rng(3)


def test_binary():
    labels = RNG.integers(0, 2, 50)
    scores = RNG.random(50)
    result = classification_metrics(ClassificationKind.BINARY, labels, scores, notes=[])
    assert result["ROC_AUC"] == pytest.approx(sk.roc_auc_score(labels, scores))
    assert result["LogLoss"] == pytest.approx(sk.log_loss(labels, scores))
    assert result["Accuracy"] == pytest.approx(sk.accuracy_score(labels, scores >= 0.5))
    assert result["F1"] == pytest.approx(sk.f1_score(labels, scores >= 0.5))


def test_multiclass():
    labels = np.arange(60) % 4
    logits = RNG.normal(size=(60, 4))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = classification_metrics(ClassificationKind.MULTICLASS, labels, probabilities, notes=[])
    assert result["ROC_AUC"] == pytest.approx(sk.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    assert result["LogLoss"] == pytest.approx(sk.log_loss(labels, probabilities))
    assert result["Accuracy"] == pytest.approx(sk.accuracy_score(labels, probabilities.argmax(1)))
    assert result["F1"] == pytest.approx(sk.f1_score(labels, probabilities.argmax(1), average="macro"))


def test_multilabel():
    labels = RNG.integers(0, 2, (40, 3))
    scores = RNG.random((40, 3))
    result = classification_metrics(ClassificationKind.MULTILABEL, labels, scores, notes=[])
    assert result["ROC_AUC"] == pytest.approx(sk.roc_auc_score(labels, scores, average="macro"))
    assert result["Accuracy"] == pytest.approx(sk.accuracy_score(labels, scores >= 0.5))
    assert result["F1"] == pytest.approx(sk.f1_score(labels, scores >= 0.5, average="macro"))
    assert result["LogLoss"] == pytest.approx(np.mean([sk.log_loss(labels[:, j], scores[:, j]) for j in range(3)]))


def test_class_missing_from_labels_is_left_out_of_auc_with_a_note():
    labels = np.array([0, 1, 0, 1, 0, 1])  # class 2 never occurs
    probabilities = np.full((6, 3), 1 / 3)
    notes: list[str] = []
    result = classification_metrics(ClassificationKind.MULTICLASS, labels, probabilities, notes=notes)
    assert result["ROC_AUC"] == pytest.approx(0.5)
    assert any("1 of 3 class(es) have only one outcome" in note for note in notes)


def test_single_class_drops_auc():
    notes: list[str] = []
    result = classification_metrics(ClassificationKind.BINARY, np.ones(5, int), np.full(5, 0.7), notes=notes)
    assert "ROC_AUC" not in result and any("ROC_AUC left out" in note for note in notes)


def test_regression():
    labels = RNG.normal(size=(30, 2))
    predictions = labels + RNG.normal(scale=0.1, size=(30, 2))
    result = regression_metrics(labels, predictions, notes=[])
    assert result["MAE"] == pytest.approx(sk.mean_absolute_error(labels, predictions))
    assert result["MSE"] == pytest.approx(sk.mean_squared_error(labels, predictions))
    assert result["RMSE"] == pytest.approx(np.sqrt(sk.mean_squared_error(labels, predictions)))
    assert result["R2"] == pytest.approx(sk.r2_score(labels, predictions))


# predict's NumPy metrics vs scikit-learn: equal to float64 rounding.
EXACT = {"rel": 1e-12, "abs": 1e-15}


@pytest.mark.parametrize("seed", range(5))
def test_binary_with_tied_and_certain_scores(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # many ties, including ties between a positive and a negative row
    scores[:5] = [0.0, 1.0, 0.0, 1.0, 0.5]  # certain scores: log loss clips them as scikit-learn does
    labels[:4] = [1, 0, 0, 1]  # two confident misses
    result = classification_metrics(ClassificationKind.BINARY, labels, scores, notes=[])
    assert result["ROC_AUC"] == pytest.approx(sk.roc_auc_score(labels, scores), **EXACT)
    assert result["LogLoss"] == pytest.approx(sk.log_loss(labels, scores, labels=[0, 1]), **EXACT)
    assert result["Accuracy"] == pytest.approx(sk.accuracy_score(labels, scores >= 0.5), **EXACT)
    assert result["F1"] == pytest.approx(sk.f1_score(labels, scores >= 0.5), **EXACT)


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_float32_softmax_and_a_class_never_seen(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 150)  # class 4 of 5 is never true ...
    logits = rng.normal(size=(150, 5)).astype(np.float32)
    logits[:, 4] = -30  # ... nor predicted: macro F1 counts it as 0, ROC_AUC leaves it out
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # float32: rows sum to 1 only within rounding
    notes: list[str] = []
    result = classification_metrics(ClassificationKind.MULTICLASS, labels, probabilities, notes=notes)
    as_float64 = probabilities.astype(np.float64)
    normalised = as_float64 / as_float64.sum(1, keepdims=True)
    predicted = probabilities.argmax(1)
    seen = [0, 1, 2, 3]
    expected_auc = np.mean([sk.roc_auc_score(labels == j, as_float64[:, j]) for j in seen])
    assert result["ROC_AUC"] == pytest.approx(expected_auc, **EXACT)
    assert result["LogLoss"] == pytest.approx(sk.log_loss(labels, normalised, labels=range(5)), **EXACT)
    assert result["Accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted), **EXACT)
    f1 = sk.f1_score(labels, predicted, average="macro", labels=range(5), zero_division=0.0)
    assert result["F1"] == pytest.approx(f1, **EXACT)
    assert any("1 of 5 class(es) have only one outcome" in note for note in notes)


@pytest.mark.parametrize("seed", range(5))
def test_multilabel_with_a_column_never_predicted(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (80, 4))
    scores = np.round(rng.random((80, 4)), 2)
    scores[:, 2] = 0.1  # column 2 is never predicted positive: its F1 is 0, its AUC 0.5 (all tied)
    result = classification_metrics(ClassificationKind.MULTILABEL, labels, scores, notes=[])
    assert result["ROC_AUC"] == pytest.approx(sk.roc_auc_score(labels, scores, average="macro"), **EXACT)
    assert result["Accuracy"] == pytest.approx(sk.accuracy_score(labels, scores >= 0.5), **EXACT)
    assert result["F1"] == pytest.approx(sk.f1_score(labels, scores >= 0.5, average="macro", zero_division=0.0), **EXACT)
    log_loss = np.mean([sk.log_loss(labels[:, j], scores[:, j], labels=[0, 1]) for j in range(4)])
    assert result["LogLoss"] == pytest.approx(log_loss, **EXACT)


@pytest.mark.parametrize("seed", range(5))
def test_regression_columns_one_of_them_constant(seed):
    rng = np.random.default_rng(seed)
    labels = rng.normal(size=(50, 3))
    labels[:, 1] = 2.5  # constant labels: R2 is 0 unless predicted exactly (scikit-learn's force_finite)
    predictions = (labels + rng.normal(scale=0.3, size=(50, 3))).astype(np.float32)
    result = regression_metrics(labels, predictions, notes=[])
    as_float64 = predictions.astype(np.float64)
    assert result["MAE"] == pytest.approx(sk.mean_absolute_error(labels, as_float64), **EXACT)
    assert result["MSE"] == pytest.approx(sk.mean_squared_error(labels, as_float64), **EXACT)
    assert result["R2"] == pytest.approx(sk.r2_score(labels, as_float64), **EXACT)
    exact = labels.copy()
    exact[:, 0] += 0.1
    assert regression_metrics(labels, exact, notes=[])["R2"] == pytest.approx(sk.r2_score(labels, exact), **EXACT)


def test_regression_one_column_as_a_vector():
    labels = RNG.normal(size=20)
    predictions = labels * 0.9
    result = regression_metrics(labels, predictions, notes=[])
    assert result["R2"] == pytest.approx(sk.r2_score(labels, predictions), **EXACT)
    assert result["MAE"] == pytest.approx(sk.mean_absolute_error(labels, predictions), **EXACT)
