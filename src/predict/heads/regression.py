"""Regression head (image, text and audio regression).

Writes (FORMATS.md "Regression"):
- pkl: `predictions` float32 (n, m), `labels` (m,) the label column names, `{input_column}` (n,).
- CSV: every input column, then `pred_{label_column}` per label column.
Metrics: MAE, MSE, RMSE, R2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.dataframe import numeric_labels
from predict.errors import ConfigError
from predict.heads.base import Head, column_values, output_width, rows_by_values, select_output
from predict.report.metrics import regression_metrics
from predict.runners.base import TensorSpec


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of regression."""

    output_name: str | None = None  # which model output, when it has several


class RegressionHead(Head):
    """One predicted value per label column, and regression metrics."""

    Config = Config
    model_keys = ("labels",)

    def __init__(
        self, *, output: str, label_columns: tuple[str, ...], input_column: str, labels: np.ndarray | None
    ) -> None:
        self.output = output
        self.label_columns = label_columns
        self.input_column = input_column
        self.labels = labels
        self.notes: list[str] = []

    @classmethod
    def build(cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame) -> RegressionHead:
        config: Config = task.head
        spec = select_output(outputs, config.output_name, model_name=task.model.name)
        width = output_width(spec, model_name=task.model.name)
        label_columns = task.data.label_columns
        if width is not None and width != len(label_columns):
            raise ConfigError(
                f"data.label_columns has {len(label_columns)} column(s) but model {task.model.name} output "
                f"'{spec.name}' predicts {width} value(s) per row"
            )
        labels = None
        if all(column in dataframe.columns for column in label_columns):
            labels = numeric_labels(dataframe, label_columns, source=task.data.labels_file)
        return cls(output=spec.name, label_columns=label_columns, input_column=task.input_column, labels=labels)

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        raw = outputs[self.output]
        return {"predictions": rows_by_values(raw, rows=len(raw))}

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        values = predictions["predictions"]
        return {f"pred_{column}": values[:, j] for j, column in enumerate(self.label_columns)}

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        return {
            "predictions": predictions["predictions"],
            "labels": np.asarray(self.label_columns),
            self.input_column: column_values(dataframe, self.input_column),
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        return regression_metrics(self.labels, predictions["predictions"], notes=self.notes)
