"""Entity-level F1 (BIO), Jaccard and exact match against hand-computed references."""

from __future__ import annotations

import pytest

from predict.report.text_metrics import bio_entities, entity_f1, jaccard, span_metrics, span_scores


def test_bio_entities_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "B-PER"]
    assert bio_entities(tags) == {("PER", 0, 1), ("LOC", 3, 4), ("LOC", 5, 5), ("ORG", 6, 6), ("PER", 7, 7)}
    assert bio_entities(["PER", "PER", "O", "LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}  # IO tagging
    assert bio_entities([]) == set()


def test_entity_f1_is_micro_averaged_over_sentences():
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-ORG"]]
    # Found: LOC, ORG (2); predicted 4 entities, true 3: P = 1/2, R = 2/3, F1 = 4/7.
    result = entity_f1(truth, predicted)
    assert result["Precision"] == pytest.approx(0.5)
    assert result["Recall"] == pytest.approx(2 / 3)
    assert result["F1"] == pytest.approx(4 / 7)
    assert entity_f1([["O"]], [["O"]]) == {"F1": 0.0, "Precision": 0.0, "Recall": 0.0}


def test_jaccard_and_exact_match():
    assert jaccard("New York City", "new york") == pytest.approx(2 / 3)
    assert jaccard("", "") == 1.0
    assert jaccard("a", "") == 0.0
    scores = span_scores(["Lisbon", "Acme Corp", ""], ["Lisbon ", "Acme", "x"])
    assert scores["exact_match"].tolist() == [True, False, False]
    result = span_metrics(scores)
    assert result["ExactMatch"] == pytest.approx(1 / 3)
    assert result["Jaccard"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert span_metrics(span_scores([], [])) == {}
