"""View of text sequence to sequence predictions (translation, summarization, rewriting).

Reads the CSV the sequence to sequence head writes (FORMATS.md "Text", sequence to sequence): the
text column, `pred_{col}` (the generated text) and `{col}` (the reference) when labelled.

Table: actual, predicted and sentence-level chrF (sacrebleu's `sentence_chrf`, 0-100). Worst: lowest
chrF, ties in input order. chrF rather than sentence BLEU because BLEU of a short sentence drops to
0 when no 4-gram matches, so most imperfect short outputs would tie at 0. Plots: chrF histogram
and predicted vs reference length with labels; generated length histogram without. Samples: input,
predicted and actual side by side, the predicted words missing from the reference marked in red.
"""

from __future__ import annotations

import difflib
from typing import ClassVar

import numpy as np
import pandas as pd

from predict.view import _plots, _samples
from predict.view._columns import require_columns
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit


class SequenceToSequenceView(View):
    """Input, generated and reference texts of one split, read from its predictions CSV.

    Attributes:
        inputs, predicted: per row, as text.
        truth: per row, the reference text, or None without labels.
    """

    worst_meaning = "lowest sentence-level chrF"
    number_formats: ClassVar[dict[str, str]] = {"chrF": ".1f"}
    sample_layout = "wide"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        label = run.label_columns[0]
        require_columns(run.predictions, [run.input_column, f"pred_{label}"], source=source)
        self.inputs = run.predictions[run.input_column].astype(str).tolist()
        self.predicted = run.predictions[f"pred_{label}"].astype(str).tolist()
        self.truth = run.predictions[label].astype(str).tolist() if run.labelled else None
        self._chrf: np.ndarray | None = None

    def scores(self) -> np.ndarray:
        """float64[N] sentence-level chrF (0-100) of each generated text against its reference."""
        if self._chrf is None:
            import sacrebleu

            self._chrf = np.array(
                [
                    sacrebleu.sentence_chrf(predicted, [truth]).score
                    for predicted, truth in zip(self.predicted, self.truth)
                ],
                dtype=np.float64,
            )
        return self._chrf

    def table(self) -> pd.DataFrame:
        table: dict[str, object] = {}
        if self.truth is not None:
            table["actual"] = self.truth
        table["predicted"] = self.predicted
        if self.truth is not None:
            table["chrF"] = self.scores()
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        return 100.0 - self.scores()

    def sample_label(self, row: int) -> SampleLabel:
        if self.truth is None:
            return SampleLabel(predicted=self.predicted[row], actual=None, correct=None)
        return SampleLabel(
            predicted=self.predicted[row],
            actual=self.truth[row],
            correct=self.predicted[row].split() == self.truth[row].split(),
        )

    def sample_html(self, row: int) -> str:
        columns = [("input", _samples.escape(self.inputs[row]))]
        if self.truth is None:
            columns.append(("predicted", _samples.escape(self.predicted[row])))
        else:
            columns.append(("predicted", _diff(self.predicted[row], self.truth[row])))
            columns.append(("actual", _samples.escape(self.truth[row])))
        body = (
            '<div class="columns">'
            + "".join(
                f'<div><div class="name">{name}</div><div class="text">{text}</div></div>' for name, text in columns
            )
            + "</div>"
        )
        label = self.sample_label(row)
        state = {True: " right", False: " wrong", None: ""}[label.correct]
        heading = f"row {row}" + (f" &middot; chrF {self.scores()[row]:.1f}" if self.truth is not None else "")
        return f'<figure class="sample{state}">{body}<figcaption>{heading}</figcaption></figure>'

    def plots(self) -> list[Plot]:
        if self.truth is None:
            return [self._lengths()]
        return [self._chrf_histogram(), self._lengths()]

    def _chrf_histogram(self) -> Plot:
        scores = self.scores()
        figure = _plots.new_figure(6.0, 4.0)
        axes = figure.subplots()
        axes.hist(scores, bins=np.linspace(0.0, 100.0, 21), color="#4c72b0")
        axes.axvline(float(scores.mean()), color="#c44e52", lw=1.5, label=f"mean {scores.mean():.1f}")
        axes.set_xlabel("sentence chrF (100 = same characters as the reference)")
        axes.set_ylabel("rows")
        axes.legend(loc="upper left", fontsize="small")
        return Plot(
            title="Sentence chrF",
            png=_plots.to_png(figure),
            caption="Character n-gram F-score of each generated text against its reference (sacrebleu).",
        )

    def _lengths(self) -> Plot:
        predicted = np.array([len(text.split()) for text in self.predicted])
        figure = _plots.new_figure(5.0, 4.4)
        axes = figure.subplots()
        if self.truth is None:
            axes.hist(predicted, bins=np.arange(0, predicted.max(initial=0) + 2) - 0.5, color="#4c72b0")
            axes.set_xlabel("generated words")
            axes.set_ylabel("rows")
            return Plot(
                title="Generated lengths",
                png=_plots.to_png(figure),
                caption="No labels in this split: how long the generated texts are.",
            )
        actual = np.array([len(text.split()) for text in self.truth])
        high = int(max(predicted.max(initial=1), actual.max(initial=1))) + 1
        axes.plot([0, high], [0, high], ls="--", color="grey", lw=1, label="same length")
        # Jitter so rows of equal lengths do not hide behind each other.
        jitter = np.random.default_rng(0).uniform(-0.2, 0.2, size=(2, len(actual)))
        axes.scatter(actual + jitter[0], predicted + jitter[1], s=16, alpha=0.6, color="#4c72b0", edgecolors="none")
        axes.set_xlabel("reference words")
        axes.set_ylabel("generated words")
        axes.legend(loc="upper left", fontsize="small")
        return Plot(
            title="Lengths",
            png=_plots.to_png(figure),
            caption="Above the line: generated text longer than the reference (e.g. repeats); below: cut short.",
        )


def _diff(predicted: str, reference: str) -> str:
    """The predicted text as HTML, words not matched in the reference wrapped in `<del class="diff">`."""
    words, reference_words = predicted.split(), reference.split()
    matcher = difflib.SequenceMatcher(a=words, b=reference_words, autojunk=False)
    parts = []
    for tag, start, end, _, _ in matcher.get_opcodes():
        text = _samples.escape(" ".join(words[start:end]))
        if text:
            parts.append(text if tag == "equal" else f'<del class="diff">{text}</del>')
    return " ".join(parts) or "<em>(empty)</em>"
