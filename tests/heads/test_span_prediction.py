"""Span prediction head on hand-made windows of start/end logits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predict.data.collate import Batch
from predict.data.context import WindowContext
from predict.errors import ConfigError
from predict.heads.span_prediction import SpanPredictionHead
from predict.runners.base import TensorSpec
from predict.task import load_config
from tests.conftest import write_config

CONTEXT = "Ann lives in New York now"
# Token character offsets: [CLS] q [SEP] | Ann lives in New York now | [SEP]; -1 outside the context.
OFFSETS = [(-1, -1), (-1, -1), (-1, -1), (0, 3), (4, 9), (10, 12), (13, 16), (17, 21), (22, 25), (-1, -1)]


def _head(tmp_path, outputs=("start_logits", "end_logits"), **head):
    (tmp_path / "tokenizer.json").write_text("{}")
    frame = pd.DataFrame({"question": ["Where?", "Who?"], "context": [CONTEXT, "x"], "answer": ["New York", ""]})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "model.onnx").write_bytes(b"")
    config = write_config(
        tmp_path / "task.yaml",
        {
            "problem_type": "text_span_prediction",
            "model": "model.onnx",
            "data": {
                "dataframe": "rows.csv",
                "question_column": "question",
                "context_column": "context",
                "label_columns": ["answer"],
            },
            "preprocessing": {"tokenizer": "tokenizer.json"},
            "head": head,
        },
    )
    specs = tuple(TensorSpec(name=name, shape=(None, None), dtype=np.dtype(np.float32)) for name in outputs)
    return SpanPredictionHead.build(load_config(config), outputs=specs, dataframe=frame), frame


def test_best_spans_across_windows_are_exact_substrings(tmp_path):
    head, frame = _head(tmp_path, number_of_predicted_answers=3, max_answer_length=3)
    start = np.full((3, 10), -5.0, dtype=np.float32)
    end = np.full((3, 10), -5.0, dtype=np.float32)
    start[0, 6], end[0, 7] = 4.0, 4.0  # window 0 of row 0: "New York", score 8
    start[1, 6], end[1, 6] = 5.0, 2.0  # window 1 of row 0: "New", score 7
    start[1, 0], end[1, 0] = 50.0, 50.0  # [CLS] is outside the context: never an answer
    start[1, 8], end[1, 3] = 30.0, 30.0  # end before start: invalid, and each alone scores low
    start[1, 3], end[1, 8] = -100.0, -100.0
    offsets = np.array([OFFSETS, OFFSETS, [(-1, -1)] * 10], dtype=np.int32)  # row 1: no context token at all
    context = WindowContext(
        offsets=offsets,
        window_rows=np.array([0, 0, 1]),
        contexts=np.array([CONTEXT, "x"], dtype=object),
    )
    predictions = head.postprocess({"start_logits": start, "end_logits": end}, Batch(np.arange(2), {}, [], context))
    assert predictions["answer_spans"].dtype == np.int32
    assert predictions["answer_spans"][1].tolist() == [[0, 0]] * 3  # no valid span: the empty answer
    texts = head.answer_texts(predictions, frame)
    assert list(texts["predictions"]) == ["New York", ""]
    assert texts["top_k"][0][:2] == ["New York", "New"]
    assert all(answer in CONTEXT for answer in texts["top_k"][0])
    assert texts["top_k"][1] == ["", "", ""]
    columns = head.prediction_columns(texts)
    assert list(columns) == ["pred_answer", "pred_answer_top_1", "pred_answer_top_2", "pred_answer_top_3"]
    assert list(columns["pred_answer_top_2"]) == ["New", ""]
    table, csv_columns, blank = head.csv_table(frame, predictions, valid=np.ones(2, dtype=bool))
    assert table is frame and list(csv_columns["pred_answer"]) == ["New York", ""] and not blank.any()
    assert head.metrics(predictions) == {"Jaccard": 1.0, "ExactMatch": 1.0}
    raw = head.raw_predictions(predictions, frame)
    assert list(raw) == ["question", "context", "predictions", "predicted_answer_top_k"]
    assert raw["predicted_answer_top_k"][0][0] == "New York"
    served = head.row_predictions(predictions, frame)
    assert served["predictions"].dtype == object and served["predictions"].tolist() == ["New York", ""]
    assert served["predicted_answer_top_k"][1] == ["", "", ""]


def test_metrics_are_means_of_the_rows_scores(tmp_path):
    head, frame = _head(tmp_path, number_of_predicted_answers=1, max_answer_length=3)
    start = np.full((2, 10), -5.0, dtype=np.float32)
    end = np.full((2, 10), -5.0, dtype=np.float32)
    start[0, 7], end[0, 7] = 4.0, 4.0  # row 0: "York" against "New York": Jaccard 1/2, no exact match
    offsets = np.array([OFFSETS, [(-1, -1)] * 10], dtype=np.int32)  # row 1: "" against "": 1 and a match
    context = WindowContext(offsets=offsets, window_rows=np.array([0, 1]), contexts=frame["context"].to_numpy())
    predictions = head.postprocess({"start_logits": start, "end_logits": end}, Batch(np.arange(2), {}, [], context))
    assert predictions["jaccard"].tolist() == [0.5, 1.0]
    assert predictions["exact_match"].tolist() == [False, True]
    assert head.metrics(predictions) == {"Jaccard": 0.75, "ExactMatch": 0.5}
    kept = np.array([True, False])
    assert head.restricted_to(kept).metrics({key: value[kept] for key, value in predictions.items()}) == {
        "Jaccard": 0.5,
        "ExactMatch": 0.0,
    }


def test_max_answer_length_limits_spans(tmp_path):
    head, _ = _head(tmp_path, max_answer_length=1)
    start = np.zeros((1, 10), dtype=np.float32)
    end = np.zeros((1, 10), dtype=np.float32)
    start[0, 6], end[0, 7] = 9.0, 9.0
    context = WindowContext(
        offsets=np.array([OFFSETS], dtype=np.int32),
        window_rows=np.array([0]),
        contexts=np.array([CONTEXT], dtype=object),
    )
    predictions = head.postprocess({"start_logits": start, "end_logits": end}, Batch(np.arange(1), {}, [], context))
    first, last = predictions["answer_spans"][0, 0]
    assert len(CONTEXT[first:last].split()) == 1


def test_output_names_must_be_found(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"head.start_output is missing: model model.onnx outputs \(a, b\) have 0 name\(s\) containing 'start'",
    ):
        _head(tmp_path, outputs=("a", "b"))
    with pytest.raises(ConfigError, match=r"head.end_output: model model.onnx has no output 'stop'"):
        _head(tmp_path, end_output="stop")
    with pytest.raises(ConfigError, match=r"head.max_answer_length must be >= 1 \(got 0\)"):
        _head(tmp_path, max_answer_length=0)


@pytest.mark.parametrize(("york_best", "expected"), [(3.0, ["Ann", "York"]), (3.5, ["York", "Ann"])])
def test_a_span_scores_its_best_window_and_ties_keep_the_first_seen(tmp_path, york_best, expected):
    head, _ = _head(tmp_path, number_of_predicted_answers=2, max_answer_length=3)
    start = np.full((2, 10), -5.0, dtype=np.float32)
    end = np.full((2, 10), -5.0, dtype=np.float32)
    start[0, 3], end[0, 3] = 3.0, 3.0  # window 0: "Ann", 6, seen first
    start[0, 7], end[0, 7] = 1.0, 1.0  # window 0: "York", 2
    start[1, 7], end[1, 7] = york_best, york_best  # window 1: "York" again, 6 (a tie with "Ann") or 7
    context = WindowContext(
        offsets=np.array([OFFSETS, OFFSETS], dtype=np.int32),
        window_rows=np.array([0, 0]),
        contexts=np.array([CONTEXT], dtype=object),
    )
    predictions = head.postprocess({"start_logits": start, "end_logits": end}, Batch(np.arange(1), {}, [], context))
    assert [CONTEXT[first:last] for first, last in predictions["answer_spans"][0]] == expected
