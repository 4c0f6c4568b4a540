"""The pipeline and the exported graph on the same rows: the plan's loader, model and head on one side,
the graph on the loader's decoded rows (before normalisation) on the other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime

from predict.data.collate import Batch, average_chunks
from predict.errors import ConfigError, ConversionError, one_line
from predict.plan import Plan


@dataclass(frozen=True, kw_only=True)
class ScoredRows:
    """The first rows of a task, as both sides see them.

    Attributes:
        feeds: per batch, the graph's inputs (all a front end can give; `run_graph` picks what a graph takes).
        batches: the loader's batches (their `inputs` are the model's own inputs, for timing the plain model).
        predictions: the head's predictions, concatenated over batches and cut to `rows`.
        readable: bool[rows], False for rows the loader could not read (left out of comparisons).
    """

    feeds: list[dict[str, np.ndarray]]
    batches: list[Batch]
    predictions: dict[str, np.ndarray]
    readable: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.readable)


def score_rows(plan: Plan, front_end, rows: int) -> ScoredRows:
    """Decode the first `rows` rows batch by batch; run the plan's model and head on them, as the pipeline does."""
    dataset = plan.dataset()
    feeds, batches, pieces, readable = [], [], [], []
    taken = 0
    for index in range(len(dataset)):
        if taken >= rows:
            break
        batch, graph_feeds = front_end.feeds(dataset, index)
        outputs = average_chunks(plan.runner.run(batch.inputs), batch)
        pieces.append(plan.head.postprocess(outputs, batch))
        feeds.append(graph_feeds)
        batches.append(batch)
        bad = {row for row, _ in batch.errors}
        readable.extend(int(row) not in bad for row in batch.row_ids)
        taken += len(batch.row_ids)
    predictions = {key: _concatenate([piece[key] for piece in pieces])[:rows] for key in (pieces[0] if pieces else {})}
    return ScoredRows(
        feeds=feeds, batches=batches, predictions=predictions, readable=np.asarray(readable[:rows], dtype=bool)
    )


def graph_session(model: bytes | str, *, threads: int = 0) -> onnxruntime.InferenceSession:
    """A CPU onnxruntime session of an exported graph.

    Raises:
        ConfigError: onnxruntime cannot load it.
    """
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise ConfigError(f"onnxruntime cannot load the exported graph: {one_line(error)}") from None


def run_graph(session: onnxruntime.InferenceSession, scored: ScoredRows, head_export) -> dict[str, np.ndarray]:
    """The graph's outputs over every batch of `scored`, as the head export reads them per row
    (`graph_rows`), concatenated and cut to the rows."""
    names = [value.name for value in session.get_inputs()]
    output_names = [value.name for value in session.get_outputs()]
    pieces = []
    for feeds, batch in zip(scored.feeds, scored.batches):
        try:
            values = session.run(None, {name: feeds[name] for name in names})
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ConversionError(f"the exported graph fails on rows the pipeline scores: {one_line(error)}") from None
        outputs = dict(zip(output_names, values))
        pieces.append(head_export.graph_rows(outputs, batch))
    return {key: _concatenate([piece[key] for piece in pieces])[: scored.rows] for key in pieces[0]}


def readable_only(values: dict[str, np.ndarray], readable: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays' rows the loader could read."""
    return {key: value[readable] if len(value) == len(readable) else value for key, value in values.items()}


def _concatenate(pieces: list) -> np.ndarray:
    if isinstance(pieces[0], np.ndarray):
        return np.concatenate(pieces)
    joined = np.empty(sum(len(piece) for piece in pieces), dtype=object)
    joined[:] = [item for piece in pieces for item in piece]
    return joined
