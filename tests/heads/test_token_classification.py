"""Token classification head on hand-made sub-token scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predict.data.collate import Batch
from predict.data.context import WordContext
from predict.errors import InputError
from predict.heads.token_classification import TokenClassificationHead
from predict.report.text_metrics import entity_f1
from predict.runners.base import TensorSpec
from predict.task import load_config
from tests.conftest import write_config

TAGS = ("O", "B-PER", "I-PER")


def _head(tmp_path, dataframe: pd.DataFrame, **head):
    (tmp_path / "tokenizer.json").write_text("{}")
    csv = tmp_path / "rows.csv"
    dataframe.to_csv(csv, index=False)
    (tmp_path / "model.onnx").write_bytes(b"")
    config = write_config(
        tmp_path / "task.yaml",
        {
            "problem_type": "text_token_classification",
            "model": "model.onnx",
            "data": {"dataframe": "rows.csv", "text_column": "text", "label_columns": ["tags"]},
            "preprocessing": {"tokenizer": "tokenizer.json"},
            "head": head,
        },
    )
    task = load_config(config)
    outputs = (TensorSpec(name="logits", shape=(None, None, 3), dtype=np.dtype(np.float32), producer="Add"),)
    return TokenClassificationHead.build(
        task, outputs=outputs, dataframe=pd.read_csv(csv, dtype=str, keep_default_na=False)
    )


def test_words_take_their_first_sub_token_and_cut_words_get_the_overflow_tag(tmp_path):
    frame = pd.DataFrame({"text": ["Ann Lee ran", "", "Bo"], "tags": ["B-PER I-PER O", "", "B-PER"]})
    head = _head(tmp_path, frame, class_names=list(TAGS))
    logits = np.zeros((3, 5, 3), dtype=np.float32)
    logits[0, 1] = [0, 9, 0]  # word 0, first sub-token: B-PER
    logits[0, 2] = [9, 0, 0]  # word 0, second sub-token: ignored
    logits[0, 3] = [0, 0, 9]  # word 1: I-PER; word 2 was cut off by max_length
    logits[2, 1] = [0, 9, 0]
    word_ids = np.array([[-1, 0, 0, 1, -1], [-1, -1, -1, -1, -1], [-1, 0, -1, -1, -1]], dtype=np.int32)
    context = WordContext(word_ids=word_ids, word_counts=np.array([3, 0, 1], dtype=np.int32))
    batch = Batch(np.arange(3), {}, [], context)
    predictions = head.finalize(head.postprocess({"logits": logits}, batch))
    # Tag indices per row (the last index is the overflow tag), the tags made from them when read.
    assert [ids.tolist() for ids in predictions["tag_ids"]] == [[1, 2, 3], [], [1]]
    assert list(head.predicted_tags(predictions)) == [["B-PER", "I-PER", "O"], [], ["B-PER"]]
    first = predictions["probabilities"][0]
    assert first.shape == (3, 3) and np.isnan(first[2]).all()
    np.testing.assert_allclose(first[:2].sum(axis=1), 1.0, rtol=1e-6)
    assert predictions["probabilities"][1].shape == (0, 3)
    assert "1 row(s) have more tokens than max_length" in head.notes[-1]
    assert head.prediction_columns(predictions) == {"pred_tags": ["B-PER I-PER O", "", "B-PER"]}
    assert head.metrics(predictions)["F1"] == pytest.approx(1.0)
    raw = head.raw_predictions(predictions, frame)
    assert list(raw) == ["probabilities", "predictions", "labels", "text"] and isinstance(raw["probabilities"], list)


def test_tag_count_must_match_word_count(tmp_path):
    frame = pd.DataFrame({"text": ["Ann Lee", "Bo ran"], "tags": ["B-PER I-PER", "B-PER"]})
    with pytest.raises(InputError, match=r"row 1, label column 'tags': 1 tag\(s\) for 2 word\(s\) in 'text'"):
        _head(tmp_path, frame)


def test_unknown_tag_is_named(tmp_path):
    frame = pd.DataFrame({"text": ["Ann"], "tags": ["B-LOC"]})
    with pytest.raises(InputError, match=r"row 0, label column 'tags': tag 'B-LOC' is not one of the model's tags"):
        _head(tmp_path, frame, class_names=list(TAGS))


def test_label_tags_stay_in_the_dataframe_until_the_metrics_split_them(tmp_path):
    frame = pd.DataFrame({"text": ["Ann Lee ran", "Bo ran", "Cy"], "tags": ["B-PER I-PER O", "B-PER O", "B-PER"]})
    head = _head(tmp_path, frame, class_names=list(TAGS))
    # The label column itself: lists of tags for every row, held all run, were 17 MB at 100,000 rows (issue 18).
    assert list(head.labels) == ["B-PER I-PER O", "B-PER O", "B-PER"]
    predicted = np.empty(3, dtype=object)
    predicted[:] = [np.array(ids, dtype=np.int32) for ids in ([1, 2, 0], [0, 0], [1])]  # indices into TAGS
    truth = [["B-PER", "I-PER", "O"], ["B-PER", "O"], ["B-PER"]]
    tags = [["B-PER", "I-PER", "O"], ["O", "O"], ["B-PER"]]
    assert head.metrics({"tag_ids": predicted}) == entity_f1(truth, tags)
    assert head.metrics({"tag_ids": predicted})["Recall"] == pytest.approx(2 / 3)
    kept = np.array([True, False, True])
    assert head.restricted_to(kept).metrics({"tag_ids": predicted[kept]})["F1"] == 1.0
