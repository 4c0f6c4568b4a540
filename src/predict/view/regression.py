"""View of regression predictions (image, text, audio and array regression).

Reads `pred_{col}` per label column, and `{col}` itself when the split has labels (FORMATS.md "Regression").
Table: actual, predicted and error (predicted - actual) per label column. Worst: largest absolute
error (the largest over label columns when there are several). Plots: predicted vs actual and
residual histogram per label column with labels; distribution of predictions without; and for a
forecaster (a model input of windows, (N, T, F)), actual and predicted over the row index.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predict.view import _plots
from predict.view._columns import float_columns
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit


class RegressionView(View):
    """Predicted and actual values of one split, read from its predictions CSV."""

    worst_meaning = "largest absolute error"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        self.targets = list(run.label_columns)
        self.predictions = float_columns(run.predictions, [f"pred_{column}" for column in self.targets], source=source)
        self.labels = float_columns(run.predictions, self.targets, source=source) if run.labelled else None

    def table(self) -> pd.DataFrame:
        table: dict[str, np.ndarray] = {}
        several = len(self.targets) > 1
        for j, target in enumerate(self.targets):
            suffix = f" {target}" if several else ""
            if self.labels is not None:
                table[f"actual{suffix}"] = self.labels[:, j]
            table[f"predicted{suffix}"] = self.predictions[:, j]
            if self.labels is not None:
                table[f"error{suffix}"] = self.predictions[:, j] - self.labels[:, j]
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        return np.abs(self.predictions - self.labels).max(axis=1)

    def sample_label(self, row: int) -> SampleLabel:
        predicted = ", ".join(f"{value:.4g}" for value in self.predictions[row])
        actual = None if self.labels is None else ", ".join(f"{value:.4g}" for value in self.labels[row])
        return SampleLabel(predicted=predicted, actual=actual, correct=None)

    def plots(self) -> list[Plot]:
        forecast = [self._forecast()] if self._is_forecast() else []
        if self.labels is None:
            return [*forecast, self._prediction_histograms()]
        return [*forecast, self._scatter(), self._residual_histograms()]

    def _is_forecast(self) -> bool:
        """Whether rows are windows of a series: an array model with an input of (N, T, F) or more axes."""
        shapes = self.run.report.get("model_inputs", {}).values()
        return self.run.problem_type.modality == "array" and any(len(shape) >= 3 for shape in shapes)

    def _forecast(self) -> Plot:
        figure = _plots.new_figure(12.0, 3.2 * len(self.targets))
        axes = figure.subplots(len(self.targets), 1, squeeze=False).ravel()
        rows = np.arange(len(self.predictions))
        for j, ax in enumerate(axes):
            if self.labels is not None:
                ax.plot(rows, self.labels[:, j], color="grey", lw=1.2, label="actual")
            ax.plot(rows, self.predictions[:, j], color="#c44e52", lw=1.0, label="predicted")
            ax.set_xlabel(f"row ({self.input_column})")
            ax.set_ylabel(self.targets[j])
            ax.legend(loc="upper left", fontsize="small")
        return Plot(
            title="Forecast over the rows",
            png=_plots.to_png(figure),
            caption="Each row is one window of the series; the line follows the rows in input order.",
        )

    def _scatter(self) -> Plot:
        figure, axes = _plots.grid(len(self.targets), columns=3, cell=4.4)
        for j, ax in enumerate(axes):
            actual, predicted = self.labels[:, j], self.predictions[:, j]
            low = float(min(actual.min(), predicted.min()))
            high = float(max(actual.max(), predicted.max()))
            margin = (high - low) * 0.05 or 0.5
            ax.plot(
                [low - margin, high + margin],
                [low - margin, high + margin],
                ls="--",
                color="grey",
                lw=1,
                label="predicted = actual",
            )
            ax.scatter(actual, predicted, s=18, alpha=0.7, color="#4c72b0", edgecolors="none")
            ax.set_xlim(low - margin, high + margin)
            ax.set_ylim(low - margin, high + margin)
            ax.set_aspect("equal")
            ax.set_xlabel(f"actual {self.targets[j]}")
            ax.set_ylabel(f"predicted {self.targets[j]}")
            ax.set_title(f"{self.targets[j]}: MAE {np.abs(predicted - actual).mean():.4g}")
            ax.legend(loc="upper left", fontsize="small")
        return Plot(
            title="Predicted vs actual",
            png=_plots.to_png(figure),
            caption="One dot per row; dots on the dashed line are exact, above it over-predicted.",
        )

    def _residual_histograms(self) -> Plot:
        figure, axes = _plots.grid(len(self.targets), columns=3, cell=4.0)
        for j, ax in enumerate(axes):
            residuals = self.predictions[:, j] - self.labels[:, j]
            ax.hist(residuals, bins=min(30, max(5, len(residuals) // 3)), color="#4c72b0")
            ax.axvline(0.0, color="grey", ls="--", lw=1)
            ax.axvline(float(residuals.mean()), color="#c44e52", lw=1.5, label=f"mean {residuals.mean():.3g}")
            ax.set_xlabel(f"predicted - actual {self.targets[j]}")
            ax.set_ylabel("rows")
            ax.legend(loc="upper right", fontsize="small")
        return Plot(
            title="Residuals",
            png=_plots.to_png(figure),
            caption="Error of each row (predicted - actual); a mean away from 0 is a bias.",
        )

    def _prediction_histograms(self) -> Plot:
        figure, axes = _plots.grid(len(self.targets), columns=3, cell=4.0)
        for j, ax in enumerate(axes):
            values = self.predictions[:, j]
            ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4c72b0")
            ax.set_xlabel(f"predicted {self.targets[j]}")
            ax.set_ylabel("rows")
        return Plot(
            title="Predictions",
            png=_plots.to_png(figure),
            caption="No labels in this split: the distribution of predicted values.",
        )
