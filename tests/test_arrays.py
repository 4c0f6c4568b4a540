"""Array problem types from Keras `.h5` models: feature columns, `X_test.npy`/`y_test.npy`, CSV tables, windows.

Every model is a real Keras model saved as `.h5`, converted by the pipeline; predictions must equal
Keras `model.predict` within 1e-4, and metrics those computed from Keras' own predictions.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn import metrics as sk

from predict.cli import main
from tests.conftest import write_config

ROWS = 90  # not a multiple of the batch size: the last batch is short
WINDOW, FEATURES = 10, 3


@pytest.fixture(scope="module")
def keras_array_models(tmp_path_factory) -> dict[str, tuple[object, Path]]:
    """Seeded, briefly trained Keras models and their `.h5` files."""
    pytest.importorskip("tensorflow")
    import keras

    folder = tmp_path_factory.mktemp("keras_array_models")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    models = {}

    regressor = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    regressor.compile("adam", "mse")
    features = rng.normal(size=(256, 8)).astype(np.float32)
    regressor.fit(features, features[:, :2].sum(axis=1), epochs=2, verbose=0)
    models["regressor"] = regressor

    classifier = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4, activation="softmax")]
    )
    classifier.compile("adam", "categorical_crossentropy")
    features = rng.normal(size=(256, 6)).astype(np.float32)
    classifier.fit(features, np.eye(4)[features[:, :4].argmax(axis=1)], epochs=2, verbose=0)
    models["classifier"] = classifier

    inputs = keras.Input((WINDOW, FEATURES), name="window")
    hidden = keras.layers.Conv1D(8, 3, activation="relu")(inputs)
    hidden = keras.layers.GRU(8)(hidden)
    models["forecaster"] = keras.Model(inputs, keras.layers.Dense(2, name="next_two")(hidden))

    table, window = keras.Input((4,), name="table"), keras.Input((5, 2), name="series")
    joined = keras.layers.Concatenate()([table, keras.layers.Flatten()(window)])
    models["two_inputs"] = keras.Model([table, window], keras.layers.Dense(1)(joined))

    for name, model in models.items():
        model.save(folder / f"{name}.h5")
        models[name] = (model, folder / f"{name}.h5")
    return models


def keras_predict(model, inputs) -> np.ndarray:
    return np.asarray(model.predict(inputs, verbose=0), dtype=np.float64)


@pytest.fixture(scope="module", autouse=True)
def shared_conversions(tmp_path_factory):
    """One conversion cache for the module: each `.h5` is converted (and checked against Keras on its
    first batch) once, and later runs find it in their output folder's cache, as a user's reruns do."""
    global CONVERSIONS
    CONVERSIONS = tmp_path_factory.mktemp("conversions")


CONVERSIONS: Path | None = None


def run(tmp_path: Path, model: Path, problem_type: str, data: dict, *extra: str, **sections) -> int:
    cache = tmp_path / "out" / "onnx_cache"
    shutil.copytree(CONVERSIONS, cache, dirs_exist_ok=True)
    try:
        return _run(tmp_path, model, problem_type, data, *extra, **sections)
    finally:
        shutil.copytree(cache, CONVERSIONS, dirs_exist_ok=True)


def _run(tmp_path: Path, model: Path, problem_type: str, data: dict, *extra: str, **sections) -> int:
    config = {
        "problem_type": problem_type,
        "model": str(model),
        "data": {"split": "validation", **data},
        "runtime": {"batch_size": 16, "num_workers": 0},
        "output": {"dir": str(tmp_path / "out")},
        **sections,
    }
    return main(["--config", str(write_config(tmp_path / "task.yaml", config)), "--quiet", *extra])


def outputs(tmp_path: Path) -> tuple[pd.DataFrame, dict, dict]:
    out = tmp_path / "out"
    csv = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    with open(out / "validation_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    metrics_path = out / "validation_metrics.json"
    return csv, raw, json.loads(metrics_path.read_text()) if metrics_path.exists() else {}


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    mse = sk.mean_squared_error(actual, predicted)
    return {
        "MAE": sk.mean_absolute_error(actual, predicted),
        "MSE": mse,
        "RMSE": float(np.sqrt(mse)),
        "R2": sk.r2_score(actual, predicted),
    }


def assert_metrics(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_dataframe_feature_columns_regression(keras_array_models, tmp_path):
    model, path = keras_array_models["regressor"]
    rng = np.random.default_rng(1)
    features = rng.normal(size=(ROWS, 8))
    frame = pd.DataFrame(features, columns=[f"f{j}" for j in range(8)])
    frame.insert(0, "id", [f"r{index:03d}" for index in range(ROWS)])
    frame["target"] = features[:, :2].sum(axis=1)
    frame.to_csv(tmp_path / "valid.csv", index=False)
    # feature_columns unset: every column but the label and the id
    data = {"dataframe": str(tmp_path / "valid.csv"), "label_columns": ["target"], "id_column": "id"}
    assert run(tmp_path, path, "array_regression", data) == 0
    csv, raw, metrics = outputs(tmp_path)
    source = pd.read_csv(tmp_path / "valid.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == [*source.columns, "pred_target"]
    pd.testing.assert_frame_equal(csv[source.columns], source)
    assert set(raw) == {"predictions", "labels", "id"}
    assert list(raw["id"]) == list(source["id"]) and list(raw["labels"]) == ["target"]
    expected = keras_predict(
        model, pd.read_csv(tmp_path / "valid.csv")[[f"f{j}" for j in range(8)]].to_numpy(np.float32)
    )
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
    assert_metrics(metrics, regression_metrics(frame["target"].to_numpy(), expected[:, 0]))


def test_seed_style_npy_with_one_hot_labels(keras_array_models, tmp_path):
    model, path = keras_array_models["classifier"]
    rng = np.random.default_rng(2)
    features = rng.normal(size=(ROWS, 6))  # float64, as np.save keeps it: cast to the model's float32
    classes = features[:, :4].argmax(axis=1)
    classes[:5] = (classes[:5] + 1) % 4  # a few wrong, so no metric is trivially perfect
    np.save(tmp_path / "X_test.npy", features)
    np.save(tmp_path / "y_test.npy", np.eye(4, dtype=np.float32)[classes])
    data = {"inputs": str(tmp_path / "X_test.npy"), "labels": str(tmp_path / "y_test.npy")}
    assert run(tmp_path, path, "array_classification", data) == 0
    csv, raw, metrics = outputs(tmp_path)
    labels = [f"label_{j}" for j in range(4)]
    assert list(csv.columns) == ["row", *labels, *[f"pred_{name}" for name in labels]]
    assert list(csv["row"]) == [str(index) for index in range(ROWS)]
    assert csv[labels].to_numpy().tolist() == np.eye(4, dtype=int)[classes].astype(str).tolist()
    assert set(raw) == {"predictions", "labels", "row"} and list(raw["labels"]) == labels
    expected = keras_predict(model, features.astype(np.float32))
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
    normalised = expected / expected.sum(axis=1, keepdims=True)
    assert_metrics(
        metrics,
        {
            "Accuracy": sk.accuracy_score(classes, expected.argmax(axis=1)),
            "F1": sk.f1_score(classes, expected.argmax(axis=1), average="macro", labels=range(4), zero_division=0.0),
            "LogLoss": sk.log_loss(classes, normalised, labels=range(4)),
            "ROC_AUC": sk.roc_auc_score(np.eye(4)[classes], expected, average="macro"),
        },
    )


def test_class_ids_become_named_classes(keras_array_models, tmp_path):
    model, path = keras_array_models["classifier"]
    features = np.random.default_rng(3).normal(size=(ROWS, 6)).astype(np.float32)
    np.save(tmp_path / "X.npy", features)
    np.save(tmp_path / "y.npy", features[:, :4].argmax(axis=1))
    data = {"inputs": str(tmp_path / "X.npy"), "labels": str(tmp_path / "y.npy")}
    assert run(tmp_path, path, "array_classification", data, head={"class_names": ["a", "b", "c", "d"]}) == 0
    csv, raw, metrics = outputs(tmp_path)
    assert list(csv.columns) == [
        "row",
        "label",
        "pred_label_a",
        "pred_label_b",
        "pred_label_c",
        "pred_label_d",
        "pred_label",
    ]
    expected = keras_predict(model, features)
    assert list(csv["label"]) == list(np.array(["a", "b", "c", "d"])[features[:, :4].argmax(axis=1)])
    assert list(csv["pred_label"]) == list(np.array(["a", "b", "c", "d"])[expected.argmax(axis=1)])
    assert list(raw["labels"]) == ["a", "b", "c", "d"]
    assert metrics["Accuracy"] == pytest.approx(np.mean(expected.argmax(axis=1) == features[:, :4].argmax(axis=1)))


def test_class_ids_without_names_keep_numeric_order(keras_array_models, tmp_path):
    """Twelve classes: `10` and `11` must not sort before `2` (the model's output index is the id)."""
    pytest.importorskip("tensorflow")
    import keras

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(12, activation="softmax")])
    model.save(tmp_path / "twelve.h5")
    features = np.random.default_rng(4).normal(size=(48, 5)).astype(np.float32)
    np.save(tmp_path / "X.npy", features)
    np.save(tmp_path / "y.npy", np.arange(48) % 12)
    data = {"inputs": str(tmp_path / "X.npy"), "labels": str(tmp_path / "y.npy")}
    assert run(tmp_path, tmp_path / "twelve.h5", "array_classification", data) == 0
    csv, raw, _ = outputs(tmp_path)
    assert list(raw["labels"]) == [str(index) for index in range(12)]
    expected = keras_predict(model, features)
    assert list(csv["pred_label"]) == [str(index) for index in expected.argmax(axis=1)]


def test_csv_tables_with_their_index(keras_array_models, tmp_path):
    """`pd.read_csv("X_test.csv", index_col=0)` files: the unnamed index names the rows; labels keep their names."""
    model, path = keras_array_models["regressor"]
    features = np.random.default_rng(5).normal(size=(ROWS, 8))
    index = pd.RangeIndex(1000, 1000 + ROWS)
    pd.DataFrame(features, index=index, columns=[f"x{j}" for j in range(8)]).to_csv(tmp_path / "X_test.csv")
    pd.DataFrame({"y": features[:, :2].sum(axis=1)}, index=index).to_csv(tmp_path / "y_test.csv")
    data = {"inputs": str(tmp_path / "X_test.csv"), "labels": str(tmp_path / "y_test.csv")}
    assert run(tmp_path, path, "array_regression", data) == 0
    csv, raw, metrics = outputs(tmp_path)
    assert list(csv.columns) == ["row", "y", "pred_y"]
    assert list(raw["row"]) == list(index)
    expected = keras_predict(model, pd.read_csv(tmp_path / "X_test.csv", index_col=0).to_numpy(np.float32))
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
    assert_metrics(metrics, regression_metrics(features[:, :2].sum(axis=1), expected[:, 0]))


def test_windows_forecaster_and_its_report(keras_array_models, tmp_path):
    model, path = keras_array_models["forecaster"]
    series = np.cumsum(np.random.default_rng(6).normal(size=(ROWS + WINDOW + 1, FEATURES)), axis=0).astype(np.float32)
    windows = np.stack([series[start : start + WINDOW] for start in range(ROWS)])
    targets = series[WINDOW : WINDOW + ROWS, :2]
    np.save(tmp_path / "X_test.npy", windows)
    np.save(tmp_path / "y_test.npy", targets)
    data = {"inputs": str(tmp_path / "X_test.npy"), "labels": str(tmp_path / "y_test.npy")}
    assert run(tmp_path, path, "array_regression", data) == 0
    csv, raw, metrics = outputs(tmp_path)
    assert list(csv.columns) == ["row", "label_0", "label_1", "pred_label_0", "pred_label_1"]
    expected = keras_predict(model, windows)
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
    assert_metrics(metrics, regression_metrics(targets, expected))
    assert main(["report", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Forecast over the rows" in page and "Predicted vs actual" in page


def test_two_inputs_from_npz_by_name(keras_array_models, tmp_path):
    model, path = keras_array_models["two_inputs"]
    rng = np.random.default_rng(7)
    table, series = rng.normal(size=(ROWS, 4)).astype(np.float32), rng.normal(size=(ROWS, 5, 2)).astype(np.float32)
    np.savez(tmp_path / "X_test.npz", table=table, series=series)
    assert (
        run(tmp_path, path, "array_regression", {"inputs": str(tmp_path / "X_test.npz")}, "--set", "data.split=test")
        == 0
    )
    out = tmp_path / "out"
    with open(out / "test_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    assert_allclose(raw["predictions"], keras_predict(model, [table, series]), rtol=1e-4, atol=1e-5)
    csv = pd.read_csv(out / "test_predictions.csv")
    assert list(csv.columns) == ["row", "pred_label"]  # no labels: named after the model's one output
    assert not (out / "test_metrics.json").exists()


def test_feature_columns_per_input(keras_array_models, tmp_path):
    model, path = keras_array_models["two_inputs"]
    rng = np.random.default_rng(8)
    table, series = rng.normal(size=(ROWS, 4)), rng.normal(size=(ROWS, 10))  # series flattened: (5, 2) row-major
    frame = pd.DataFrame(
        np.hstack([table, series]), columns=[*(f"t{j}" for j in range(4)), *(f"s{j}" for j in range(10))]
    )
    frame["y"] = 0.5
    frame.to_csv(tmp_path / "valid.csv", index=False)
    feature_columns = {"table": [f"t{j}" for j in range(4)], "series": [f"s{j}" for j in range(10)]}
    data = {"dataframe": str(tmp_path / "valid.csv"), "label_columns": ["y"], "feature_columns": feature_columns}
    assert run(tmp_path, path, "array_regression", data) == 0
    _, raw, _ = outputs(tmp_path)
    expected = keras_predict(model, [table.astype(np.float32), series.reshape(ROWS, 5, 2).astype(np.float32)])
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)


def test_window_length_mismatch_is_one_line_before_any_file(keras_array_models, tmp_path, capsys):
    _, path = keras_array_models["forecaster"]
    np.save(tmp_path / "X_test.npy", np.zeros((20, 8, FEATURES), dtype=np.float32))
    assert run(tmp_path, path, "array_regression", {"inputs": str(tmp_path / "X_test.npy")}) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "X_test.npy: rows of shape (8, 3)" in error[0] and "takes (?, 10, 3)" in error[0]
    assert "windows of 8 for a model that takes 10" in error[0]
    assert not list((tmp_path / "out").glob("validation_*"))


def test_nan_row_stops_or_is_skipped(keras_array_models, tmp_path, capsys):
    model, path = keras_array_models["regressor"]
    features = np.random.default_rng(9).normal(size=(ROWS, 8)).astype(np.float32)
    features[37, 2] = np.nan
    np.save(tmp_path / "X_test.npy", features)
    data = {"inputs": str(tmp_path / "X_test.npy")}
    assert run(tmp_path, path, "array_regression", data) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "row 37, X_test.npy: NaN or inf" in error[0]
    assert not list((tmp_path / "out").glob("validation_*"))

    assert run(tmp_path, path, "array_regression", {**data, "on_error": "skip"}) == 0
    csv, raw, _ = outputs(tmp_path)
    errors = pd.read_csv(tmp_path / "out" / "validation_errors.csv")
    assert errors["row"].tolist() == [37]
    assert csv.loc[37, "pred_label"] == "" and np.isnan(raw["predictions"][37, 0])
    keep = np.arange(ROWS) != 37
    assert_allclose(raw["predictions"][keep], keras_predict(model, features[keep]), rtol=1e-4, atol=1e-5)


def test_cell_that_is_not_a_number_names_row_and_column(keras_array_models, tmp_path, capsys):
    _, path = keras_array_models["regressor"]
    frame = pd.DataFrame(np.ones((ROWS, 8)), columns=[f"f{j}" for j in range(8)])
    frame["target"] = 1.0
    frame = frame.astype(object)
    frame.loc[12, "f5"] = "n/a"
    frame.to_csv(tmp_path / "valid.csv", index=False)
    assert (
        run(tmp_path, path, "array_regression", {"dataframe": str(tmp_path / "valid.csv"), "label_columns": ["target"]})
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "row 12, feature column 'f5': expected a finite number, got 'n/a'" in error


def test_labels_that_do_not_line_up(keras_array_models, tmp_path, capsys):
    _, path = keras_array_models["regressor"]
    np.save(tmp_path / "X.npy", np.zeros((ROWS, 8), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.zeros(ROWS - 1, dtype=np.float32))
    assert (
        run(tmp_path, path, "array_regression", {"inputs": str(tmp_path / "X.npy"), "labels": str(tmp_path / "y.npy")})
        == 2
    )
    assert "data.labels y.npy has 89 rows but data.inputs X.npy has 90" in capsys.readouterr().err


def test_memory_mapped_inputs_cross_to_workers_by_path(keras_array_models, tmp_path):
    """With decoding processes, the dataset travels by pickle: a memory map goes as its path, not its bytes."""
    from predict.data.arrays import ArraySource

    model, path = keras_array_models["regressor"]
    features = np.random.default_rng(10).normal(size=(4096, 8)).astype(np.float32)
    np.save(tmp_path / "X.npy", features)
    source = ArraySource(name="x", described="X.npy", path=tmp_path / "X.npy")
    assert isinstance(source.values(), np.memmap)
    assert len(pickle.dumps(source)) < 1024 and np.array_equal(pickle.loads(pickle.dumps(source)).values(), features)
    assert (
        run(tmp_path, path, "array_regression", {"inputs": str(tmp_path / "X.npy")}, "--set", "runtime.num_workers=2")
        == 0
    )
    _, raw, _ = outputs(tmp_path)
    assert_allclose(raw["predictions"], keras_predict(model, features), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inputs": "X.npy", "dataframe": "valid.csv", "label_columns": ["y"]}, "give either dataframe"),
        ({}, "give either dataframe (with feature_columns) or inputs"),
        ({"inputs": "X.txt"}, "data.inputs must be one of .npy, .npz, .csv"),
        ({"inputs": "X.npy", "feature_columns": ["a"]}, "data.feature_columns: X.npy has no columns"),
        ({"dataframe": "valid.csv", "labels": "y.npy", "label_columns": ["y"]}, "data.labels goes with data.inputs"),
    ],
)
def test_config_errors(tmp_path, capsys, data, message):
    for name in ("X.npy", "y.npy", "X.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "valid.csv").write_text("a,y\n1,2\n")
    (tmp_path / "model.onnx").write_bytes(b"")
    data = {
        key: str(tmp_path / value) if key in ("inputs", "labels", "dataframe") else value for key, value in data.items()
    }
    assert run(tmp_path, tmp_path / "model.onnx", "array_regression", data) == 2
    assert message in capsys.readouterr().err


def test_array_keys_are_refused_elsewhere(tmp_path, capsys, image_folder):
    (tmp_path / "model.onnx").write_bytes(b"")
    data = {
        "dataframe": str(image_folder / "labels.csv"),
        "image_column": "image_path",
        "label_columns": ["label"],
        "inputs": str(tmp_path / "model.onnx"),
    }
    assert run(tmp_path, tmp_path / "model.onnx", "image_classification", data) == 2
    assert "data.inputs applies to array_regression and array_classification only" in capsys.readouterr().err


def test_torchscript_backend_equals_onnxruntime(tmp_path):
    """The same torch MLP as TorchScript on the torch backend and as ONNX on onnxruntime."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    torch.jit.save(torch.jit.trace(module, torch.zeros(2, 6)), str(tmp_path / "mlp.pt"))
    torch.onnx.export(
        module, (torch.zeros(1, 6),), str(tmp_path / "mlp.onnx"), input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    features = np.random.default_rng(11).normal(size=(ROWS, 6)).astype(np.float32)
    np.save(tmp_path / "X.npy", features)
    np.save(tmp_path / "y.npy", features[:, :3].argmax(axis=1))
    data = {"inputs": str(tmp_path / "X.npy"), "labels": str(tmp_path / "y.npy")}
    predictions = {}
    for backend, model in (("onnxruntime", "mlp.onnx"), ("torch", "mlp.pt")):
        runtime = {
            "backend": backend,
            "batch_size": 16,
            "num_workers": 0,
            **({"input_spec": ["input: float32[?, 6]"]} if backend == "torch" else {}),
        }
        (tmp_path / backend).mkdir()
        assert run(tmp_path / backend, tmp_path / model, "array_classification", data, runtime=runtime) == 0
        predictions[backend] = outputs(tmp_path / backend)[1]["predictions"]
    expected = torch.softmax(module(torch.from_numpy(features)), dim=1).detach().numpy()
    assert_allclose(predictions["onnxruntime"], expected, rtol=1e-4, atol=1e-5)
    assert_allclose(predictions["torch"], predictions["onnxruntime"], rtol=1e-4, atol=1e-5)


def test_benchmark_runs_on_an_array_task(tmp_path):
    """`predict benchmark` on a seed-style task: pipeline and raw session.run over the same rows."""
    import torch

    from predict.benchmark import run_benchmark
    from predict.task import load_config

    module = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).eval()
    torch.onnx.export(
        module, (torch.zeros(1, 32),), str(tmp_path / "mlp.onnx"), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    np.save(tmp_path / "X.npy", np.random.default_rng(12).normal(size=(500, 32)).astype(np.float32))
    config = write_config(
        tmp_path / "task.yaml",
        {"problem_type": "array_regression", "model": "mlp.onnx", "data": {"inputs": "X.npy", "split": "test"}},
    )
    results, facts = run_benchmark(load_config(config), batch_sizes=[64, 256], warmup=0, iterations=2)
    assert [result.batch_size for result in results] == [64, 256] and facts["rows"] == 500
    assert all(result.rows_per_second > 0 and result.raw_rows_per_second > 0 for result in results)


KERAS_2_FORECASTER = """
import sys
import numpy as np
import tf_keras as keras

folder = sys.argv[1]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.layers.LSTM(8, input_shape=(12, 2)), keras.layers.Dense(1)])
windows = np.random.default_rng(0).normal(size=(40, 12, 2)).astype("float32")
model.save(folder + "/keras2_lstm.h5")
np.save(folder + "/X.npy", windows)
np.save(folder + "/keras_predictions.npy", model.predict(windows, verbose=0))
"""


def test_legacy_keras_2_forecaster(tmp_path):
    """A Keras 2 `.h5` (saved by tf_keras, as Keras-FAQ-era models were) over windows: equal to Keras 2's predict."""
    import os
    import subprocess
    import sys

    pytest.importorskip("tf_keras")
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(
        [sys.executable, "-c", KERAS_2_FORECASTER, str(tmp_path)], check=True, env=environment, capture_output=True
    )
    assert (
        run(
            tmp_path,
            tmp_path / "keras2_lstm.h5",
            "array_regression",
            {"inputs": str(tmp_path / "X.npy")},
            "--set",
            "data.split=test",
        )
        == 0
    )
    with open(tmp_path / "out" / "test_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    assert_allclose(raw["predictions"], np.load(tmp_path / "keras_predictions.npy"), rtol=1e-4, atol=1e-5)
