"""predict.fidelity: a run on a Keras .h5 sends its first batch of real rows through Keras too."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pandas as pd
import pytest

from predict.cli import main
from predict.fidelity import FidelityCheck
from predict.task import load_config
from tests.conftest import IMAGE_SIZE, preprocess

pytest.importorskip("tensorflow")

# A custom layer the user keeps in their own file, next to the task YAML.
MY_LAYERS = '''
import keras


class Gain(keras.layers.Layer):
    """Multiplies by a learnt per-channel gain."""

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gain")

    def call(self, inputs):
        return inputs * self.gain
'''


def test_h5_run_reports_fidelity_on_the_first_real_batch(make_task, keras_models, tmp_path, capsys):
    config = make_task(
        keras_models["functional_regressor"], problem_type="image_regression", label_columns=["brightness", "is_bright"]
    )
    assert main(["--config", str(config)]) == 0
    summary = capsys.readouterr().out
    assert "note: Keras vs the converted model on the first 8 real rows: max abs diff" in summary
    assert "(within tolerance" in summary
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    fidelity = report["fidelity"]
    assert fidelity["rows"] == 8 and fidelity["within_tolerance"] is True
    assert set(fidelity["outputs"]) == {"targets"}
    assert 0 <= fidelity["outputs"]["targets"]["max_abs_diff"] < 1e-4
    assert fidelity["outputs"]["targets"]["max_abs_reference"] > 0.01  # real outputs, not zeros


def test_a_rerun_on_the_same_rows_reuses_the_check(make_task, keras_models, tmp_path, capsys, monkeypatch):
    """The check is kept beside the converted model: a rerun starts no TensorFlow (here it could not)."""
    config = make_task(
        keras_models["functional_regressor"], problem_type="image_regression", label_columns=["brightness", "is_bright"]
    )
    assert main(["--config", str(config)]) == 0
    (note,) = [line for line in capsys.readouterr().out.splitlines() if "Keras vs the converted model" in line]
    assert len(list((tmp_path / "out" / "onnx_cache").glob("*.fidelity-*.json"))) == 1
    blocked = tmp_path / "blocked" / "tensorflow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('TensorFlow is blocked in this test')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(blocked.parent), os.environ.get("PYTHONPATH", "")]))
    assert main(["--config", str(config), "--overwrite"]) == 0
    assert note in capsys.readouterr().out.splitlines()


def test_onnx_model_has_no_keras_check(make_task, torch_models, tmp_path, capsys):
    config = make_task(torch_models["logits3"][1])
    assert main(["--config", str(config)]) == 0
    assert "Keras vs the converted model" not in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "validation_report.json").read_text())["fidelity"] is None


def test_over_tolerance_on_real_rows_is_a_loud_note(make_task, keras_models, image_folder, tmp_path):
    import keras

    model = keras_models["functional_regressor"]
    task = load_config(make_task(model, problem_type="image_regression", label_columns=["brightness", "is_bright"]))
    names = list(pd.read_csv(image_folder / "labels.csv")["image_path"][:6])
    pixels = preprocess(image_folder, names, channels_first=False, size=IMAGE_SIZE)
    keras_outputs = keras.models.load_model(model, compile=False).predict(pixels, verbose=0)
    check = FidelityCheck(task, converted=tmp_path / "converted.onnx")
    check.observe({"pixels": pixels}, {"targets": keras_outputs + np.float32(0.05)})  # a converted model 0.05 off
    result = check.result()
    assert result["within_tolerance"] is False
    assert result["outputs"]["targets"]["failing_elements"] == keras_outputs.size
    assert result["outputs"]["targets"]["max_abs_diff"] == pytest.approx(0.05, rel=1e-3)
    (note,) = check.notes()
    assert note.startswith("WARNING: the converted model differs from Keras on your data beyond the tolerance")
    assert "(OVER tolerance" in note


def test_custom_layer_from_the_config_folder_runs_and_is_checked(make_task, tmp_path, image_folder, capsys):
    import keras

    (tmp_path / "my_layers.py").write_text(MY_LAYERS)
    spec = importlib.util.spec_from_file_location("fidelity_test_layers", tmp_path / "my_layers.py")
    my_layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(my_layers)
    keras.utils.set_random_seed(0)
    pixels = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="pixels")
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(pixels))
    model = keras.Model(pixels, keras.layers.Dense(3, name="scores")(my_layers.Gain()(hidden)))
    h5_path = tmp_path / "gain.h5"
    model.save(h5_path)

    config = make_task(h5_path)
    text = config.read_text() + "model_options:\n  custom_objects: my_layers.py\n"  # relative to the YAML's folder
    config.write_text(text)
    assert main(["--config", str(config)]) == 0
    assert "(within tolerance" in capsys.readouterr().out
    names = list(pd.read_csv(image_folder / "labels.csv")["image_path"])
    logits = model.predict(preprocess(image_folder, names, channels_first=False), verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # the head's softmax on logits
    raw = pd.read_pickle(tmp_path / "out" / "validation_raw_predictions.pkl")
    np.testing.assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)
