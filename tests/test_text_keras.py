"""Text regression, token classification and span prediction from Keras `.h5` models, end to end.

The models are small seeded Keras 3 graphs taking int32 token ids of a fixed length (a functional
Embedding(mask_zero=True) + LSTM regressor, a Sequential Embedding + BiGRU softmax tagger with an
unnamed input, a functional BiGRU span model with two outputs `start_logits` / `end_logits`),
trained a few epochs on generated text over the Keras word index of the classification example,
saved with `model.save("x.h5")` and run through `predict.cli.main` (so the `.h5` is converted to
ONNX in a subprocess). The reference is Keras itself on token ids computed here, independently of
`predict.data`: Keras' `text_to_word_sequence` rules (lower-case, filter characters split words),
`<OOV>` = 1, `pad_sequences(padding="post", truncating="post")`.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predict.cli import main
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
WORD_INDEX = ROOT / "configs" / "models" / "reviews_word_index.json"
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
REGRESSION_LENGTH = 12
TAGGER_LENGTH = 12
SPAN_LENGTH = 16
TAGS = ("O", "B-ITEM", "I-ITEM")


def keras_ids(text: str, word_index: dict[str, int]) -> list[int]:
    """As Keras `Tokenizer(oov_token="<OOV>").texts_to_sequences([text])[0]`."""
    words = text.lower().translate(str.maketrans(KERAS_FILTERS, " " * len(KERAS_FILTERS))).split()
    return [word_index.get(word, 1) for word in words]


def padded(sequences: list[list[int]], length: int) -> np.ndarray:
    import keras

    return keras.utils.pad_sequences(sequences, maxlen=length, padding="post", truncating="post", dtype="int32")


def _words(word_index: dict[str, int]) -> list[str]:
    return [word for word in word_index if word != "<OOV>"]


def regression_rows(rng: np.random.Generator, words: list[str], count: int) -> tuple[list[str], np.ndarray]:
    """Random word strings; the target is the share of words from the first third of the vocabulary."""
    texts, targets = [], []
    for _ in range(count):
        chosen = list(rng.choice(words, size=int(rng.integers(2, REGRESSION_LENGTH + 1))))
        texts.append(" ".join(chosen))
        targets.append(sum(words.index(word) < len(words) // 3 for word in chosen) / len(chosen))
    return texts, np.asarray(targets, dtype=np.float32)


def tag_rows(
    rng: np.random.Generator, words: list[str], count: int, *, longest: int
) -> tuple[list[str], list[list[str]]]:
    """Random word strings tagged BIO: runs of words from the first third of the vocabulary are ITEMs."""
    items = set(words[: len(words) // 3])
    texts, tags = [], []
    for _ in range(count):
        chosen = list(rng.choice(words, size=int(rng.integers(1, longest + 1))))
        row = []
        for position, word in enumerate(chosen):
            if word not in items:
                row.append("O")
            else:
                row.append("I-ITEM" if position and chosen[position - 1] in items else "B-ITEM")
        texts.append(" ".join(chosen))
        tags.append(row)
    return texts, tags


def span_rows(rng: np.random.Generator, words: list[str], count: int, *, longest: int) -> list[tuple[str, str, str]]:
    """(question, context, answer): the question is one word of the context, the answer that word and the next."""
    rows = []
    for _ in range(count):
        chosen = [str(word) for word in rng.choice(words, size=int(rng.integers(3, longest + 1)), replace=False)]
        position = int(rng.integers(0, len(chosen) - 1))
        rows.append((chosen[position], " ".join(chosen), " ".join(chosen[position : position + 2])))
    return rows


@pytest.fixture(scope="module")
def keras_text_models(tmp_path_factory) -> dict[str, tuple[object, Path]]:
    """Seeded, briefly trained Keras models and their `.h5` files: regression, tagger, span."""
    pytest.importorskip("tensorflow")
    import keras

    folder = tmp_path_factory.mktemp("keras_text_models")
    word_index = json.loads(WORD_INDEX.read_text(encoding="utf-8"))
    vocabulary = max(word_index.values()) + 1
    words = _words(word_index)
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    models = {}

    texts, targets = regression_rows(rng, words, 256)
    inputs = keras.Input((REGRESSION_LENGTH,), dtype="int32", name="token_ids")
    # mask_zero: Keras 3 saves the mask as a `NotEqual` op node, which its own load_model cannot read unaided.
    hidden = keras.layers.Embedding(vocabulary, 16, mask_zero=True)(inputs)
    hidden = keras.layers.LSTM(16)(hidden)
    regressor = keras.Model(inputs, keras.layers.Dense(1, name="share")(hidden))
    regressor.compile(keras.optimizers.Adam(0.02), "mse")
    token_ids = padded([keras_ids(t, word_index) for t in texts], REGRESSION_LENGTH)
    regressor.fit(token_ids, targets, epochs=3, batch_size=32, verbose=0)
    regressor.save(folder / "regressor.h5")
    models["regression"] = (regressor, folder / "regressor.h5")

    texts, tags = tag_rows(rng, words, 256, longest=TAGGER_LENGTH)
    tag_ids = padded([[TAGS.index(tag) for tag in row] for row in tags], TAGGER_LENGTH)
    tagger = keras.Sequential(
        [
            keras.Input((TAGGER_LENGTH,), dtype="int32"),
            keras.layers.Embedding(vocabulary, 16),
            keras.layers.Bidirectional(keras.layers.GRU(16, return_sequences=True)),
            keras.layers.Dense(len(TAGS), activation="softmax"),
        ]
    )
    tagger.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    tagger.fit(
        padded([keras_ids(t, word_index) for t in texts], TAGGER_LENGTH), tag_ids, epochs=3, batch_size=32, verbose=0
    )
    tagger.save(folder / "tagger.h5")
    models["token_classification"] = (tagger, folder / "tagger.h5")

    rows = span_rows(rng, words, 256, longest=SPAN_LENGTH - 1)
    ids, starts, ends = [], [], []
    for question, context, answer in rows:
        context_ids = keras_ids(context, word_index)
        first = len(keras_ids(question, word_index)) + context.split().index(answer.split()[0])
        ids.append(keras_ids(question, word_index) + context_ids)
        starts.append(first)
        ends.append(first + len(answer.split()) - 1)
    inputs = keras.Input((SPAN_LENGTH,), dtype="int32", name="token_ids")
    hidden = keras.layers.Embedding(vocabulary, 16)(inputs)
    hidden = keras.layers.Bidirectional(keras.layers.GRU(16, return_sequences=True))(hidden)
    start = keras.layers.Reshape((SPAN_LENGTH,), name="start_logits")(keras.layers.Dense(1)(hidden))
    end = keras.layers.Reshape((SPAN_LENGTH,), name="end_logits")(keras.layers.Dense(1)(hidden))
    span = keras.Model(inputs, [start, end])
    span.compile(keras.optimizers.Adam(0.02), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    span.fit(padded(ids, SPAN_LENGTH), [np.asarray(starts), np.asarray(ends)], epochs=3, batch_size=32, verbose=0)
    span.save(folder / "span.h5")
    models["span_prediction"] = (span, folder / "span.h5")
    return models


def _run(tmp_path: Path, config: dict) -> tuple[pd.DataFrame, dict, dict]:
    path = write_config(tmp_path / "task.yaml", config)
    assert main(["--config", str(path), "--quiet"]) == 0
    out = tmp_path / "out"
    frame = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    with open(out / "validation_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    return frame, raw, json.loads((out / "validation_metrics.json").read_text())


def _config(tmp_path: Path, problem_type: str, model: Path, data: dict, *, max_length: int, **sections) -> dict:
    return {
        "problem_type": problem_type,
        "model": str(model),
        "data": {"dataframe": str(tmp_path / "valid.csv"), "split": "validation", **data},
        "preprocessing": {"tokenizer": str(WORD_INDEX), "max_length": max_length},
        "runtime": {"batch_size": 8, "num_workers": 0},
        "output": {"dir": str(tmp_path / "out")},
        **sections,
    }


def test_keras_text_regression(keras_text_models, tmp_path):
    model, h5 = keras_text_models["regression"]
    word_index = json.loads(WORD_INDEX.read_text(encoding="utf-8"))
    texts, targets = regression_rows(np.random.default_rng(1), _words(word_index), 20)
    # Keras' own splitting: case, punctuation, unknown words, no text and more words than max_length.
    texts += ["The PASTA, was... cold!", "zebra quokka the", "", " ".join(_words(word_index)[:30])]
    source = pd.DataFrame(
        {"id": [f"{i:03d}" for i in range(len(texts))], "text": texts, "share": [*targets, 0.5, 0.0, 0.0, 0.5]}
    )
    source.astype(str).to_csv(tmp_path / "valid.csv", index=False)
    data = {"text_column": "text", "label_columns": ["share"]}
    config = _config(tmp_path, "text_regression", h5, data, max_length=REGRESSION_LENGTH)
    frame, raw, metrics = _run(tmp_path, config)

    assert list(frame.columns) == ["id", "text", "share", "pred_share"]
    assert frame.id.tolist() == source.id.tolist()
    assert list(raw) == ["predictions", "labels", "text"]
    assert raw["predictions"].shape == (len(texts), 1) and list(raw["labels"]) == ["share"]
    assert {"MAE", "MSE", "RMSE", "R2"} <= set(metrics)
    expected = model.predict(padded([keras_ids(t, word_index) for t in texts], REGRESSION_LENGTH), verbose=0)
    assert np.ptp(expected) > 0.05  # trained: the values differ between rows
    np.testing.assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(frame.pred_share.astype(float), expected[:, 0], rtol=1e-4, atol=1e-5)


def test_keras_token_classification(keras_text_models, tmp_path):
    model, h5 = keras_text_models["token_classification"]
    word_index = json.loads(WORD_INDEX.read_text(encoding="utf-8"))
    texts, tags = tag_rows(np.random.default_rng(1), _words(word_index), 20, longest=TAGGER_LENGTH)
    # Unknown and upper-case words take one slot each; words past max_length get NaN and "O".
    texts += ["Zebra THE pasta", " ".join([texts[0]] * 3)]
    tags += [["O", "O", "O"], tags[0] * 3]
    source = pd.DataFrame(
        {"id": [f"{i:03d}" for i in range(len(texts))], "sentence": texts, "tags": [" ".join(t) for t in tags]}
    )
    source.to_csv(tmp_path / "valid.csv", index=False)
    config = _config(
        tmp_path,
        "text_token_classification",
        h5,
        {"text_column": "sentence", "label_columns": ["tags"]},
        max_length=TAGGER_LENGTH,
        head={"class_names": list(TAGS)},
    )
    frame, raw, metrics = _run(tmp_path, config)

    assert list(frame.columns) == ["id", "sentence", "tags", "pred_tags"]
    assert list(raw) == ["probabilities", "predictions", "labels", "sentence"]
    assert list(raw["labels"]) == list(TAGS) and "F1" in metrics
    expected = model.predict(padded([keras_ids(t, word_index) for t in texts], TAGGER_LENGTH), verbose=0)
    assert expected.argmax(-1).min() != expected.argmax(-1).max()  # trained: not one tag everywhere
    for row, text in enumerate(texts):
        count = len(text.split())
        probabilities = raw["probabilities"][row]
        assert probabilities.shape == (count, len(TAGS)) and len(raw["predictions"][row]) == count
        kept = min(count, TAGGER_LENGTH)
        # The graph ends in Softmax: its output is used as is, not softmaxed again.
        np.testing.assert_allclose(probabilities[:kept], expected[row, :kept], rtol=1e-4, atol=1e-5)
        assert np.isnan(probabilities[kept:]).all()
        predicted = [TAGS[i] for i in expected[row, :kept].argmax(-1)] + ["O"] * (count - kept)
        assert raw["predictions"][row] == predicted
        assert frame.pred_tags[row] == " ".join(predicted)


def test_keras_span_prediction(keras_text_models, tmp_path):
    model, h5 = keras_text_models["span_prediction"]
    word_index = json.loads(WORD_INDEX.read_text(encoding="utf-8"))
    rows = span_rows(np.random.default_rng(1), _words(word_index), 20, longest=SPAN_LENGTH - 1)
    # Punctuation and case inside the context; a context longer than one window (doc_stride windows).
    rows += [
        ("pasta", "The PASTA, was cold!", "PASTA, was"),
        ("museum", " ".join(_words(word_index)[:40]), "museum tour"),
    ]
    source = pd.DataFrame(rows, columns=["question", "context", "answer"])
    source.insert(0, "id", [f"{i:03d}" for i in range(len(rows))])
    source.to_csv(tmp_path / "valid.csv", index=False)
    max_answer_length = 4
    config = _config(
        tmp_path,
        "text_span_prediction",
        h5,
        {"question_column": "question", "context_column": "context", "label_columns": ["answer"]},
        max_length=SPAN_LENGTH,
        head={"number_of_predicted_answers": 2, "max_answer_length": max_answer_length},
    )
    config["preprocessing"]["doc_stride"] = 4
    frame, raw, metrics = _run(tmp_path, config)

    assert list(frame.columns) == [
        "id",
        "question",
        "context",
        "answer",
        "pred_answer",
        "pred_answer_top_1",
        "pred_answer_top_2",
    ]
    assert list(raw) == ["question", "context", "predictions", "predicted_answer_top_k"]
    assert {"Jaccard", "ExactMatch"} <= set(metrics)
    for context, best, answers in zip(raw["context"], raw["predictions"], raw["predicted_answer_top_k"]):
        assert len(answers) == 2 and best == answers[0] and all(answer in context for answer in answers)
    assert frame.pred_answer.tolist() == list(raw["predictions"])

    # Rows whose question and context fit one window: the best span of Keras' own logits.
    words_pattern = re.compile("[^" + re.escape(KERAS_FILTERS + " ") + "]+")
    for row, (question, context, _) in enumerate(rows):
        question_ids, context_ids = keras_ids(question, word_index), keras_ids(context, word_index)
        if len(question_ids) + len(context_ids) > SPAN_LENGTH:
            continue
        start, end = model.predict(padded([question_ids + context_ids], SPAN_LENGTH), verbose=0)
        first = len(question_ids)
        scores = {
            (i, j): start[0, first + i] + end[0, first + j]
            for i in range(len(context_ids))
            for j in range(i, min(i + max_answer_length, len(context_ids)))
        }
        i, j = max(scores, key=scores.get)
        spans = [match.span() for match in words_pattern.finditer(context)]
        assert raw["predictions"][row] == context[spans[i][0] : spans[j][1]], row
