"""Metric learning head (image and text metric learning): embeddings and each row's most similar rows.

The model outputs one embedding per row, float[batch, embedding_size]. The head L2-normalises it
(`postprocess`), then, once every row is embedded, finds for each row the `top_k_similar` most
cosine-similar *other* rows of the same split (`finalize`, blocked GEMM with a running top-k, see
`predict.heads._ops.cosine_topk`: the N x N matrix is never held). K = `head.top_k_similar`
(default 50), capped at n - 1. Ties rank the lower row index first.

Writes (FORMATS.md "Metric learning"), with `{modality}` = `image` or `text`:
- pkl: `embeddings` float32 (n, d), L2-normalised (so a dot product is the cosine similarity);
  `cosine_similarities` float32 (n, K), each row descending; `similar_images` | `similar_texts`
  int64 (n, K), row indices into this split, never the row itself; `{input_column}` (n,).
- CSV: every input column, then `top_{k}_similar_{modality}` (the `{input_column}` value of the
  k-th most similar row) for k = 1..3, then `top_{k}_cosine_similarity` for k = 1..3. When K < 3
  the missing neighbours' cells are empty.
Metric: `mAP` at K against the one label column (same label = relevant), defined in
`predict.report.metrics.retrieval_mean_average_precision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.dataframe import text_labels
from predict.errors import ConfigError, InputError
from predict.heads import _ops
from predict.heads.base import Head, RowsByBlock, column_values, select_output
from predict.report.metrics import retrieval_mean_average_precision
from predict.runners.base import TensorSpec

CSV_NEIGHBOURS = 3  # the source names top_{k}_* columns for k = 1..3


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of metric learning."""

    top_k_similar: int = 50  # neighbours per row in the pkl; capped at rows - 1
    output_name: str | None = None  # which model output holds the embeddings, when it has several

    def check(self) -> list[str]:
        """Range problems, one message per key (collected by `predict.config.load_config`)."""
        if self.top_k_similar < 1:
            return [f"head.top_k_similar must be >= 1 (got {self.top_k_similar})"]
        return []


class MetricLearningHead(Head):
    """L2-normalised embeddings, the top-K most similar other rows, and retrieval mAP."""

    Config = Config
    split_level = True

    def __init__(
        self,
        *,
        output: str,
        modality: str,
        top_k: int,
        input_column: str,
        names: pd.Series,
        labels: np.ndarray | None,
        notes: list[str],
    ) -> None:
        self.output = output
        self.modality = modality
        self.top_k = top_k
        self.input_column = input_column
        self.names = names  # the input column as read: each neighbour's name is made as the CSV is written
        self.labels = labels  # int codes: equal where the labels are equal, all the metric compares
        self.notes = notes

    @property
    def similar_key(self) -> str:
        """`similar_images` or `similar_texts`: the pkl key of the neighbour indices."""
        return f"similar_{self.modality}s"

    @classmethod
    def build(cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame) -> MetricLearningHead:
        config: Config = task.head
        model_name = task.model.name
        spec = select_output(outputs, config.output_name, model_name=model_name)
        if len(spec.shape) != 2 or spec.shape[1] == 1:
            shape = ", ".join("?" if dim is None else str(dim) for dim in spec.shape)
            raise ConfigError(
                f"model {model_name}: output '{spec.name}' has shape ({shape}); metric learning needs "
                "embeddings of shape (batch, embedding_size) with embedding_size >= 2"
            )
        label_columns = task.data.label_columns
        if len(label_columns) != 1:
            raise ConfigError(
                f"data.label_columns: metric learning takes one label column (rows with the same label are "
                f"relevant to each other), got {len(label_columns)}: {list(label_columns)}"
            )
        labels = None
        if label_columns[0] in dataframe.columns:
            # Codes, not each row's label string: 6 MB fewer held from start to end at 100,000 rows (issue 18).
            labels = pd.factorize(text_labels(dataframe, label_columns[0], source=task.data.dataframe))[0]
        notes: list[str] = []
        top_k = min(config.top_k_similar, len(dataframe) - 1)
        if top_k < config.top_k_similar:
            notes.append(
                f"head.top_k_similar {config.top_k_similar} capped at {top_k}: the split has {len(dataframe)} row(s)"
            )
        return cls(
            output=spec.name,
            modality=task.problem_type.modality,
            top_k=top_k,
            input_column=task.input_column,
            names=dataframe[task.input_column],
            labels=labels,
            notes=notes,
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        raw = np.asarray(outputs[self.output])
        embeddings = raw.reshape(len(raw), -1)
        bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
        if bad.size:
            # NaN has no place in a ranking: every similarity with it would be NaN.
            raise InputError(
                f"row {int(batch.row_ids[bad[0]])}: the model's embedding '{self.output}' holds NaN or inf "
                f"({bad.size} such row(s) in this batch)"
            )
        return {"embeddings": _ops.l2_normalize(embeddings)}

    def finalize(self, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embeddings = predictions["embeddings"]
        similarities, indices = _ops.cosine_topk(embeddings, self.top_k)
        return {"embeddings": embeddings, "cosine_similarities": similarities, self.similar_key: indices}

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        similarities, indices = predictions["cosine_similarities"], predictions[self.similar_key]
        rows = len(indices)
        names: dict[str, Any] = {}
        scores: dict[str, Any] = {}
        for j in range(CSV_NEIGHBOURS):
            if j < self.top_k:
                names[f"top_{j + 1}_similar_{self.modality}"] = _NeighbourNames(self.names, indices[:, j])
                scores[f"top_{j + 1}_cosine_similarity"] = similarities[:, j]
            else:  # fewer neighbours than columns: empty cells keep the file's columns fixed
                names[f"top_{j + 1}_similar_{self.modality}"] = np.full(rows, "", dtype=object)
                scores[f"top_{j + 1}_cosine_similarity"] = np.full(rows, np.nan, dtype=np.float32)
        return {**names, **scores}

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        return {
            "embeddings": predictions["embeddings"],
            "cosine_similarities": predictions["cosine_similarities"],
            self.similar_key: predictions[self.similar_key],
            self.input_column: column_values(dataframe, self.input_column),
        }

    def row_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        """The embeddings: neighbours are a split-level step (`finalize`)."""
        return {
            "embeddings": predictions["embeddings"],
            self.input_column: column_values(dataframe, self.input_column),
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        return retrieval_mean_average_precision(self.labels, predictions[self.similar_key], notes=self.notes)


class _NeighbourNames(RowsByBlock):
    """`top_{k}_similar_{modality}`: the input-column value of each row's k-th neighbour, made a block of rows at
    a time from the column as read (its 100,000 strings, all made at once, were 12.6 MB; issue 18)."""

    def __init__(self, names: pd.Series, neighbours: np.ndarray) -> None:
        self.names = names
        self.neighbours = neighbours  # int[n]: the k-th neighbour's row

    def __len__(self) -> int:
        return len(self.neighbours)

    def block(self, start: int, stop: int) -> list:
        return self.names.take(self.neighbours[start:stop]).tolist()
