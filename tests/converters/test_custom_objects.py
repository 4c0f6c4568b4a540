"""model_options: a custom layer from the user's own Python file, and a Lambda layer allowed explicitly."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from converters.keras_to_onnx import convert_keras_to_onnx
from predict.errors import ConversionError
from tests.converters.conftest import subprocess_env

pytest.importorskip("tensorflow")
onnxruntime = pytest.importorskip("onnxruntime")

# A real custom layer with a weight and a config argument, not registered with Keras: the .h5 records
# its class name only, so Keras needs the file to load it.
MY_LAYERS = '''
import keras
from keras import ops


class ScaledSoftsign(keras.layers.Layer):
    """x * scale / (1 + |x * scale|), with a learnt per-feature scale starting at `initial`."""

    def __init__(self, initial=1.5, **kwargs):
        super().__init__(**kwargs)
        self.initial = initial

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.initial), name="scale"
        )

    def call(self, inputs):
        scaled = inputs * self.scale
        return scaled / (1.0 + ops.abs(scaled))

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}
'''


def _import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"user_layers_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    """(h5 path, my_layers.py path, inputs, Keras predictions) for a model with a `ScaledSoftsign` layer."""
    import keras

    folder = tmp_path_factory.mktemp("custom")
    layers_file = folder / "my_layers.py"
    layers_file.write_text(MY_LAYERS)
    my_layers = _import_file(layers_file)
    keras.utils.set_random_seed(0)
    features = keras.Input((6,), name="features")
    hidden = my_layers.ScaledSoftsign(initial=2.0)(keras.layers.Dense(8)(features))
    model = keras.Model(features, keras.layers.Dense(3, name="scores")(hidden))
    rng = np.random.default_rng(0)
    model.compile("adam", "mse")
    model.fit(rng.normal(size=(64, 6)), rng.normal(size=(64, 3)), epochs=2, verbose=0)
    h5_path = folder / "custom.h5"
    model.save(h5_path)
    inputs = rng.normal(size=(5, 6)).astype(np.float32)
    return h5_path, layers_file, inputs, model.predict(inputs, verbose=0)


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    """(h5 path, inputs, Keras predictions) for a model with a Python Lambda layer."""
    import keras

    folder = tmp_path_factory.mktemp("lambda")
    keras.utils.set_random_seed(0)
    features = keras.Input((4,), name="x")
    hidden = keras.layers.Lambda(lambda tensor: tensor * 3.0 - 1.0, name="affine")(keras.layers.Dense(5)(features))
    model = keras.Model(features, keras.layers.Dense(2, name="y")(hidden))
    h5_path = folder / "lambda.h5"
    model.save(h5_path)
    inputs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    return h5_path, inputs, model.predict(inputs, verbose=0)


def _run(onnx_path: Path, name: str, inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: inputs})[0]


def test_custom_layer_needs_its_file(custom_model, tmp_path):
    h5_path, _, _, _ = custom_model
    with pytest.raises(
        ConversionError,
        match=r"it uses 'ScaledSoftsign', which is not a Keras class; name the Python file .*--custom-objects",
    ):
        convert_keras_to_onnx(h5_path, tmp_path / "out.onnx")


def test_custom_layer_loads_from_the_named_file(custom_model, tmp_path):
    h5_path, layers_file, inputs, expected = custom_model
    report = convert_keras_to_onnx(h5_path, tmp_path / "out.onnx", custom_objects=layers_file)
    assert report.output_names == ("scores",)
    assert_allclose(_run(report.onnx_path, "features", inputs), expected, rtol=1e-4, atol=1e-5)


def test_custom_objects_file_errors(custom_model, tmp_path):
    h5_path, _, _, _ = custom_model
    with pytest.raises(ConversionError, match=r"custom objects file not found: .*nope\.py"):
        convert_keras_to_onnx(h5_path, tmp_path / "out.onnx", custom_objects=tmp_path / "nope.py")
    broken = tmp_path / "broken.py"
    broken.write_text("import keras\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(ConversionError, match=r"broken\.py failed to import: RuntimeError: no GPU here"):
        convert_keras_to_onnx(h5_path, tmp_path / "out.onnx", custom_objects=broken)
    empty = tmp_path / "empty.py"
    empty.write_text("import keras\nSCALE = 2\n")
    with pytest.raises(ConversionError, match=r"empty\.py defines no class or function"):
        convert_keras_to_onnx(h5_path, tmp_path / "out.onnx", custom_objects=empty)


def test_lambda_is_refused_without_the_explicit_switch(lambda_model, tmp_path):
    h5_path, _, _ = lambda_model
    with pytest.raises(ConversionError, match=r"Lambda layer holding Python bytecode.*--allow-unsafe-deserialization"):
        convert_keras_to_onnx(h5_path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_lambda_loads_with_the_switch_and_a_warning(lambda_model, tmp_path, capsys):
    h5_path, inputs, expected = lambda_model
    report = convert_keras_to_onnx(h5_path, tmp_path / "out.onnx", allow_unsafe_deserialization=True)
    assert "warning: lambda.h5: unsafe deserialization is allowed" in capsys.readouterr().err
    assert_allclose(_run(report.onnx_path, "x", inputs), expected, rtol=1e-4, atol=1e-5)


def test_predict_convert_takes_both_options(custom_model, lambda_model, tmp_path):
    h5_path, layers_file, inputs, expected = custom_model
    command = [sys.executable, "-m", "predict", "convert", str(h5_path), "-o", str(tmp_path / "c.onnx")]
    completed = subprocess.run(
        [*command, "--custom-objects", str(layers_file)],
        check=False,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "scores  max abs diff" in completed.stdout
    assert_allclose(_run(tmp_path / "c.onnx", "features", inputs), expected, rtol=1e-4, atol=1e-5)

    lambda_h5, _, _ = lambda_model
    command = [sys.executable, "-m", "predict", "convert", str(lambda_h5), "-o", str(tmp_path / "l.onnx")]
    refused = subprocess.run(command, check=False, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--allow-unsafe-deserialization" in refused.stderr
    allowed = subprocess.run(
        [*command, "--allow-unsafe-deserialization"],
        check=False,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: lambda.h5: unsafe deserialization is allowed" in allowed.stderr
