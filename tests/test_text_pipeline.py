"""Text problem types end to end: the committed examples, a torch-exported encoder, and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from predict.cli import main
from predict.data import dataframe as dataframe_module
from predict.data.dataframe import read_dataframe
from predict.data.spilled import SpilledTexts
from predict.data.text import text_inputs_from
from predict.errors import ConfigError
from predict.pipeline import run_task
from predict.report.text_metrics import entity_f1
from predict.runners.base import TensorSpec
from predict.task import load_config
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "configs" / "models" / "text_tokenizer.json"

# (config, pkl keys, pred columns, metric, lowest acceptable value); the example models are trained
# (scripts/make_text_examples.py), so their metrics must be far from chance.
EXAMPLES = [
    (
        "text_classification",
        ["predictions", "labels", "review"],
        ["pred_sentiment_negative", "pred_sentiment"],
        "Accuracy",
        0.9,
    ),
    ("text_regression", ["predictions", "labels", "review"], ["pred_rating"], "R2", 0.8),
    ("text_token_classification", ["probabilities", "predictions", "labels", "sentence"], ["pred_tags"], "F1", 0.85),
    (
        "text_span_prediction",
        ["question", "context", "predictions", "predicted_answer_top_k"],
        ["pred_answer", "pred_answer_top_1", "pred_answer_top_3"],
        "Jaccard",
        0.85,
    ),
]


@pytest.mark.parametrize(
    ("name", "keys", "columns", "metric", "lowest"), EXAMPLES, ids=[example[0] for example in EXAMPLES]
)
def test_text_example_writes_the_contract(name, keys, columns, metric, lowest, tmp_path):
    config = ROOT / "configs" / f"{name}.yaml"
    assert main(["--config", str(config), "--quiet", "--set", f"output.dir={tmp_path}"]) == 0
    frame = pd.read_csv(tmp_path / "validation_predictions.csv", dtype=str, keep_default_na=False)
    source = pd.read_csv(load_config(config).data.dataframe, dtype=str, keep_default_na=False)
    assert list(frame.columns[: len(source.columns)]) == list(source.columns)
    pd.testing.assert_frame_equal(frame[source.columns], source)
    assert set(columns) <= set(frame.columns)
    with open(tmp_path / "validation_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    assert list(raw) == keys
    assert all(len(raw[key]) == len(source) for key in keys if key != "labels")
    metrics = json.loads((tmp_path / "validation_metrics.json").read_text())
    assert metrics[metric] >= lowest
    if name == "text_span_prediction":
        for context, answers in zip(raw["context"], raw["predicted_answer_top_k"]):
            assert len(answers) == 3 and all(answer in context for answer in answers)
    if name == "text_token_classification":
        for text, tags, probabilities in zip(raw["sentence"], raw["predictions"], raw["probabilities"]):
            assert len(tags) == len(text.split()) == len(probabilities)


def test_token_classification_files_are_the_same_when_its_rows_come_back_from_checkpoint_chunks(tmp_path):
    # Chunks of 4 rows: the per-word probabilities of every complete chunk are read back from its file
    # (writers.checkpoint.StoredRows) for the CSV, the metrics and the pkl, the last rows from memory.
    config = str(ROOT / "configs" / "text_token_classification.yaml")
    for name, chunk_rows in (("whole", 4096), ("chunked", 4)):
        settings = ["--set", f"output.dir={tmp_path / name}", "--set", f"output.checkpoint_rows={chunk_rows}"]
        settings += ["--set", "output.write_npz=true"]
        assert main(["--config", config, "--quiet", "--set", "runtime.batch_size=2", *settings]) == 0
    for file in ("validation_predictions.csv", "validation_metrics.json", "validation_raw_predictions.npz"):
        assert (tmp_path / "chunked" / file).read_bytes() == (tmp_path / "whole" / file).read_bytes()
    with (
        open(tmp_path / "whole" / "validation_raw_predictions.pkl", "rb") as whole,
        open(tmp_path / "chunked" / "validation_raw_predictions.pkl", "rb") as chunked,
    ):
        expected, got = pickle.load(whole), pickle.load(chunked)
    assert list(got) == list(expected) and type(got["probabilities"]) is list
    assert len(got["probabilities"]) == len(expected["probabilities"]) > 8
    for written, scored in zip(got["probabilities"], expected["probabilities"]):
        assert type(written) is np.ndarray and written.dtype == scored.dtype == np.float32
        np.testing.assert_array_equal(written, scored)
    assert got["predictions"].tolist() == expected["predictions"].tolist()
    assert not (tmp_path / "chunked" / ".validation.partial").exists()


def test_token_classification_metrics_leave_out_a_row_not_read_whether_its_chunk_is_on_disk_or_not(tmp_path):
    # A Parquet cell that is not text: that row is not read, and the metrics are those of the others, from
    # tag indices read back from chunk files (writers.checkpoint.KeptRows) or kept in memory.
    config = load_config(ROOT / "configs" / "text_token_classification.yaml")
    frame = pd.read_csv(config.data.dataframe, dtype=str, keep_default_na=False)
    frame[config.input_column] = frame[config.input_column].astype(object)
    frame.loc[3, config.input_column], frame.loc[3, "tags"] = None, ""
    frame.to_parquet(tmp_path / "rows.parquet")
    for name, chunk_rows in (("whole", 4096), ("chunked", 4)):
        settings = ["--set", f"output.dir={tmp_path / name}", "--set", f"output.checkpoint_rows={chunk_rows}"]
        settings += ["--set", f"data.dataframe={tmp_path / 'rows.parquet'}", "--set", "data.on_error=skip"]
        settings += ["--set", "runtime.batch_size=2"]
        assert main(["--config", str(ROOT / "configs" / "text_token_classification.yaml"), "--quiet", *settings]) == 0
    metrics = (tmp_path / "whole" / "validation_metrics.json").read_bytes()
    assert (tmp_path / "chunked" / "validation_metrics.json").read_bytes() == metrics
    with open(tmp_path / "chunked" / "validation_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    kept = [row for row in range(len(frame)) if row != 3]
    truth = [frame.loc[row, "tags"].split() for row in kept]
    assert json.loads(metrics) == pytest.approx(entity_f1(truth, [raw["predictions"][row] for row in kept]))


FILLER = " ".join(["Nothing else happened that week."] * 12)
# Per example: each column lengthened past SPILL_MIN_CHARS characters on average, by (text, words added).
LONG_COLUMNS = {
    "text_span_prediction": {"context": FILLER},
    "text_classification": {"review": FILLER},
    "text_sequence_to_sequence": {"english": FILLER, "fictish": FILLER},  # the BLEU references too
    "text_metric_learning": {"text": FILLER},
    "text_token_classification": {"sentence": " ".join(["word"] * 140), "tags": " ".join(["O"] * 140)},
}


@pytest.mark.parametrize("name", list(LONG_COLUMNS))
def test_files_are_the_same_with_long_text_columns_kept_on_disk(name, tmp_path, monkeypatch):
    # Columns averaging over SPILL_MIN_CHARS characters are read from a temporary file (predict.data.spilled):
    # by the loader (in forked workers too: span prediction), the head's labels, the CSV writer and the pkl
    # writer. The files must be byte for byte those of the same run with the columns in memory.
    config = str(ROOT / "configs" / f"{name}.yaml")
    frame = pd.read_csv(load_config(config).data.dataframe, dtype=str, keep_default_na=False)
    for column, filler in LONG_COLUMNS[name].items():
        frame[column] = [f"{text} {filler}" for text in frame[column]]
    frame.to_csv(tmp_path / "long.csv", index=False)
    read = read_dataframe(tmp_path / "long.csv")
    assert all(isinstance(read[column].array, SpilledTexts) for column in LONG_COLUMNS[name])
    common = ["--config", config, "--quiet", "--set", f"data.dataframe={tmp_path / 'long.csv'}"]
    common += ["--set", "runtime.batch_size=16"]
    runs = (("disk", 0), ("disk-workers", 2)) if name == "text_span_prediction" else (("disk", 0),)
    for folder, workers in runs:
        assert (
            main([*common, "--set", f"output.dir={tmp_path / folder}", "--set", f"runtime.num_workers={workers}"]) == 0
        )
    monkeypatch.setattr(dataframe_module, "SPILL_MIN_CHARS", 10**9)
    assert not any(isinstance(read_dataframe(tmp_path / "long.csv")[column].array, SpilledTexts) for column in frame)
    assert main([*common, "--set", f"output.dir={tmp_path / 'memory'}", "--set", "runtime.num_workers=0"]) == 0
    files = ["validation_predictions.csv", "validation_raw_predictions.pkl", "validation_metrics.json"]
    for file in files:
        expected = (tmp_path / "memory" / file).read_bytes()
        for folder, _ in runs:
            assert (tmp_path / folder / file).read_bytes() == expected, (folder, file)
    written = pd.read_csv(tmp_path / "disk" / files[0], dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(written[frame.columns], frame)


class TinyTextRegressor(torch.nn.Module):
    """Masked mean of token embeddings through a linear layer: padding must not change the result."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(vocab_size, 8)
        self.linear = torch.nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.linear(pooled)


@pytest.fixture(scope="module")
def text_regressor(tmp_path_factory):
    from tokenizers import Tokenizer

    vocab_size = Tokenizer.from_file(str(TOKENIZER)).get_vocab_size()
    module = TinyTextRegressor(vocab_size).eval()
    path = tmp_path_factory.mktemp("text_models") / "regressor.onnx"
    ids = torch.ones(2, 5, dtype=torch.int64)
    torch.onnx.export(
        module,
        (ids, ids),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["values"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "values": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    return module, path


def _texts(tmp_path) -> Path:
    long = " ".join(["the museum tour was excellent"] * 40)  # far more than max_length tokens
    rows = [
        {"id": f"{i:03d}", "text": text, "a": str(i), "b": "1.5"}
        for i, text in enumerate(
            [
                "The pasta was cold.",
                "",
                long,
                "Ünïcödé café naïve — 東京",
                *(f"review number {i} was okay" for i in range(20)),
            ]
        )
    ]
    path = tmp_path / "texts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _task(tmp_path, model: Path, dataframe: Path, **preprocessing) -> Path:
    return write_config(
        tmp_path / "task.yaml",
        {
            "problem_type": "text_regression",
            "model": str(model),
            "data": {"dataframe": str(dataframe), "text_column": "text", "label_columns": ["a", "b"]},
            "preprocessing": {"tokenizer": str(TOKENIZER), "max_length": 16, **preprocessing},
            "runtime": {"batch_size": 5, "num_workers": 0},
            "output": {"dir": str(tmp_path / "out")},
        },
    )


def test_torch_encoder_matches_torch_with_workers_long_and_empty_texts(text_regressor, tmp_path):
    from tokenizers import Tokenizer

    module, model = text_regressor
    dataframe = _texts(tmp_path)
    config = _task(tmp_path, model, dataframe)
    run_task(load_config(config), progress=False)
    with open(tmp_path / "out" / "validation_raw_predictions.pkl", "rb") as handle:
        serial = pickle.load(handle)["predictions"]
    run_task(load_config(config, ["runtime.num_workers=2", "output.dir=" + str(tmp_path / "workers")]), progress=False)
    with open(tmp_path / "workers" / "validation_raw_predictions.pkl", "rb") as handle:
        parallel = pickle.load(handle)["predictions"]
    np.testing.assert_array_equal(serial, parallel)
    run_task(
        load_config(config, ["preprocessing.padding_side=left", "output.dir=" + str(tmp_path / "left")]), progress=False
    )
    with open(tmp_path / "left" / "validation_raw_predictions.pkl", "rb") as handle:
        left = pickle.load(handle)["predictions"]
    np.testing.assert_allclose(left, serial, rtol=1e-5, atol=1e-6)  # masked mean: where the padding sits is irrelevant

    # Reference, independent of predict.data: tokenizers' own truncation, one row at a time, no padding.
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    tokenizer.enable_truncation(16)
    texts = pd.read_csv(dataframe, dtype=str, keep_default_na=False).text
    with torch.no_grad():
        expected = np.concatenate(
            [
                module(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.int64)).numpy()
                for ids in (tokenizer.encode(t).ids for t in texts)
            ]
        )
    np.testing.assert_allclose(serial, expected, rtol=1e-4, atol=1e-5)

    # truncation_side: left keeps the end of the long text, as tokenizers' direction="left" does.
    run_task(
        load_config(config, ["preprocessing.truncation_side=left", "output.dir=" + str(tmp_path / "cut")]),
        progress=False,
    )
    with open(tmp_path / "cut" / "validation_raw_predictions.pkl", "rb") as handle:
        cut_left = pickle.load(handle)["predictions"]
    tokenizer.enable_truncation(16, direction="left")
    with torch.no_grad():
        expected = np.concatenate(
            [
                module(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.int64)).numpy()
                for ids in (tokenizer.encode(t).ids for t in texts)
            ]
        )
    np.testing.assert_allclose(cut_left, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(cut_left[2], serial[2], rtol=1e-3)  # the long row: its end, not its start
    np.testing.assert_allclose(cut_left[:2], serial[:2], rtol=1e-5, atol=1e-6)  # short rows: nothing cut


def test_non_utf8_csv_is_a_clear_error(text_regressor, tmp_path, capsys):
    dataframe = tmp_path / "latin1.csv"
    dataframe.write_bytes("id,text,a,b\n1,caf\xe9 cr\xe8me,1,2\n".encode("latin-1"))
    assert main(["--config", str(_task(tmp_path, text_regressor[1], dataframe)), "--quiet"]) == 2
    assert "latin1.csv: not UTF-8 text" in capsys.readouterr().err


def test_text_config_errors(text_regressor, tmp_path):
    dataframe = _texts(tmp_path)
    config = _task(tmp_path, text_regressor[1], dataframe)
    with pytest.raises(ConfigError, match=r"preprocessing.tokenizer is missing: a text model needs the tokenizer"):
        load_config(config, ["preprocessing.tokenizer=null"])
    with pytest.raises(ConfigError, match=r"preprocessing.tokenizer file not found"):
        load_config(config, ["preprocessing.tokenizer=nowhere.json"])
    with pytest.raises(ConfigError, match=r"preprocessing.max_length must be >= 1 \(got 0\)"):
        load_config(config, ["preprocessing.max_length=0"])
    with pytest.raises(ConfigError, match=r"preprocessing.doc_stride must be >= 0 \(got -1\)"):
        load_config(config, ["preprocessing.doc_stride=-1"])
    with pytest.raises(ConfigError, match=r"data.text_column: column 'txt' is not in texts.csv"):
        load_config(config, ["data.text_column=txt"])
    span = ["problem_type=text_span_prediction", "data.label_columns=[a]"]
    with pytest.raises(ConfigError, match=r"data.question_column is missing \(needed for text_span_prediction\)"):
        load_config(config, span)
    with pytest.raises(ConfigError, match=r"data.context_column: column 'ctx' is not in texts.csv"):
        load_config(config, [*span, "data.question_column=text", "data.context_column=ctx"])
    with pytest.raises(ConfigError, match=r"preprocessing.truncation_side must be one of right, left \(got 'pre'\)"):
        load_config(config, ["preprocessing.truncation_side=pre"])
    with pytest.raises(
        ConfigError, match=r"preprocessing.truncation_side: left does not apply to text_span_prediction"
    ):
        load_config(
            config,
            [*span, "data.question_column=text", "data.context_column=text", "preprocessing.truncation_side=left"],
        )
    with pytest.raises(ConfigError, match="span prediction takes one answer column"):
        load_config(
            config, ["problem_type=text_span_prediction", "data.question_column=text", "data.context_column=text"]
        )


def _spec(name: str, shape, dtype=np.int64) -> TensorSpec:
    return TensorSpec(name=name, shape=shape, dtype=np.dtype(dtype))


def test_model_inputs_decide_names_dtypes_and_length():
    keras = text_inputs_from([_spec("token_ids", (None, 32), np.int32)], max_length=None, model_name="m.h5")
    assert (keras.ids, keras.mask, keras.max_length, keras.pad_to_max_length) == ("token_ids", None, 32, True)
    bert = text_inputs_from(
        [
            _spec("input_ids", (None, None)),
            _spec("attention_mask", (None, None)),
            _spec("token_type_ids", (None, None)),
        ],
        max_length=64,
        model_name="m.onnx",
    )
    assert (bert.mask, bert.token_types, bert.pad_to_max_length) == ("attention_mask", "token_type_ids", False)
    with pytest.raises(
        ConfigError, match=r"preprocessing.max_length is 16 but model m.h5 input 'token_ids' takes 32 tokens"
    ):
        text_inputs_from([_spec("token_ids", (None, 32))], max_length=16, model_name="m.h5")
    with pytest.raises(
        ConfigError, match=r"preprocessing.max_length is missing and model m.onnx has a dynamic sequence length"
    ):
        text_inputs_from([_spec("input_ids", (None, None))], max_length=None, model_name="m.onnx")
    with pytest.raises(ConfigError, match=r"model m.onnx has inputs \(a, b\); a text model takes one token-id input"):
        text_inputs_from([_spec("a", (None, 4)), _spec("b", (None, 4))], max_length=None, model_name="m.onnx")
    with pytest.raises(ConfigError, match="input 'image' has 4 axes; a text model takes"):
        text_inputs_from([_spec("image", (None, 3, 8, 8), np.float32)], max_length=None, model_name="m.onnx")
