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

While a run scores, each row keeps its answers as character offsets (int32 first, end per answer) and, with
labels, its Jaccard and exact match; the answer strings are cut from the dataframe's contexts when the files
are written, a block of rows at a time (`RowsByBlock`). A run of 100,000 rows kept 400,000 small strings and
lists from its first batch to its last file: its peak while scoring fell from 449 to 423 MB without them (issue 18).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.context import WindowContext
from predict.errors import ConfigError
from predict.heads.base import BlockColumn, Head, LastBlock, RowsByBlock, column_values, context_of
from predict.report.text_metrics import span_metrics, span_scores
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
        """Window logits float[W, T] to each row's ranked answers, as int32[n, K, 2] character offsets into its
        context ((0, 0), the empty answer, where fewer valid spans exist), and, with labels, each row's `jaccard`
        and `exact_match`; reads the `WindowContext` (windows loader)."""
        start_logits = np.asarray(outputs[self.start_output], dtype=np.float32)
        end_logits = np.asarray(outputs[self.end_output], dtype=np.float32)
        context = context_of(batch, WindowContext, head=self)
        offsets, window_rows = context.offsets, context.window_rows
        top_k = self.config.number_of_predicted_answers
        answer_spans = np.zeros((len(batch.row_ids), top_k, 2), dtype=np.int32)
        firsts, lasts, scores, valid = self._window_spans(start_logits, end_logits, offsets)
        for slot, row in enumerate(batch.row_ids):
            windows = np.flatnonzero(window_rows == row)
            chosen = valid[windows]  # row-major: windows in order, then starts, then ends, as they were generated
            spans = _best_spans(firsts[windows][chosen], lasts[windows][chosen], scores[windows][chosen], top_k)
            if spans:
                answer_spans[slot, : len(spans)] = spans
        predictions = {"answer_spans": answer_spans}
        if self.answers is not None:
            best = [text[first:last] for text, (first, last) in zip(context.contexts, answer_spans[:, 0].tolist())]
            predictions.update(span_scores([self.answers[row] for row in batch.row_ids], best))
        return predictions

    def _window_spans(
        self, start: np.ndarray, end: np.ndarray, offsets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every window's candidate spans at once, each [W, n * n] for the `n_best_size` best start tokens (outer)
        by the n best end tokens (inner) among its context tokens: first char, end char, score and whether the
        span is valid (both tokens in the context, end not before start, at most `max_answer_length` tokens)."""
        inside = offsets[:, :, 0] >= 0
        count = min(self.config.n_best_size, start.shape[1])
        # Stable, by descending logit, ties by token order; tokens outside the context sort last.
        starts = np.argsort(-np.where(inside, start, -np.inf), axis=1, kind="stable")[:, :count]
        ends = np.argsort(-np.where(inside, end, -np.inf), axis=1, kind="stable")[:, :count]
        rows = np.arange(len(start))[:, None]
        length = ends[:, None, :] - starts[:, :, None] + 1
        valid = inside[rows, starts][:, :, None] & inside[rows, ends][:, None, :]
        valid &= (length >= 1) & (length <= self.config.max_answer_length)
        scores = start[rows, starts][:, :, None] + end[rows, ends][:, None, :]  # float32 sums, as one at a time
        firsts = np.broadcast_to(offsets[rows, starts, 0][:, :, None], valid.shape)
        lasts = np.broadcast_to(offsets[rows, ends, 1][:, None, :], valid.shape)
        flat = (len(start), count * count)
        return firsts.reshape(flat), lasts.reshape(flat), scores.reshape(flat), valid.reshape(flat)

    def answer_texts(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, RowsByBlock]:
        """The rows' answers cut from the dataframe's contexts a block of rows at a time: `predictions` (each row's
        best answer) and `top_k` (each row's list of `number_of_predicted_answers` answers)."""
        answers = _Answers(dataframe[self.context_column].array, predictions["answer_spans"])
        return {"predictions": _answer_column(answers, 0), "top_k": answers}

    def prediction_columns(self, predictions: dict[str, Any]) -> dict[str, Any]:
        """From `answer_texts`."""
        columns: dict[str, Any] = {f"pred_{self.answer_column}": predictions["predictions"]}
        for k in range(self.config.number_of_predicted_answers):
            columns[f"pred_{self.answer_column}_top_{k + 1}"] = _answer_column(predictions["top_k"], k)
        return columns

    def csv_table(
        self, dataframe: pd.DataFrame, predictions: dict[str, np.ndarray], *, valid: np.ndarray
    ) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray]:
        return dataframe, self.prediction_columns(self.answer_texts(predictions, dataframe)), ~valid

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        texts = self.answer_texts(predictions, dataframe)
        return {
            self.question_column: column_values(dataframe, self.question_column),
            self.context_column: column_values(dataframe, self.context_column),
            "predictions": texts["predictions"],
            f"predicted_{self.answer_column}_top_k": texts["top_k"],
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.answers is None:
            return {}
        return span_metrics(predictions)


class _Answers(RowsByBlock):
    """Per row, the list of its ranked answers, cut from its context (a cell that is not text, a row that could
    not be read, gives ""); the block last cut is kept for the other columns of the same CSV chunk."""

    def __init__(self, contexts: Sequence[object], spans: np.ndarray) -> None:
        self.contexts = contexts
        self.spans = spans
        self.cut = LastBlock(len(spans), self._cut)

    def __len__(self) -> int:
        return len(self.spans)

    def block(self, start: int, stop: int) -> list[list[str]]:
        return self.cut.block(start, stop)

    def _cut(self, start: int, stop: int) -> list[list[str]]:
        contexts = self.contexts[start:stop]  # a SpilledTexts slice reads its cells when iterated
        return [
            [(text if isinstance(text, str) else "")[first:last] for first, last in spans]
            for text, spans in zip(contexts, self.spans[start:stop].tolist(), strict=True)
        ]


def _answer_column(answers: _Answers, k: int) -> BlockColumn:
    """The k-th answer of every row (k = 0: the best)."""
    return BlockColumn(answers, functools.partial(_kth_answers, k))


def _kth_answers(k: int, ranked_rows: list[list[str]]) -> list[str]:
    return [ranked[k] for ranked in ranked_rows]


def _best_spans(firsts: np.ndarray, lasts: np.ndarray, scores: np.ndarray, top_k: int) -> list[tuple[int, int]]:
    """The `top_k` best distinct (first char, end char) spans of a row: each scored by its best occurrence,
    ties ranked by where the span first appeared in the candidates' order."""
    if not scores.size:
        return []
    firsts, lasts = firsts.astype(np.int64), lasts.astype(np.int64)
    keys = firsts * (int(lasts.max()) + 1) + lasts
    _, first_seen, inverse = np.unique(keys, return_index=True, return_inverse=True)
    best = np.full(first_seen.size, -np.inf)
    np.maximum.at(best, inverse.ravel(), scores)
    order = np.lexsort((first_seen, -best))[:top_k]
    return [(int(firsts[first_seen[i]]), int(lasts[first_seen[i]])) for i in order]


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
