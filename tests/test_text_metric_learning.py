"""Text metric learning end to end: the committed topics example and a torch embedder exported here."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose
from tokenizers import Tokenizer

from predict.cli import main
from predict.pipeline import run_task
from predict.task import load_config
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "text_metric_learning.yaml"
TOKENIZER = ROOT / "configs" / "models" / "topics_tokenizer.json"
NEIGHBOUR_COLUMNS = [f"top_{k}_similar_text" for k in (1, 2, 3)] + [f"top_{k}_cosine_similarity" for k in (1, 2, 3)]


def read_outputs(folder: Path, split: str = "validation"):
    csv = pd.read_csv(folder / f"{split}_predictions.csv", dtype=str, keep_default_na=False)
    with open(folder / f"{split}_raw_predictions.pkl", "rb") as handle:
        return csv, pickle.load(handle)


def brute_force_top_k(embeddings: np.ndarray, k: int) -> np.ndarray:
    """float64[N, k] descending cosine similarities to the other rows, from the full N x N matrix."""
    full = embeddings.astype(np.float64) @ embeddings.T.astype(np.float64)
    np.fill_diagonal(full, -np.inf)
    return -np.sort(-full, axis=1)[:, :k]


def mean_average_precision(labels: list[str], neighbours: np.ndarray) -> float:
    """AP@K written out row by row (the head's definition, see report.metrics), averaged over the
    rows whose label another row shares."""
    values = []
    for row, ranked in enumerate(neighbours):
        others = labels.count(labels[row]) - 1
        if others == 0:
            continue
        hits, total = 0, 0.0
        for rank, neighbour in enumerate(ranked, start=1):
            if labels[neighbour] == labels[row]:
                hits += 1
                total += hits / rank
        values.append(total / min(len(ranked), others))
    return float(np.mean(values))


def test_example_writes_the_text_contract(tmp_path):
    assert main(["--config", str(CONFIG), "--quiet", "--set", f"output.dir={tmp_path}"]) == 0
    csv, raw = read_outputs(tmp_path)
    source = pd.read_csv(load_config(CONFIG).data.dataframe, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(csv[source.columns], source)
    assert list(csv.columns) == list(source.columns) + NEIGHBOUR_COLUMNS
    assert list(raw) == ["embeddings", "cosine_similarities", "similar_texts", "text"]
    assert raw["embeddings"].shape == (150, 16) and raw["embeddings"].dtype == np.float32
    assert raw["similar_texts"].shape == (150, 10) and raw["cosine_similarities"].shape == (150, 10)
    assert list(raw["text"]) == list(source["text"])
    assert_allclose(np.linalg.norm(raw["embeddings"].astype(np.float64), axis=1), 1.0, rtol=1e-6)
    assert not (raw["similar_texts"] == np.arange(150)[:, None]).any()
    assert_allclose(raw["cosine_similarities"], brute_force_top_k(raw["embeddings"], 10), atol=1e-6)
    for k in (1, 2, 3):
        assert list(csv[f"top_{k}_similar_text"]) == list(source["text"].to_numpy()[raw["similar_texts"][:, k - 1]])
        assert_allclose(
            csv[f"top_{k}_cosine_similarity"].astype(float), raw["cosine_similarities"][:, k - 1], rtol=1e-6
        )
    metrics = json.loads((tmp_path / "validation_metrics.json").read_text())
    # The example model is trained (scripts/make_text_metric_example.py): same-topic sentences are neighbours.
    assert metrics["mAP"] == pytest.approx(
        mean_average_precision(list(source["topic"]), raw["similar_texts"]), rel=1e-12
    )
    assert metrics["mAP"] >= 0.9


class MeanPooledEmbedder(torch.nn.Module):
    """Token embeddings, a tanh layer, the mean over real tokens and a projection to 6 dimensions."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.tokens = torch.nn.Embedding(vocab_size, 12)
        self.hidden = torch.nn.Linear(12, 12)
        self.projection = torch.nn.Linear(12, 6)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.hidden(self.tokens(input_ids)))
        mask = attention_mask.unsqueeze(-1).float()
        return self.projection((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))


def test_text_embeddings_are_the_torch_models_own(tmp_path):
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    module = MeanPooledEmbedder(tokenizer.get_vocab_size()).eval()
    model = tmp_path / "embedder.onnx"
    example = (torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))
    torch.onnx.export(
        module,
        example,
        str(model),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "embedding": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    texts = [
        "The storm flooded the valley.",
        "Heavy rain froze the lake again!",
        "Our flight was delayed at the gate.",
        "The hotel checked in early during our holiday abroad, and the ferry crossed the border at night.",
        "The striker scored a late goal.",
        "",
        "The coach trained on the pitch before the championship and everyone talked about it.",
    ]
    frame = pd.DataFrame(
        {"text": texts, "topic": ["weather", "weather", "travel", "travel", "sports", "none", "sports"]}
    )
    frame.to_csv(tmp_path / "texts.csv", index=False)
    config = {
        "problem_type": "text_metric_learning",
        "model": str(model),
        "data": {"dataframe": str(tmp_path / "texts.csv"), "text_column": "text", "label_columns": ["topic"]},
        "preprocessing": {"tokenizer": str(TOKENIZER), "max_length": 12},  # the long rows are truncated
        "head": {"top_k_similar": 50},
        "runtime": {"batch_size": 3, "num_workers": 0},  # batches padded to different widths
        "output": {"dir": str(tmp_path / "out")},
    }
    summary = run_task(load_config(write_config(tmp_path / "task.yaml", config)), progress=False)
    assert "head.top_k_similar 50 capped at 6: the split has 7 row(s)" in summary.notes
    csv, raw = read_outputs(tmp_path / "out")

    # Each row alone, unpadded, straight from the tokenizers library: padding must not leak in.
    tokenizer.enable_truncation(12)
    expected = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            expected.append(module(ids, torch.ones_like(ids))[0].numpy())
    expected = np.stack(expected)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert_allclose(raw["embeddings"], expected, rtol=1e-4, atol=1e-5)
    assert_allclose(raw["cosine_similarities"], brute_force_top_k(expected, 6), atol=1e-5)
    assert list(raw) == ["embeddings", "cosine_similarities", "similar_texts", "text"]
    assert list(csv.columns) == ["text", "topic", *NEIGHBOUR_COLUMNS]
    assert list(csv["top_1_similar_text"]) == [texts[index] for index in raw["similar_texts"][:, 0]]
    # "none" has no other row: it is left out of mAP, with a note.
    assert summary.metrics["mAP"] == pytest.approx(
        mean_average_precision(list(frame.topic), raw["similar_texts"]), rel=1e-12
    )
    assert "mAP: 1 of 7 row(s) have a label no other row shares and are left out" in summary.notes


def test_test_split_without_labels_has_no_metrics(tmp_path):
    frame = pd.read_csv(ROOT / "configs" / "data" / "topics" / "valid.csv", dtype=str).drop(columns="topic").head(20)
    frame.to_csv(tmp_path / "test.csv", index=False)
    overrides = [
        f"output.dir={tmp_path / 'out'}",
        "data.split=test",
        f"data.dataframe={tmp_path / 'test.csv'}",
        "runtime.num_workers=0",
    ]
    assert (
        main(["--config", str(CONFIG), "--quiet", *[argument for value in overrides for argument in ("--set", value)]])
        == 0
    )
    csv, raw = read_outputs(tmp_path / "out", "test")
    assert list(csv.columns) == ["id", "text", *NEIGHBOUR_COLUMNS]
    assert raw["similar_texts"].shape == (20, 10)
    assert not (tmp_path / "out" / "test_metrics.json").exists()  # no label column, no mAP
