"""Classification head (image, text and audio classification).

Label layouts (`head.label_layout`, detected by default):
- `columns`: several 0/1 label columns, one-hot (multi-class) or multi-hot (multi-label);
- `binary`: one 0/1 label column and a model output of width 1 (or 2, class 1 is kept);
- `categorical`: one label column holding class names, model output width = number of classes.

Writes (FORMATS.md "Classification"):
- pkl: `predictions` float32 (n, m) probabilities, `labels` (m,) label column names (categorical:
  class names), `{input_column}` (n,) the input column's values.
- CSV: every input column, then `pred_{label_column}` per label column; categorical:
  `pred_{label_column}_{class}` per class, then `pred_{label_column}` = the argmax class name.
Metrics: ROC_AUC, LogLoss, Accuracy, F1 (see predict.report.metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.dataframe import numeric_labels, text_labels
from predict.errors import ConfigError, InputError
from predict.heads import _ops
from predict.heads.base import Head, column_values, output_width, rows_by_values, select_output
from predict.report.metrics import ClassificationKind, classification_metrics
from predict.runners.base import TensorSpec

_PROBABILITY_OPS = {"Softmax", "Sigmoid"}


class Activation(StrEnum):
    """What turns raw outputs into probabilities; `auto` applies none when the graph ends in Softmax/Sigmoid."""

    AUTO = "auto"
    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"
    NONE = "none"


class LabelLayout(StrEnum):
    """How the label columns encode classes; `auto` decides from their count and the model's output width."""

    AUTO = "auto"
    COLUMNS = "columns"
    BINARY = "binary"
    CATEGORICAL = "categorical"


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of classification."""

    activation: Activation = Activation.AUTO
    label_layout: LabelLayout = LabelLayout.AUTO
    class_names: tuple[str, ...] = ()  # categorical: the class of each output, in order (default: sorted labels)
    output_name: str | None = None  # which model output, when it has several


class ClassificationHead(Head):
    """Probabilities per class, the predicted class, and classification metrics."""

    Config = Config
    model_keys = ("labels",)

    def __init__(
        self,
        *,
        output: str,
        layout: LabelLayout,
        kind: ClassificationKind,
        activation: Activation,
        label_columns: tuple[str, ...],
        class_names: tuple[str, ...],
        input_column: str,
        labels: np.ndarray | None,
        notes: list[str],
    ) -> None:
        self.output = output
        self.layout = layout
        self.kind = kind
        self.activation = activation
        self.label_columns = label_columns
        self.class_names = class_names
        self.input_column = input_column
        self.labels = labels
        self.notes = notes

    @classmethod
    def build(cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame) -> ClassificationHead:
        config: Config = task.head
        model_name = task.model.name
        spec = select_output(outputs, config.output_name, model_name=model_name)
        width = output_width(spec, model_name=model_name)
        label_columns = task.data.label_columns
        has_labels = all(column in dataframe.columns for column in label_columns)
        layout = _layout(config.label_layout, label_columns, width)
        notes: list[str] = []
        source = task.data.labels_file

        if layout is LabelLayout.CATEGORICAL:
            class_names, labels = _categorical_labels(task, dataframe, spec, width, has_labels=has_labels)
        else:
            if layout is LabelLayout.COLUMNS and width is not None and width != len(label_columns):
                raise ConfigError(
                    f"data.label_columns has {len(label_columns)} columns but model {model_name} output "
                    f"'{spec.name}' has width {width}"
                )
            class_names = ()
            labels = _binary_labels(dataframe, label_columns, source=source) if has_labels else None

        single_label = _is_single_label(layout, config.activation, spec.producer, labels, notes)
        activation = _activation(config.activation, layout, spec, width, single_label, notes)
        if layout is LabelLayout.BINARY:
            kind = ClassificationKind.BINARY
        else:
            kind = ClassificationKind.MULTICLASS if single_label else ClassificationKind.MULTILABEL
        if labels is not None and layout is LabelLayout.BINARY:
            labels = labels[:, 0]
        elif labels is not None and kind is ClassificationKind.MULTICLASS and layout is LabelLayout.COLUMNS:
            labels = labels.argmax(axis=1)
        return cls(
            output=spec.name,
            layout=layout,
            kind=kind,
            activation=activation,
            label_columns=label_columns,
            class_names=class_names,
            input_column=task.input_column,
            labels=labels,
            notes=notes,
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        raw = outputs[self.output]
        values = rows_by_values(raw, rows=len(raw))
        if self.activation is Activation.SOFTMAX:
            values = _ops.softmax(values)
        elif self.activation is Activation.SIGMOID:
            values = _ops.sigmoid(values)
        if self.layout is LabelLayout.BINARY and values.shape[1] == 2:
            values = values[:, 1:]  # two-way softmax: keep the probability of class 1
        return {"predictions": values}

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        probabilities = predictions["predictions"]
        if self.layout is not LabelLayout.CATEGORICAL:
            return {f"pred_{column}": probabilities[:, j] for j, column in enumerate(self.label_columns)}
        column = self.label_columns[0]
        columns: dict[str, Any] = {
            f"pred_{column}_{name}": probabilities[:, j] for j, name in enumerate(self.class_names)
        }
        columns[f"pred_{column}"] = np.asarray(self.class_names, dtype=object)[probabilities.argmax(axis=1)]
        return columns

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        names = self.class_names if self.layout is LabelLayout.CATEGORICAL else self.label_columns
        return {
            "predictions": predictions["predictions"],
            "labels": np.asarray(names),
            self.input_column: column_values(dataframe, self.input_column),
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        probabilities = predictions["predictions"]
        if self.kind is ClassificationKind.BINARY:
            probabilities = probabilities[:, 0]
        return classification_metrics(self.kind, self.labels, probabilities, notes=self.notes)


def _categorical_labels(
    task: TaskConfig, dataframe: pd.DataFrame, spec: TensorSpec, width: int | None, *, has_labels: bool
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """One label column of class names: the model's classes in output order, and each row's class index."""
    config, model_name = task.head, task.model.name
    label_column, source = task.data.label_columns[0], task.data.labels_file
    labels = text_labels(dataframe, label_column, source=source) if has_labels else None
    class_names = config.class_names or _default_class_names(labels, width, array=task.problem_type.modality == "array")
    if not class_names:
        raise ConfigError(
            f"head.class_names is missing: {task.data.split} dataframe has no '{label_column}' column to "
            "read class names from; list the model's classes in output order"
        )
    if width is not None and len(class_names) != width:
        raise ConfigError(
            f"head.class_names: model {model_name} output '{spec.name}' has {width} classes but "
            f"{len(class_names)} class names are known ({', '.join(class_names)}); list all {width} in output order"
        )
    if labels is not None:
        labels = _class_indices(labels, class_names, column=label_column, source=source.name)
    return class_names, labels


def _layout(configured: LabelLayout, label_columns: tuple[str, ...], width: int | None) -> LabelLayout:
    if configured is not LabelLayout.AUTO:
        if configured in (LabelLayout.BINARY, LabelLayout.CATEGORICAL) and len(label_columns) != 1:
            raise ConfigError(
                f"head.label_layout: {configured} takes exactly one label column (data.label_columns has "
                f"{len(label_columns)})"
            )
        if configured is LabelLayout.BINARY and width not in (1, 2, None):
            raise ConfigError(f"head.label_layout: binary needs a model output of width 1 or 2 (got {width})")
        return configured
    if len(label_columns) > 1:
        return LabelLayout.COLUMNS
    return LabelLayout.BINARY if width == 1 else LabelLayout.CATEGORICAL


def _default_class_names(labels: np.ndarray | None, width: int | None, *, array: bool) -> tuple[str, ...]:
    """Class names when `head.class_names` gives none: class ids 0..width-1 when every label is one
    (`y_test.npy` holds ids, and `10` must not sort before `2`), or an array model's ids when there are
    no labels; else the labels' names, sorted."""
    if labels is None:
        return tuple(str(index) for index in range(width)) if array and width else ()
    names = set(labels)
    if width and all(name.isdecimal() and str(int(name)) == name and int(name) < width for name in names):
        return tuple(str(index) for index in range(width))
    return tuple(sorted(names))


def _binary_labels(dataframe: pd.DataFrame, columns: tuple[str, ...], *, source) -> np.ndarray:
    labels = numeric_labels(dataframe, columns, source=source)
    bad_rows, bad_columns = np.nonzero((labels != 0) & (labels != 1))
    if bad_rows.size:
        row, column = int(bad_rows[0]), columns[int(bad_columns[0])]
        raise InputError(
            f"{source.name}: row {row}, label column '{column}': expected 0 or 1, got {dataframe[column].iloc[row]!r}; "
            "a column of class names needs one label column (label_layout: categorical)"
        )
    return labels.astype(np.int64)


def _class_indices(labels: np.ndarray, class_names: tuple[str, ...], *, column: str, source: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [row for row, value in enumerate(labels) if value not in index]
    if unknown:
        row = unknown[0]
        raise InputError(
            f"{source}: row {row}, label column '{column}': class {labels[row]!r} is not one of the model's classes "
            f"({', '.join(class_names)}); {len(unknown)} such row(s)"
        )
    return np.fromiter((index[value] for value in labels), dtype=np.int64, count=len(labels))


def _is_single_label(
    layout: LabelLayout, configured: Activation, producer: str | None, labels: np.ndarray | None, notes: list[str]
) -> bool:
    """Whether each row has exactly one class: always for categorical; for 0/1 columns, from the model or labels."""
    if layout is LabelLayout.CATEGORICAL:
        return True
    if layout is LabelLayout.BINARY:
        return False
    if configured in (Activation.SOFTMAX, Activation.SIGMOID):
        return configured is Activation.SOFTMAX
    if producer in _PROBABILITY_OPS:
        return producer == "Softmax"
    if labels is not None:
        return bool(np.all(labels.sum(axis=1) == 1))
    notes.append("label columns treated as one-hot (multi-class); set head.activation: sigmoid for multi-label")
    return True


def _activation(
    configured: Activation,
    layout: LabelLayout,
    spec: TensorSpec,
    width: int | None,
    single_label: bool,
    notes: list[str],
) -> Activation:
    if configured is not Activation.AUTO:
        return configured
    if spec.producer in _PROBABILITY_OPS:
        notes.append(f"output '{spec.name}' ends in {spec.producer}: used as probabilities")
        return Activation.NONE
    if layout is LabelLayout.BINARY:
        chosen = Activation.SIGMOID if width == 1 else Activation.SOFTMAX
    else:
        chosen = Activation.SOFTMAX if single_label else Activation.SIGMOID
    notes.append(f"output '{spec.name}' ends in {spec.producer or 'an unknown op'}: read as logits, {chosen} applied")
    return chosen
