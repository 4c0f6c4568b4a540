"""What a run did: the terminal summary and `{split}_report.json` read it (predict.writers.run)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predict.model_file import ResolvedModel


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """What a run did, for the terminal summary and `{split}_report.json`."""

    problem_type: str
    split: str
    rows: int
    seconds: float
    stage_seconds: dict[str, float]
    provider: str
    model: ResolvedModel
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    skipped_rows: int = 0
    batch_seconds: list[float] = field(default_factory=list)  # per batch: from loading it to its post-processing
    model_seconds: float = 0.0  # the model's own busy time (it overlaps loading and post-processing)
    decoding_workers: int | None = 0  # decoding processes at the end of the run (0: the main thread; None: Ray's)
    model_inputs: dict[str, list[int | None]] = field(default_factory=dict)  # input name -> shape (None: any size)
    fidelity: dict[str, Any] | None = None  # Keras vs the converted model on the first batch (predict.fidelity)

    @property
    def scoring_seconds(self) -> float:
        """Time from the first batch to the last file: the run less model conversion and loading."""
        return sum(self.stage_seconds.values())

    @property
    def rows_per_second(self) -> float:
        """Scoring throughput: rows per `scoring_seconds`."""
        return self.rows / self.scoring_seconds if self.scoring_seconds > 0 else math.inf
