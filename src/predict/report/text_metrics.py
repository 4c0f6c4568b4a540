"""Text metrics under H2O Hydrogen Torch's names: entity-level F1 (token classification), Jaccard and
exact match (span prediction).

Entities follow conlleval / seqeval's default (non-strict) BIO reading: an entity starts at `B-X`, or
at `I-X` after `O` or after a tag of another type, and runs over the `I-X` that follow. A tag without
a `B-`/`I-` prefix (IO tagging) counts as `I-`. `O` is outside.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def bio_entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities of one tagged sentence.

    Args:
        tags: one tag per word, e.g. ["B-PER", "I-PER", "O", "B-LOC"].

    Returns:
        (type, first word, last word) of each entity, e.g. {("PER", 0, 1), ("LOC", 3, 3)}.
    """
    entities = set()
    current: tuple[str, int] | None = None  # (type, first word) of the open entity
    for position, tag in enumerate([*tags, "O"]):  # the sentinel closes an entity at the end
        prefix, _, kind = tag.partition("-") if tag[:2] in ("B-", "I-") else ("I", "", tag)
        begins = tag != "O" and (prefix == "B" or current is None or current[0] != kind)
        if current is not None and (tag == "O" or begins):
            entities.add((current[0], current[1], position - 1))
            current = None
        if begins:
            current = (kind, position)
    return entities


def entity_f1(true_tags: Iterable[Sequence[str]], predicted_tags: Iterable[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity-level F1, precision and recall over all sentences.

    An entity counts as found only when its type and both boundaries match. No entity in either
    the labels or the predictions gives 0 for all three (seqeval's convention).

    Returns:
        {"F1": ..., "Precision": ..., "Recall": ...}
    """
    true_total = predicted_total = found = 0
    for truth, predicted in zip(true_tags, predicted_tags, strict=True):
        true_entities, predicted_entities = bio_entities(truth), bio_entities(predicted)
        true_total += len(true_entities)
        predicted_total += len(predicted_entities)
        found += len(true_entities & predicted_entities)
    precision = found / predicted_total if predicted_total else 0.0
    recall = found / true_total if true_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"F1": f1, "Precision": precision, "Recall": recall}


def jaccard(truth: str, predicted: str) -> float:
    """Word-level Jaccard similarity as Kaggle's Tweet Sentiment Extraction defines it.

    Lower-cased, split on whitespace, as sets. Kaggle's code divides by zero when both are empty;
    two empty strings are identical here, so they score 1.0.
    """
    a, b = set(truth.lower().split()), set(predicted.lower().split())
    if not a and not b:
        return 1.0
    common = a & b
    return len(common) / (len(a) + len(b) - len(common))


def span_scores(truths: Sequence[str], predictions: Sequence[str]) -> dict[str, np.ndarray]:
    """Per row, `jaccard` (float64) and `exact_match` (bool: equal after stripping surrounding whitespace)."""
    pairs = list(zip(truths, predictions, strict=True))
    return {
        "jaccard": np.array([jaccard(truth, predicted) for truth, predicted in pairs], dtype=np.float64),
        "exact_match": np.array([truth.strip() == predicted.strip() for truth, predicted in pairs], dtype=bool),
    }


def span_metrics(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean `Jaccard` and `ExactMatch` of the rows' `span_scores`; none for no rows."""
    rows = len(scores["jaccard"])
    if not rows:
        return {}
    return {
        "Jaccard": sum(scores["jaccard"].tolist()) / rows,  # a Python sum, in row order
        "ExactMatch": sum(scores["exact_match"].tolist()) / rows,
    }
