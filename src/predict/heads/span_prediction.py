"""Span prediction head (text span prediction: extractive question answering).

The loader reads each question-context pair as windows over the context (`preprocessing.max_length`
tokens, consecutive windows sharing `doc_stride` tokens). In every window, the `n_best_size` best
start and end tokens inside the context make candidate spans; a span is valid when start <= end and
it is at most `max_answer_length` tokens long. Its score is start logit + end logit; the same
characters found in two windows keep the better score. Answers are cut from the context by the
tokens' character offsets, so each is an exact substring. No valid span gives the answer "".

Writes (FORMATS.md "Text", span prediction):
- pkl: `{question_column}`, `{context_column}` (n,), `predictions` (n,) best answers,
  `predicted_{answer_column}_top_k` (n,) lists of the `number_of_predicted_answers` best answers.
- CSV: every input column, `pred_{answer_column}`, then `pred_{answer_column}_top_{k}` for k = 1..K
  ("" where fewer valid spans exist).
Metrics: `Jaccard` (word level, Kaggle Tweet Sentiment Extraction) and `ExactMatch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.context import WindowContext
from predict.errors import ConfigError
from predict.heads.base import Head, column_values, context_of
from predict.report.text_metrics import span_metrics
from predict.runners.base import TensorSpec


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of span prediction."""

    number_of_predicted_answers: int = 3
    max_answer_length: int = 30  # tokens
    n_best_size: int = 20  # start and end candidates per window
    start_output: str | None = None  # default: the output whose name contains "start"
    end_output: str | None = None  # default: the output whose name contains "end"


class SpanPredictionHead(Head):
    """The best answer spans of each question, and Jaccard / exact match."""

    Config = Config
    context_type = WindowContext
    row_attributes = ("answers",)

    def __init__(
        self,
        *,
        start_output: str,
        end_output: str,
        config: Config,
        question_column: str,
        context_column: str,
        answer_column: str,
        answers: list[str] | None,
    ) -> None:
        self.start_output = start_output
        self.end_output = end_output
        self.config = config
        self.question_column = question_column
        self.context_column = context_column
        self.answer_column = answer_column
        self.answers = answers
        self.notes: list[str] = []

    @classmethod
    def build(cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame) -> SpanPredictionHead:
        config: Config = task.head
        for key in ("number_of_predicted_answers", "max_answer_length", "n_best_size"):
            if getattr(config, key) < 1:
                raise ConfigError(f"head.{key} must be >= 1 (got {getattr(config, key)})")
        model_name = task.model.name
        names = [spec.name for spec in outputs]
        start = _pick_output(names, config.start_output, "start", key="head.start_output", model_name=model_name)
        end = _pick_output(names, config.end_output, "end", key="head.end_output", model_name=model_name)
        for spec in outputs:
            if spec.name in (start, end) and len(spec.shape) != 2:
                raise ConfigError(
                    f"model {model_name}: output '{spec.name}' has {len(spec.shape)} axes; span prediction needs "
                    "(batch, tokens) start and end logits"
                )
        answer_column = task.data.label_columns[0]
        answers = None
        if answer_column in dataframe.columns:
            answers = [value if isinstance(value, str) else "" for value in dataframe[answer_column]]
        return cls(
            start_output=start,
            end_output=end,
            config=config,
            question_column=task.data.question_column,
            context_column=task.data.context_column,
            answer_column=answer_column,
            answers=answers,
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """Window logits float[W, T] to answers per row; reads the `WindowContext` (windows loader)."""
        start_logits = np.asarray(outputs[self.start_output], dtype=np.float32)
        end_logits = np.asarray(outputs[self.end_output], dtype=np.float32)
        context = context_of(batch, WindowContext, head=self)
        offsets, window_rows, contexts = context.offsets, context.window_rows, context.contexts
        top_k = self.config.number_of_predicted_answers
        best = np.empty(len(batch.row_ids), dtype=object)
        ranked = np.empty(len(batch.row_ids), dtype=object)
        for slot, row in enumerate(batch.row_ids):
            candidates: dict[tuple[int, int], float] = {}
            for window in np.flatnonzero(window_rows == row):
                self._collect(start_logits[window], end_logits[window], offsets[window], candidates)
            order = sorted(candidates, key=lambda span: -candidates[span])[:top_k]
            answers = [contexts[slot][first:last] for first, last in order]
            best[slot] = answers[0] if answers else ""
            ranked[slot] = answers + [""] * (top_k - len(answers))
        return {"predictions": best, "top_k": ranked}

    def _collect(self, start: np.ndarray, end: np.ndarray, offsets: np.ndarray, candidates: dict) -> None:
        """Add one window's valid spans, as (first char, end char) -> score, keeping the best score per span."""
        inside = np.flatnonzero(offsets[:, 0] >= 0)
        if not inside.size:
            return
        count = self.config.n_best_size
        starts = inside[np.argsort(-start[inside], kind="stable")[:count]]
        ends = inside[np.argsort(-end[inside], kind="stable")[:count]]
        for first in starts:
            for last in ends:
                if last < first or last - first + 1 > self.config.max_answer_length:
                    continue
                span = (int(offsets[first, 0]), int(offsets[last, 1]))
                score = float(start[first] + end[last])
                if score > candidates.get(span, -np.inf):
                    candidates[span] = score

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        columns: dict[str, Any] = {f"pred_{self.answer_column}": predictions["predictions"]}
        for k in range(self.config.number_of_predicted_answers):
            columns[f"pred_{self.answer_column}_top_{k + 1}"] = [answers[k] for answers in predictions["top_k"]]
        return columns

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        return {
            self.question_column: column_values(dataframe, self.question_column),
            self.context_column: column_values(dataframe, self.context_column),
            "predictions": predictions["predictions"],
            f"predicted_{self.answer_column}_top_k": predictions["top_k"],
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.answers is None:
            return {}
        return span_metrics(self.answers, list(predictions["predictions"]))


def _pick_output(names: list[str], configured: str | None, word: str, *, key: str, model_name: str) -> str:
    if configured is not None:
        if configured not in names:
            raise ConfigError(f"{key}: model {model_name} has no output '{configured}' (outputs: {', '.join(names)})")
        return configured
    matches = [name for name in names if word in name.lower()]
    if len(matches) != 1:
        raise ConfigError(
            f"{key} is missing: model {model_name} outputs ({', '.join(names)}) have {len(matches)} name(s) containing "
            f"'{word}'; name the {word} logits output"
        )
    return matches[0]
