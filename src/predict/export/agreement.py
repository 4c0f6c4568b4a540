"""How far the exported graph's outputs are from the pipeline's predictions on the same rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Agreement:
    """Figures of one comparison, and what in them is beyond tolerance.

    Attributes:
        figures: name to value, e.g. `predictions max abs diff` or `argmax agreement` (a fraction of rows).
        problems: one sentence per figure beyond tolerance; empty when the graph agrees.
    """

    figures: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def max_difference(self, name: str, graph: np.ndarray, pipeline: np.ndarray, *, tolerance: float) -> float:
        """Record `{name} max abs diff`; a problem when it exceeds `tolerance` (or shapes differ)."""
        graph, pipeline = np.asarray(graph), np.asarray(pipeline)
        if graph.shape != pipeline.shape:
            self.problems.append(f"{name}: the graph gives shape {graph.shape}, the pipeline {pipeline.shape}")
            return float("inf")
        difference = max_abs_difference(graph, pipeline)
        self.figures[f"{name} max abs diff"] = difference
        if not difference <= tolerance:
            self.problems.append(f"{name} differ by up to {difference:.3g} (tolerance {tolerance:g})")
        return difference

    def fraction(self, name: str, agreeing: np.ndarray, *, minimum: float = 1.0) -> float:
        """Record `name` = the mean of bool `agreeing` (1.0 when empty); a problem below `minimum`."""
        agreeing = np.asarray(agreeing, dtype=bool)
        value = float(agreeing.mean()) if agreeing.size else 1.0
        self.figures[name] = value
        if value < minimum:
            wrong = int(agreeing.size - agreeing.sum())
            self.problems.append(f"{name} {value:.4f}: {wrong} of {agreeing.size} differ (need {minimum:g})")
        return value


def max_abs_difference(first: np.ndarray, second: np.ndarray) -> float:
    """max |first - second| in float64, 0 for empty arrays; inf when either holds NaN where the other does not."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.size == 0:
        return 0.0
    same_nan = np.isnan(first) & np.isnan(second)
    difference = np.where(same_nan, 0.0, np.abs(first - second))
    return float(np.nan_to_num(difference, nan=np.inf).max())
