"""Metrics against scikit-learn called directly on the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from predict.enums import ProblemType
from predict.heads.classification import ClassificationHead
from predict.heads.regression import RegressionHead
from predict.problems import PROBLEMS
from predict.report import metrics
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
    assert result["ROC_AUC"] == pytest.approx(
        sk.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )
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


def test_metrics_computed_in_the_helper_process_are_the_same_floats_and_notes():
    labels = np.arange(60) % 4
    labels[labels == 3] = 2  # a class without positives: a note
    probabilities = RNG.dirichlet(np.ones(4), 60)
    values = RNG.normal(size=(30, 2))
    here = [[], []]
    expected = (
        classification_metrics(ClassificationKind.MULTICLASS, labels, probabilities, notes=here[0]),
        regression_metrics(values, values * 0.9, notes=here[1]),
    )
    metrics.start_import()
    helper = metrics._helper
    assert helper is not None and helper._process.is_alive()
    there = [[], []]
    try:
        computed = (
            classification_metrics(ClassificationKind.MULTICLASS, labels, probabilities, notes=there[0]),
            regression_metrics(values, values * 0.9, notes=there[1]),
        )
    finally:
        metrics.stop_helper()
    assert computed == expected and there == here and here[0]
    assert metrics._helper is None and not helper._process.is_alive()


def test_probabilities_on_disk_are_scored_in_the_run_itself(tmp_path):
    labels = np.arange(40) % 3
    probabilities = RNG.dirichlet(np.ones(3), 40).astype(np.float32)
    np.save(tmp_path / "probabilities.npy", probabilities)
    on_disk = np.load(tmp_path / "probabilities.npy", mmap_mode="r")
    expected = classification_metrics(ClassificationKind.MULTICLASS, labels, probabilities, notes=[])
    metrics.start_import()
    try:
        assert classification_metrics(ClassificationKind.MULTICLASS, labels, on_disk, notes=[]) == expected
    finally:
        metrics.stop_helper()


def test_the_problem_types_with_scikit_learn_metrics_are_those_of_its_heads():
    for problem_type in ProblemType:
        head = PROBLEMS[problem_type].head
        assert problem_type.scikit_learn_metrics == issubclass(head, (ClassificationHead, RegressionHead)), problem_type
