"""View of classification predictions (image, text and audio classification).

Reads the CSV the classification head writes (FORMATS.md "Classification"), whose layout gives the kind:
- categorical: one label column `{col}` and `pred_{col}_{class}` per class: multi-class;
- binary: one label column and one `pred_{col}` probability: threshold 0.5;
- columns: several 0/1 label columns and `pred_{col}` each: multi-class when every row of
  probabilities sums to 1 (a softmax), else multi-label (threshold 0.5 per column).

Table: actual, predicted, confidence (probability of the predicted class) and p(actual) (probability
of the true class); multi-label rows show the least sure label. Worst: lowest p(actual).
Plots: confusion matrix and one-vs-rest ROC curves with labels; predicted class counts and
confidence histogram without.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from predict.errors import InputError
from predict.report.metrics import ClassificationKind
from predict.view import _plots
from predict.view._columns import float_columns, require_columns
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit

# Rows of a softmax sum to 1 within float32 rounding and the CSV's 7 significant digits.
_SOFTMAX_SUM_TOLERANCE = 1e-3
_THRESHOLD = 0.5


class ClassificationView(View):
    """Classes, probabilities and labels of one split, read from its predictions CSV.

    Attributes:
        kind: binary, multiclass or multilabel (see the module docstring).
        classes: C display names: class names, label columns, or `{col}=0`/`{col}=1` for binary.
        scores: float64[N, C] probabilities; binary: (1 - p, p).
        truth: int64[N] true class index (multi-label: int64[N, C] 0/1), or None without labels.
        predicted: int64[N] predicted class index (multi-label: bool[N, C] at or above 0.5).
    """

    worst_meaning = "lowest probability of the true class"
    number_formats: ClassVar[dict[str, str]] = {"confidence": ".4f", "p(actual)": ".4f"}

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        frame = run.predictions
        source = run.run_dir / f"{run.split}_predictions.csv"
        label_columns = list(run.label_columns)
        if not label_columns:
            raise InputError(f"{run.run_dir / (run.split + '_report.json')}: label_columns is empty; nothing to view")
        prefix = f"pred_{label_columns[0]}_"
        class_columns = [column for column in frame.columns if column.startswith(prefix)]
        truth = None
        if len(label_columns) == 1 and class_columns:
            # Categorical: class names as label values.
            self.kind = ClassificationKind.MULTICLASS
            self.classes = [column[len(prefix) :] for column in class_columns]
            self.scores = float_columns(frame, class_columns, source=source)
            if run.labelled:
                truth = _class_indices(frame[label_columns[0]], self.classes, column=label_columns[0], source=source)
        elif len(label_columns) == 1:
            self.kind = ClassificationKind.BINARY
            column = label_columns[0]
            self.classes = [f"{column}=0", f"{column}=1"]
            positive = float_columns(frame, [f"pred_{column}"], source=source)[:, 0]
            self.scores = np.stack([1 - positive, positive], axis=1)
            if run.labelled:
                truth = _zero_one(frame, [column], source=source)[:, 0]
        else:
            self.classes = label_columns
            self.scores = float_columns(frame, [f"pred_{column}" for column in label_columns], source=source)
            sums_to_one = np.allclose(self.scores.sum(axis=1), 1.0, atol=_SOFTMAX_SUM_TOLERANCE)
            self.kind = ClassificationKind.MULTICLASS if sums_to_one else ClassificationKind.MULTILABEL
            if run.labelled:
                truth = _zero_one(frame, label_columns, source=source)
                if self.kind is ClassificationKind.MULTICLASS:
                    truth = truth.argmax(axis=1)
        self.truth = truth
        self.predicted = _predicted(self.kind, self.scores)

    def table(self) -> pd.DataFrame:
        rows = np.arange(len(self.scores))
        if self.kind is ClassificationKind.MULTILABEL:
            predicted = self.predicted
            table = {
                "predicted": [_names(self.classes, flags) for flags in predicted],
                # The least sure label decides how sure the row is.
                "confidence": np.maximum(self.scores, 1 - self.scores).min(axis=1),
            }
            if self.truth is not None:
                table = {"actual": [_names(self.classes, flags) for flags in self.truth.astype(bool)], **table}
                table["p(actual)"] = self._probability_of_truth()
        else:
            predicted = self.predicted
            table = {
                "predicted": [self.classes[index] for index in predicted],
                "confidence": self.scores[rows, predicted],
            }
            if self.truth is not None:
                table = {"actual": [self.classes[index] for index in self.truth], **table}
                table["p(actual)"] = self._probability_of_truth()
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        return 1.0 - self._probability_of_truth()

    def sample_label(self, row: int) -> SampleLabel:
        if self.kind is ClassificationKind.MULTILABEL:
            flags = self.predicted[row]
            predicted = _names(self.classes, flags)
            actual = None if self.truth is None else _names(self.classes, self.truth[row].astype(bool))
            correct = None if self.truth is None else bool(np.array_equal(flags, self.truth[row].astype(bool)))
            return SampleLabel(predicted=predicted, actual=actual, correct=correct)
        index = int(self.predicted[row])
        predicted = f"{self.classes[index]} ({self.scores[row, index]:.2f})"
        if self.truth is None:
            return SampleLabel(predicted=predicted, actual=None, correct=None)
        truth = int(self.truth[row])
        return SampleLabel(predicted=predicted, actual=self.classes[truth], correct=truth == index)

    def plots(self) -> list[Plot]:
        if self.truth is None:
            return [self._predicted_counts(), self._confidence_histogram()]
        return [self._confusion_matrix(), self._roc_curves()]

    def _probability_of_truth(self) -> np.ndarray:
        """float64[N]: probability given to the true class; multi-label: the lowest over labels of p(true outcome)."""
        if self.kind is ClassificationKind.MULTILABEL:
            return np.where(self.truth == 1, self.scores, 1 - self.scores).min(axis=1)
        return self.scores[np.arange(len(self.scores)), self.truth]

    def _confusion_matrix(self) -> Plot:
        from sklearn import metrics as sk  # here, not above: `predict show` draws no plots (issue 18)

        if self.kind is ClassificationKind.MULTILABEL:
            matrices = sk.multilabel_confusion_matrix(self.truth, self.predicted.astype(int))
            shown = min(len(self.classes), _plots.MAX_ROC_CURVES)
            figure, axes = _plots.grid(shown, columns=4, cell=3.0)
            for j, ax in enumerate(axes):
                _plots.draw_matrix(
                    ax, matrices[j], row_names=["0", "1"], column_names=["0", "1"], title=self.classes[j]
                )
            caption = "Per label, at a 0.5 threshold; rows: actual, columns: predicted."
            if shown < len(self.classes):
                caption += f" First {shown} of {len(self.classes)} labels."
            return Plot(title="Confusion matrices", png=_plots.to_png(figure), caption=caption)
        size = len(self.classes)
        counts = sk.confusion_matrix(self.truth, self.predicted, labels=list(range(size)))
        side = min(3.4 + 0.4 * size, 12.0)
        figure = _plots.new_figure(side + 0.9, side)
        _plots.draw_matrix(figure.subplots(), counts, row_names=self.classes, column_names=self.classes, title="")
        caption = "Rows: actual class, columns: predicted class; the diagonal is correct."
        if self.kind is ClassificationKind.BINARY:
            caption += " Predicted class 1 where the probability is at least 0.5."
        accuracy = float(np.trace(counts) / counts.sum())
        return Plot(
            title=f"Confusion matrix ({np.trace(counts)} of {counts.sum()} correct, {accuracy:.1%})",
            png=_plots.to_png(figure),
            caption=caption,
        )

    def _roc_curves(self) -> Plot:
        from sklearn import metrics as sk  # here, not above: `predict show` draws no plots (issue 18)

        if self.kind is ClassificationKind.BINARY:
            curves = [(self.classes[1], self.truth, self.scores[:, 1])]
        else:
            one_hot = (
                self.truth
                if self.kind is ClassificationKind.MULTILABEL
                else np.eye(len(self.classes), dtype=int)[self.truth]
            )
            curves = [(name, one_hot[:, j], self.scores[:, j]) for j, name in enumerate(self.classes)]
        usable = [curve for curve in curves if 0 < curve[1].sum() < len(curve[1])]
        skipped = [name for name, labels, _ in curves if not 0 < labels.sum() < len(labels)]
        figure = _plots.new_figure(5.4, 4.6)
        axes = figure.subplots()
        for name, labels, scores in usable[: _plots.MAX_ROC_CURVES]:
            false_positive, true_positive, _ = sk.roc_curve(labels, scores)
            axes.plot(
                false_positive, true_positive, lw=1.8, label=f"{name} (AUC {sk.auc(false_positive, true_positive):.3f})"
            )
        axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
        axes.set_xlim(-0.01, 1.01)
        axes.set_ylim(-0.01, 1.01)
        axes.set_xlabel("false positive rate")
        axes.set_ylabel("true positive rate")
        axes.legend(loc="lower right", fontsize="small")
        parts = ["One curve per class, that class against the rest." if len(curves) > 1 else "Class 1 against class 0."]
        if len(usable) > _plots.MAX_ROC_CURVES:
            parts.append(f"First {_plots.MAX_ROC_CURVES} of {len(usable)} classes drawn.")
        if skipped:
            parts.append(f"No curve for {', '.join(skipped)}: the labels hold only one outcome.")
        return Plot(title="ROC curves", png=_plots.to_png(figure), caption=" ".join(parts))

    def _predicted_counts(self) -> Plot:
        if self.kind is ClassificationKind.MULTILABEL:
            counts = self.predicted.sum(axis=0)
        else:
            counts = np.bincount(self.predicted, minlength=len(self.classes))
        figure = _plots.new_figure(min(4.0 + 0.5 * len(self.classes), 14.0), 4.0)
        axes = figure.subplots()
        axes.bar(range(len(self.classes)), counts, color="#4c72b0")
        axes.set_xticks(
            range(len(self.classes)),
            self.classes,
            rotation=45 if len(self.classes) > 4 else 0,
            ha="right" if len(self.classes) > 4 else "center",
        )
        axes.set_ylabel("rows")
        return Plot(
            title="Predicted classes",
            png=_plots.to_png(figure),
            caption="No labels in this split: how often each class is predicted.",
        )

    def _confidence_histogram(self) -> Plot:
        confidence = self.table()["confidence"].to_numpy()
        figure = _plots.new_figure(6.0, 4.0)
        axes = figure.subplots()
        axes.hist(confidence, bins=20, range=(0.0, 1.0), color="#4c72b0")
        axes.set_xlabel("probability of the predicted class")
        axes.set_ylabel("rows")
        return Plot(
            title="Confidence", png=_plots.to_png(figure), caption="Low values are the predictions to check first."
        )


def _predicted(kind: ClassificationKind, scores: np.ndarray) -> np.ndarray:
    """int64[N] predicted class index; multi-label: bool[N, C] columns at or above 0.5."""
    if kind is ClassificationKind.MULTILABEL:
        return scores >= _THRESHOLD
    if kind is ClassificationKind.BINARY:
        return (scores[:, 1] >= _THRESHOLD).astype(np.int64)
    return scores.argmax(axis=1)


def _names(classes: list[str], flags: np.ndarray) -> str:
    chosen = [name for name, flag in zip(classes, flags) if flag]
    return ", ".join(chosen) if chosen else "(none)"


def _class_indices(values: pd.Series, classes: list[str], *, column: str, source) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    unknown = [row for row, value in enumerate(values) if value not in index]
    if unknown:
        row = unknown[0]
        raise InputError(
            f"{source.name}: row {row}, label column '{column}': class {values.iloc[row]!r} has no pred_{column}_* "
            f"column (classes: {', '.join(classes)})"
        )
    return np.fromiter((index[value] for value in values), dtype=np.int64, count=len(values))


def _zero_one(frame: pd.DataFrame, columns: list[str], *, source) -> np.ndarray:
    require_columns(frame, columns, source=source)
    labels = float_columns(frame, columns, source=source)
    bad_rows, bad_columns = np.nonzero((labels != 0) & (labels != 1))
    if bad_rows.size:
        row, column = int(bad_rows[0]), columns[int(bad_columns[0])]
        raise InputError(
            f"{source.name}: row {row}, label column '{column}': expected 0 or 1, got {frame[column].iloc[row]!r}"
        )
    return labels.astype(np.int64)
