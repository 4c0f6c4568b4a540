"""View of text token classification predictions (e.g. named entities in BIO tags).

Reads the CSV the token classification head writes (FORMATS.md "Text", token classification): the
text column (words = its whitespace-separated words), `pred_{col}` with one predicted tag per word
and, when labelled, `{col}` with one true tag per word, both space-separated.

Table: words, wrong tags (words whose predicted tag differs from the true one), predicted and actual
entities. Worst: most words tagged wrongly (count), ties by the lower share of words right, then
input order. Plots: word-level tag confusion matrix with labels; predicted tag counts without.
Samples: the sentence with each word coloured by its predicted entity type (tag under it); a word
whose tag differs from the true one is outlined in red with the true tag struck through beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predict.errors import InputError
from predict.report.text_metrics import bio_entities
from predict.view import _plots, _samples
from predict.view._columns import require_columns
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit

# Entity-type colours (light, so black text stays readable); "O" words stay uncoloured.
_PALETTE = ("#cfe2ff", "#ffe0b3", "#d4f0d4", "#f5d0e6", "#e6dcff", "#fff3b0", "#d0f0f0", "#f0d8c8")


class TokenClassificationView(View):
    """Words with predicted and true tags of one split, read from its predictions CSV.

    Attributes:
        words: per row, the list of words of the text column.
        predicted: per row, the list of predicted tags (one per word).
        truth: per row, the list of true tags, or None without labels.
    """

    worst_meaning = "most words tagged wrongly"
    sample_layout = "wide"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        label = run.label_columns[0]
        frame = run.predictions
        require_columns(frame, [run.input_column, f"pred_{label}"], source=source)
        self.words = [str(text).split() for text in frame[run.input_column]]
        self.predicted = [str(tags).split() for tags in frame[f"pred_{label}"]]
        self.truth = [str(tags).split() for tags in frame[label]] if run.labelled else None
        for row, words in enumerate(self.words):
            # Rows the pipeline skipped have empty prediction cells: nothing to compare.
            lists = {"pred_" + label: self.predicted[row]}
            if self.truth is not None:
                lists[label] = self.truth[row]
            for column, tags in lists.items():
                if tags and len(tags) != len(words):
                    raise InputError(
                        f"{source.name}: row {row}, column '{column}': {len(tags)} tags for {len(words)} words "
                        f"of '{run.input_column}'"
                    )
        tags = {tag for row in self.predicted for tag in row} | {tag for row in self.truth or () for tag in row}
        types = sorted({tag.split("-", 1)[-1] for tag in tags if tag != "O"})
        self.colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(types)}
        self.tags = sorted(tags, key=lambda tag: (tag != "O", tag.split("-", 1)[-1], tag))

    def _mismatches(self, row: int) -> int:
        if not self.predicted[row]:
            return len(self.truth[row])
        return sum(p != t for p, t in zip(self.predicted[row], self.truth[row]))

    def table(self) -> pd.DataFrame:
        table: dict[str, list] = {"words": [len(words) for words in self.words]}
        if self.truth is not None:
            table["wrong tags"] = [self._mismatches(row) for row in range(len(self.words))]
        table["predicted entities"] = [
            _entities(self.words[row], self.predicted[row]) for row in range(len(self.words))
        ]
        if self.truth is not None:
            table["actual entities"] = [_entities(self.words[row], self.truth[row]) for row in range(len(self.words))]
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        wrong = np.array([self._mismatches(row) for row in range(len(self.words))], dtype=np.float64)
        share = wrong / np.maximum([len(words) for words in self.words], 1)
        # Integer counts first; the share (< 1) only breaks ties between equal counts.
        return wrong + share / 2

    def sample_label(self, row: int) -> SampleLabel:
        predicted = _entities(self.words[row], self.predicted[row])
        if self.truth is None:
            return SampleLabel(predicted=predicted, actual=None, correct=None)
        actual = _entities(self.words[row], self.truth[row])
        return SampleLabel(predicted=predicted, actual=actual, correct=self._mismatches(row) == 0)

    def sample_html(self, row: int) -> str:
        spans = []
        truth = self.truth[row] if self.truth is not None else None
        for j, word in enumerate(self.words[row]):
            tag = self.predicted[row][j] if j < len(self.predicted[row]) else "?"
            colour = self.colours.get(tag.split("-", 1)[-1])
            style = f' style="background: {colour}"' if colour else ""
            mismatch = truth is not None and truth[j] != tag
            true_tag = f" <s>{_samples.escape(truth[j])}</s>" if mismatch else ""
            sub = f"<sub>{_samples.escape(tag)}{true_tag}</sub>" if tag != "O" or mismatch else ""
            title = f"predicted {tag}" + (f", actual {truth[j]}" if truth is not None else "")
            spans.append(
                f'<span class="token{" mismatch" if mismatch else ""}"{style} title="{_samples.escape(title)}">'
                f"{_samples.escape(word)}{sub}</span>"
            )
        body = f'<div class="tokens">{" ".join(spans)}</div>'
        label = self.sample_label(row)
        wrong = f" &middot; {self._mismatches(row)} wrong tag(s)" if truth is not None else ""
        return _samples.card(body, label, heading=f"row {row}{wrong}")

    def plots(self) -> list[Plot]:
        plots = []
        if self.truth is not None:
            plots.append(self._confusion_matrix())
        plots.append(self._tag_counts())
        return plots

    def _confusion_matrix(self) -> Plot:
        from sklearn import metrics as sk  # here, not above: `predict show` draws no plots (issue 18)

        index = {tag: i for i, tag in enumerate(self.tags)}
        true_flat, predicted_flat = [], []
        for row in range(len(self.words)):
            if self.predicted[row]:
                true_flat.extend(index[tag] for tag in self.truth[row])
                predicted_flat.extend(index[tag] for tag in self.predicted[row])
        counts = sk.confusion_matrix(true_flat, predicted_flat, labels=list(range(len(self.tags))))
        side = min(3.4 + 0.45 * len(self.tags), 12.0)
        figure = _plots.new_figure(side + 0.9, side)
        _plots.draw_matrix(figure.subplots(), counts, row_names=self.tags, column_names=self.tags, title="")
        right = int(np.trace(counts))
        return Plot(
            title=f"Tag confusion matrix ({right} of {counts.sum()} words right)",
            png=_plots.to_png(figure),
            caption=(
                "One count per word; rows: true tag, columns: predicted tag. "
                "Off-diagonal B-/I- cells split or merge entities."
            ),
        )

    def _tag_counts(self) -> Plot:
        predicted = [sum(row.count(tag) for row in self.predicted) for tag in self.tags]
        figure = _plots.new_figure(min(4.0 + 0.6 * len(self.tags), 14.0), 3.8)
        axes = figure.subplots()
        positions = np.arange(len(self.tags))
        if self.truth is not None:
            actual = [sum(row.count(tag) for row in self.truth) for tag in self.tags]
            axes.bar(positions - 0.2, actual, width=0.4, color="#55a868", label="actual")
            axes.bar(positions + 0.2, predicted, width=0.4, color="#4c72b0", label="predicted")
            axes.legend(fontsize="small")
        else:
            axes.bar(positions, predicted, color="#4c72b0")
        axes.set_xticks(positions, self.tags, rotation=45 if len(self.tags) > 6 else 0)
        axes.set_yscale("log")
        axes.set_ylabel("words (log scale)")
        return Plot(
            title="Tag counts",
            png=_plots.to_png(figure),
            caption="How often each tag is predicted (and true, with labels); log scale as O dominates.",
        )


def _entities(words: list[str], tags: list[str]) -> str:
    """`Aisha Patel (PER), Osaka (LOC)`: the BIO entities of one sentence, in order; `(none)` without."""
    if not tags:
        return "(not scored)"
    found = sorted(bio_entities(tags), key=lambda entity: entity[1])
    return ", ".join(f"{' '.join(words[start : last + 1])} ({kind})" for kind, start, last in found) or "(none)"
