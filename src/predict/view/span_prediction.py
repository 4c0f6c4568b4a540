"""View of text span prediction predictions (extractive question answering).

Reads the CSV the span prediction head writes (FORMATS.md "Text", span prediction): the question and
context columns (named in the report's `task.data`), `pred_{col}` (the best answer, an exact
substring of the context, "" when no valid span was found), `pred_{col}_top_{k}`, and `{col}` (the
true answer) when labelled.

Table: actual answer, predicted answer, word-level Jaccard (as the `Jaccard` metric). Worst: lowest
Jaccard, ties in input order. Plots: Jaccard histogram with labels; predicted answer lengths without.
Samples: question, then the context with the predicted answer highlighted (yellow) and the true
answer underlined (green); both at once (the same span) shows green.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from predict.report.text_metrics import jaccard
from predict.view import _plots, _samples
from predict.view._columns import require_columns
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit


class SpanPredictionView(View):
    """Questions, contexts and predicted vs true answers of one split, read from its predictions CSV.

    Attributes:
        questions, contexts, predicted: per row, as text.
        truth: per row, the true answer, or None without labels.
    """

    worst_meaning = "lowest word-level Jaccard of predicted and true answer"
    number_formats: ClassVar[dict[str, str]] = {"Jaccard": ".3f"}
    sample_layout = "wide"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        data = (run.report.get("task") or {}).get("data") or {}
        # Reports always carry the task; the defaults are the config's own key names.
        self.question_column = data.get("question_column") or "question"
        self.context_column = data.get("context_column") or "context"
        label = run.label_columns[0]
        frame = run.predictions
        require_columns(frame, [self.question_column, self.context_column, f"pred_{label}"], source=source)
        self.questions = frame[self.question_column].astype(str).tolist()
        self.contexts = frame[self.context_column].astype(str).tolist()
        self.predicted = frame[f"pred_{label}"].astype(str).tolist()
        self.truth = frame[label].astype(str).tolist() if run.labelled else None

    @property
    def input_column(self) -> str:
        return self.question_column

    def scores(self) -> np.ndarray:
        """float64[N] word-level Jaccard of predicted and true answer (`predict.report.text_metrics.jaccard`)."""
        return np.array([jaccard(truth, predicted) for truth, predicted in zip(self.truth, self.predicted)])

    def table(self) -> pd.DataFrame:
        table: dict[str, object] = {}
        if self.truth is not None:
            table["actual"] = self.truth
        table["predicted"] = [answer or "(no answer)" for answer in self.predicted]
        if self.truth is not None:
            table["Jaccard"] = self.scores()
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        return 1.0 - self.scores()

    def sample_label(self, row: int) -> SampleLabel:
        predicted = self.predicted[row] or "(no answer)"
        if self.truth is None:
            return SampleLabel(predicted=predicted, actual=None, correct=None)
        return SampleLabel(
            predicted=predicted, actual=self.truth[row], correct=jaccard(self.truth[row], self.predicted[row]) == 1.0
        )

    def sample_html(self, row: int) -> str:
        context = self.contexts[row]
        spans = {"predicted": _locate(context, self.predicted[row])}
        if self.truth is not None:
            spans["actual"] = _locate(context, self.truth[row])
        body = (
            f"<p><strong>Q:</strong> {_samples.escape(self.questions[row])}</p>"
            f'<blockquote class="snippet">{_highlight(context, spans)}</blockquote>'
        )
        heading = f"row {row}"
        if self.truth is not None:
            heading += f" &middot; Jaccard {jaccard(self.truth[row], self.predicted[row]):.2f}"
            if spans["actual"] is None:
                heading += " &middot; true answer not found in the context"
        return _samples.card(body, self.sample_label(row), heading=heading)

    def plots(self) -> list[Plot]:
        if self.truth is None:
            return [self._answer_lengths()]
        return [self._jaccard_histogram(), self._answer_lengths()]

    def _jaccard_histogram(self) -> Plot:
        scores = self.scores()
        figure = _plots.new_figure(6.0, 4.0)
        axes = figure.subplots()
        axes.hist(scores, bins=np.linspace(0.0, 1.0, 11), color="#4c72b0")
        axes.set_xlabel("word-level Jaccard, predicted vs true answer")
        axes.set_ylabel("rows")
        exact = int(np.sum(scores == 1.0))
        return Plot(
            title="Answer overlap",
            png=_plots.to_png(figure),
            caption=f"1 = same words as the true answer ({exact} of {len(scores)} rows); 0 = no word in common.",
        )

    def _answer_lengths(self) -> Plot:
        predicted = [len(answer.split()) for answer in self.predicted]
        figure = _plots.new_figure(6.0, 4.0)
        axes = figure.subplots()
        high = max([*predicted, *(len(answer.split()) for answer in self.truth or ())], default=1)
        bins = np.arange(0, high + 2) - 0.5
        if self.truth is not None:
            axes.hist(
                [len(answer.split()) for answer in self.truth], bins=bins, color="#55a868", alpha=0.6, label="actual"
            )
        axes.hist(predicted, bins=bins, color="#4c72b0", alpha=0.6, label="predicted")
        axes.legend(fontsize="small")
        axes.set_xlabel("answer length (words; 0 = no answer)")
        axes.set_ylabel("rows")
        return Plot(
            title="Answer lengths",
            png=_plots.to_png(figure),
            caption="Answers much longer or shorter than the true ones point at max_answer_length.",
        )


def _locate(context: str, answer: str) -> tuple[int, int] | None:
    """(start, end) characters of the first occurrence of `answer` in `context` (case-insensitive), or None."""
    if not answer.strip():
        return None
    start = context.lower().find(answer.lower())
    return None if start < 0 else (start, start + len(answer))


def _highlight(context: str, spans: dict[str, tuple[int, int] | None]) -> str:
    """The context as HTML, each character inside a span wrapped in `<mark class="{names}">`."""
    marks = [
        " ".join(name for name, span in spans.items() if span and span[0] <= i < span[1]) for i in range(len(context))
    ]
    parts, start = [], 0
    for end in range(1, len(context) + 1):
        if end == len(context) or marks[end] != marks[start]:
            piece = _samples.escape(context[start:end])
            parts.append(f'<mark class="{marks[start]}">{piece}</mark>' if marks[start] else piece)
            start = end
    return "".join(parts)
