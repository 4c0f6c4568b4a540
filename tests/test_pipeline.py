"""End to end through `predict.cli.main`: real ONNX models, real PNGs, the files of FORMATS.md."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from predict.cli import main
from predict.report import metrics
from tests.conftest import CLASSES, preprocess, torch_reference


def run_cli(config, *extra) -> int:
    return main(["--config", str(config), "--quiet", *extra])


def read_outputs(folder, split="validation"):
    csv = pd.read_csv(folder / f"{split}_predictions.csv", dtype=str, keep_default_na=False)
    with open(folder / f"{split}_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    return csv, raw


def test_categorical_classification_writes_the_contract(make_task, torch_models, image_folder, tmp_path):
    module, model = torch_models["logits3"]
    assert run_cli(make_task(model)) == 0
    out = tmp_path / "out"
    csv, raw = read_outputs(out)
    frame = pd.read_csv(image_folder / "labels.csv", dtype=str, keep_default_na=False)

    # Every input column, in order and verbatim, then the prediction columns.
    assert list(csv.columns[: len(frame.columns)]) == list(frame.columns)
    pd.testing.assert_frame_equal(csv[frame.columns], frame)
    assert list(csv.columns[len(frame.columns) :]) == [f"pred_label_{name}" for name in CLASSES] + ["pred_label"]

    assert set(raw) == {"predictions", "labels", "image_path"}
    assert raw["predictions"].dtype == np.float32 and raw["predictions"].shape == (20, 3)
    assert list(raw["labels"]) == list(CLASSES)
    assert list(raw["image_path"]) == list(frame["image_path"])

    # Logits graph: softmax applied by the head; equals torch on the same pre-processing.
    logits = torch_reference(module, image_folder, list(frame["image_path"]))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
    assert list(csv["pred_label"]) == [CLASSES[i] for i in expected.argmax(axis=1)]

    with zipfile.ZipFile(out / "validation_predictions.zip") as archive:
        assert sorted(archive.namelist()) == ["validation_predictions.csv", "validation_raw_predictions.pkl"]
    metrics = json.loads((out / "validation_metrics.json").read_text())
    assert set(metrics) == {"ROC_AUC", "LogLoss", "Accuracy", "F1"}
    report = json.loads((out / "validation_report.json").read_text())
    assert report["rows"] == 20 and report["provider"] == "CPUExecutionProvider"


def test_one_hot_columns_with_softmax_graph(make_task, torch_models, image_folder, tmp_path):
    module, model = torch_models["softmax3"]
    columns = [f"is_{name}" for name in CLASSES]
    assert run_cli(make_task(model, label_columns=columns)) == 0
    csv, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    expected = torch_reference(module, image_folder, list(frame["image_path"]))
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)  # graph ends in Softmax: used as is
    assert list(raw["labels"]) == columns
    assert list(csv.columns[-3:]) == [f"pred_{column}" for column in columns]
    metrics = json.loads((tmp_path / "out" / "validation_metrics.json").read_text())
    assert metrics["Accuracy"] == pytest.approx(np.mean(expected.argmax(1) == frame[columns].to_numpy().argmax(1)))


def test_binary_from_one_logit(make_task, torch_models, image_folder, tmp_path):
    module, model = torch_models["logit1"]
    assert run_cli(make_task(model, label_columns=["is_bright"])) == 0
    csv, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    logits = torch_reference(module, image_folder, list(frame["image_path"]))
    assert raw["predictions"].shape == (20, 1)
    assert_allclose(raw["predictions"], 1 / (1 + np.exp(-logits)), rtol=1e-4, atol=1e-5)
    assert list(csv.columns[-1:]) == ["pred_is_bright"]


def test_regression_and_fixed_batch_model(make_task, torch_models, image_folder, tmp_path):
    module, model = torch_models["regression1"]
    assert run_cli(make_task(model, problem_type="image_regression", label_columns=["brightness"])) == 0
    csv, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    expected = torch_reference(module, image_folder, list(frame["image_path"]))
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
    assert list(raw["labels"]) == ["brightness"]
    assert_allclose(csv["pred_brightness"].astype(float), expected[:, 0], rtol=1e-6)
    metrics = json.loads((tmp_path / "out" / "validation_metrics.json").read_text())
    assert set(metrics) == {"MAE", "MSE", "RMSE", "R2"}


def test_fixed_batch_model_is_fed_padded_batches(make_task, torch_models, image_folder, tmp_path):
    module, model = torch_models["fixed_batch4"]
    # batch_size 8 over 20 rows against a model fixed at 4: cut into 4s, last piece padded.
    assert run_cli(make_task(model), "--set", "runtime.batch_size=7") == 0
    _, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    logits = torch_reference(module, image_folder, list(frame["image_path"]))
    assert_allclose(raw["predictions"], np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-4, atol=1e-5)


def test_worker_processes_keep_row_order(make_task, torch_models, image_folder, tmp_path):
    module, model = torch_models["regression1"]
    config = make_task(model, problem_type="image_regression", label_columns=["brightness"])
    assert run_cli(config, "--set", "runtime.num_workers=2", "--set", "runtime.batch_size=3") == 0
    _, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    assert_allclose(
        raw["predictions"], torch_reference(module, image_folder, list(frame["image_path"])), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("decoder_bound", [True, False])
def test_unset_workers_switch_to_processes_when_the_decoder_is_the_bottleneck(
    make_task, torch_models, image_folder, tmp_path, monkeypatch, decoder_bound
):
    # 2 CPUs and a CPU model: decoding starts on the main thread; the probe's verdict is forced here
    # (it compares timings) to check that a switch mid-run keeps every prediction and its order.
    from predict.engines import local as pipeline

    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(pipeline, "PROBE_BATCHES", 2)
    monkeypatch.setattr(pipeline, "decoder_bound", lambda load, model: decoder_bound)
    module, model = torch_models["regression1"]
    runtime = {"batch_size": 3}  # num_workers unset
    config = make_task(model, problem_type="image_regression", label_columns=["brightness"], runtime=runtime)
    assert run_cli(config) == 0
    _, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    assert len(frame) > 2 * 3  # the switch happens with batches left
    assert_allclose(
        raw["predictions"], torch_reference(module, image_folder, list(frame["image_path"])), rtol=1e-4, atol=1e-5
    )
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert report["decoding_workers"] == (2 if decoder_bound else 0)
    moved = [
        note for note in report["notes"] if note.startswith("decoding moved to 2 worker processes after 2 batches")
    ]
    assert len(moved) == int(decoder_bound)


def test_decoder_bound_compares_time_per_batch():
    from predict.engines.local import decoder_bound

    assert decoder_bound(0.02, 0.01) and not decoder_bound(0.01, 0.02)


def test_test_split_without_labels(make_task, torch_models, image_folder, tmp_path):
    _, model = torch_models["logits3"]
    frame = pd.read_csv(image_folder / "labels.csv", dtype=str, keep_default_na=False)
    test_csv = tmp_path / "test.csv"
    frame[["id", "image_path"]].to_csv(test_csv, index=False)
    config = make_task(model)
    code = run_cli(
        config,
        "--set",
        "data.split=test",
        "--set",
        f"data.dataframe={test_csv}",
        "--set",
        "head.class_names=[cat, dog, fox]",
    )
    assert code == 0
    out = tmp_path / "out"
    csv, _raw = read_outputs(out, split="test")
    assert list(csv.columns) == ["id", "image_path", *[f"pred_label_{name}" for name in CLASSES], "pred_label"]
    assert list(csv["id"]) == list(frame["id"])
    assert not (out / "test_metrics.json").exists()
    assert (out / "test_predictions.zip").is_file()


def test_a_split_without_labels_stops_the_metrics_helper(make_task, torch_models, image_folder, tmp_path):
    # A helper started for metrics (as the CLI does for a config naming label columns) is killed where it is
    # once the rows turn out to have no labels: its 1-1.6 CPU-s import would compete with the scoring.
    _, model = torch_models["logits3"]
    frame = pd.read_csv(image_folder / "labels.csv", dtype=str, keep_default_na=False)
    test_csv = tmp_path / "test.csv"
    frame[["id", "image_path"]].to_csv(test_csv, index=False)
    metrics.start_import()
    helper = metrics._helper
    test_split = ("--set", "data.split=test", "--set", f"data.dataframe={test_csv}")
    assert run_cli(make_task(model), *test_split, "--set", "head.class_names=[cat, dog, fox]") == 0
    assert metrics._helper is None and not helper._process.is_alive()


def test_a_labelled_run_leaves_no_metrics_helper_behind(make_task, torch_models, tmp_path):
    # The CLI starts the helper before the run's imports and stops it once the run is done (or failed).
    _, model = torch_models["logits3"]
    assert run_cli(make_task(model)) == 0
    assert json.loads((tmp_path / "out" / "validation_metrics.json").read_text())["Accuracy"] >= 0
    assert metrics._helper is None and multiprocessing.active_children() == []


def test_keras_h5_converts_once_and_matches_keras_predict(make_task, keras_models, image_folder, tmp_path, capsys):
    keras = pytest.importorskip("keras")
    model = keras_models["sequential_cnn"]
    config = make_task(model)
    assert main(["--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert "converted to" in first and "rows/s" in first
    assert re.search(
        r"time: load [\d.]+ s, waiting on the model [\d.]+ s, .* \(model busy [\d.]+ s on its own thread", first
    )
    _, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    reference = keras.models.load_model(model, compile=False).predict(
        preprocess(image_folder, list(frame["image_path"]), channels_first=False), verbose=0
    )
    assert_allclose(raw["predictions"], reference, rtol=1e-4, atol=1e-5)

    assert main(["--config", str(config), "--overwrite"]) == 0  # second run: the cached ONNX, no conversion
    assert "using the cached conversion" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "onnx_cache").glob("*.onnx"))) == 1


def test_keras_functional_regressor(make_task, keras_models, image_folder, tmp_path):
    keras = pytest.importorskip("keras")
    model = keras_models["functional_regressor"]
    config = make_task(model, problem_type="image_regression", label_columns=["brightness", "is_bright"])
    assert run_cli(config) == 0
    csv, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    reference = keras.models.load_model(model, compile=False).predict(
        preprocess(image_folder, list(frame["image_path"]), channels_first=False), verbose=0
    )
    assert_allclose(raw["predictions"], reference, rtol=1e-4, atol=1e-5)
    assert list(csv.columns[-2:]) == ["pred_brightness", "pred_is_bright"]


def test_npz_copy_of_the_raw_predictions_loads_without_pickle(make_task, torch_models, tmp_path):
    _, model = torch_models["logits3"]
    assert run_cli(make_task(model), "--set", "output.write_npz=true") == 0
    _, raw = read_outputs(tmp_path / "out")
    with np.load(tmp_path / "out" / "validation_raw_predictions.npz", allow_pickle=False) as archive:
        assert_allclose(archive["predictions"], raw["predictions"])
        assert list(archive["labels"]) == list(raw["labels"])
