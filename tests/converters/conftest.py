"""Session fixtures: small seeded real Keras models saved as `.h5`, each given a short fit.

Every fixture returns a `SavedModel`: the file, fresh inputs (not the converter's parity batch) and
what Keras predicts on them, computed from the in-memory model right after it was trained and saved.
Keras 2 files are built by tf_keras in a subprocess with `TF_USE_LEGACY_KERAS=1`, which also
writes tf_keras' own predictions, so those files are checked against real Keras 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROWS = 5  # fresh-input rows; the tests also run row 0 alone, so two batch sizes
SEED = 0
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class SavedModel:
    """A saved `.h5` model with fresh inputs and the reference Keras predictions on them."""

    h5_path: Path
    inputs: dict[str, np.ndarray]  # Keras input name -> array with ROWS rows
    expected: dict[str, np.ndarray]  # output name (as the converter should name it) -> Keras prediction
    keras_version_major: str


def subprocess_env() -> dict[str, str]:
    """Environment for a child Python that must import this checkout's `predict` and `converters`."""
    env = dict(os.environ)
    path = [str(REPO_ROOT / "src"), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _keras():
    pytest.importorskip("tensorflow")
    import absl.logging
    import keras

    absl.logging.set_verbosity(absl.logging.ERROR)  # "saving as HDF5 is legacy" on every save
    keras.utils.set_random_seed(SEED)
    return keras


def _save(
    keras, model, folder: Path, name: str, train_inputs, train_targets, inputs: dict[str, np.ndarray]
) -> SavedModel:
    """Fit briefly (so outputs are not trivial), save as .h5, predict on fresh inputs."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train_inputs, train_targets, epochs=2, batch_size=16, verbose=0)
        h5_path = folder / f"{name}.h5"
        model.save(h5_path)
    arguments = list(inputs.values()) if len(inputs) > 1 else next(iter(inputs.values()))
    predictions = model.predict(arguments, verbose=0)
    predictions = predictions if isinstance(predictions, list) else [predictions]
    if isinstance(model, keras.Sequential):
        names = [f"output_{index}" for index in range(len(predictions))]
    else:
        names = list(model.output_names)
    return SavedModel(
        h5_path=h5_path,
        inputs=inputs,
        expected=dict(zip(names, predictions, strict=True)),
        keras_version_major="3",
    )


@pytest.fixture(scope="session")
def keras_cnn(tmp_path_factory) -> SavedModel:
    """Sequential CNN: float32[N, 32, 32, 3] -> softmax over 3 classes (Conv/BN/MaxPool/Dropout)."""
    keras = _keras()
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3), name="image"),
            layers.Conv2D(8, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.2),
            layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    images = rng.random((64, 32, 32, 3), dtype=np.float32)
    fresh = {"image": rng.random((ROWS, 32, 32, 3), dtype=np.float32)}
    return _save(keras, model, tmp_path_factory.mktemp("cnn"), "cnn", images, rng.integers(0, 3, 64), fresh)


@pytest.fixture(scope="session")
def keras_mlp(tmp_path_factory) -> SavedModel:
    """Sequential regression MLP: float32[N, 8] -> float32[N, 1], compiled with 'mse'."""
    keras = _keras()
    model = keras.Sequential(
        [keras.Input((8,), name="x"), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    rng = np.random.default_rng(2)
    fresh = {"x": rng.normal(size=(ROWS, 8)).astype(np.float32)}
    return _save(
        keras, model, tmp_path_factory.mktemp("mlp"), "mlp", rng.normal(size=(64, 8)), rng.normal(size=(64, 1)), fresh
    )


@pytest.fixture(scope="session")
def keras_two_outputs(tmp_path_factory) -> SavedModel:
    """Functional model with two outputs: `cls` softmax(3) and `reg` linear(1)."""
    keras = _keras()
    layers = keras.layers
    features = keras.Input((6,), name="features")
    hidden = layers.Dense(12, activation="relu")(features)
    cls = layers.Dense(3, activation="softmax", name="cls")(hidden)
    reg = layers.Dense(1, name="reg")(hidden)
    model = keras.Model(features, [cls, reg])
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    rng = np.random.default_rng(3)
    fresh = {"features": rng.random((ROWS, 6), dtype=np.float32)}
    targets = [rng.integers(0, 3, 64), rng.normal(size=(64, 1))]
    return _save(keras, model, tmp_path_factory.mktemp("two_out"), "two_out", rng.random((64, 6)), targets, fresh)


@pytest.fixture(scope="session")
def keras_text_lstm(tmp_path_factory) -> SavedModel:
    """Functional text model: int32 token ids [N, 20] -> Embedding(50) -> LSTM -> sigmoid(4) `labels`."""
    keras = _keras()
    layers = keras.layers
    tokens = keras.Input((20,), dtype="int32", name="tokens")
    hidden = layers.LSTM(8)(layers.Embedding(50, 8)(tokens))
    model = keras.Model(tokens, layers.Dense(4, activation="sigmoid", name="labels")(hidden))
    model.compile("adam", "binary_crossentropy")
    rng = np.random.default_rng(4)
    fresh = {"tokens": rng.integers(0, 50, (ROWS, 20)).astype(np.int32)}
    train = rng.integers(0, 50, (64, 20)).astype(np.int32)
    return _save(keras, model, tmp_path_factory.mktemp("lstm"), "text_lstm", train, rng.random((64, 4)), fresh)


@pytest.fixture(scope="session")
def keras_two_inputs(tmp_path_factory) -> SavedModel:
    """Functional model with a float input `features` [N, 5] and an int32 input `tokens` [N, 7] (Embedding(20))."""
    keras = _keras()
    layers = keras.layers
    features = keras.Input((5,), name="features")
    tokens = keras.Input((7,), dtype="int32", name="tokens")
    embedded = layers.Flatten()(layers.Embedding(20, 3)(tokens))
    hidden = layers.Dense(8, activation="tanh")(layers.Concatenate()([features, embedded]))
    model = keras.Model([features, tokens], layers.Dense(2, name="score")(hidden))
    model.compile("adam", "mse")
    rng = np.random.default_rng(5)
    fresh = {
        "features": rng.random((ROWS, 5), dtype=np.float32),
        "tokens": rng.integers(0, 20, (ROWS, 7)).astype(np.int32),
    }
    train = [rng.random((64, 5)), rng.integers(0, 20, (64, 7)).astype(np.int32)]
    return _save(keras, model, tmp_path_factory.mktemp("two_in"), "two_in", train, rng.normal(size=(64, 2)), fresh)


# Runs under TF_USE_LEGACY_KERAS=1 with tf_keras (Keras 2). Builds two models, saves them, and writes
# fresh inputs and tf_keras' predictions next to them:
# - k2_text: Embedding -> Bidirectional(LSTM) -> GRU: Keras 2 RNN configs carry `time_major`, which
#   Keras 3 rejects (also inside Bidirectional), so the converter must drop it;
# - k2_fallback: two inputs and a ThresholdedReLU layer, which Keras 3 no longer has, so the
#   converter must fall back to tf_keras.
_KERAS_2_BUILDER = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import tf_keras as keras

folder = Path(sys.argv[1])
tf.random.set_seed(0)
np.random.seed(0)
rng = np.random.default_rng(6)
layers = keras.layers
summary = {}

def save(name, model, train_x, train_y, fresh, names):
    model.fit(train_x, train_y, epochs=2, batch_size=16, verbose=0)
    model.save(folder / f"{name}.h5")
    arguments = list(fresh.values()) if len(fresh) > 1 else next(iter(fresh.values()))
    predictions = model.predict(arguments, verbose=0)
    predictions = predictions if isinstance(predictions, list) else [predictions]
    arrays = {f"in:{k}": v for k, v in fresh.items()}
    arrays.update({f"out:{k}": v for k, v in zip(names, predictions)})
    np.savez(folder / f"{name}.npz", **arrays)

tokens = keras.Input((15,), dtype="int32", name="tokens")
hidden = layers.Embedding(40, 8)(tokens)
hidden = layers.Bidirectional(layers.LSTM(6, return_sequences=True))(hidden)
hidden = layers.GRU(6)(hidden)
model = keras.Model(tokens, layers.Dense(3, activation="softmax", name="topic")(hidden))
model.compile("adam", "sparse_categorical_crossentropy")
save("k2_text", model, rng.integers(0, 40, (64, 15)).astype(np.int32), rng.integers(0, 3, 64),
     {"tokens": rng.integers(0, 40, (5, 15)).astype(np.int32)}, ["topic"])

features = keras.Input((5,), name="features")
ids = keras.Input((4,), dtype="int32", name="ids")
left = layers.ThresholdedReLU(theta=0.2)(layers.Dense(8)(features))
right = layers.Flatten()(layers.Embedding(12, 2)(ids))
model = keras.Model([features, ids], layers.Dense(2, name="value")(layers.Concatenate()([left, right])))
model.compile("adam", "mse")
save("k2_fallback", model, [rng.normal(size=(64, 5)), rng.integers(0, 12, (64, 4)).astype(np.int32)],
     rng.normal(size=(64, 2)),
     {"features": rng.normal(size=(5, 5)).astype(np.float32), "ids": rng.integers(0, 12, (5, 4)).astype(np.int32)},
     ["value"])
"""


@pytest.fixture(scope="session")
def keras_2_folder(tmp_path_factory) -> Path:
    """Folder with `k2_text.h5` / `k2_fallback.h5` saved by tf_keras, each with a `.npz` of inputs and predictions."""
    pytest.importorskip("tf_keras")
    folder = tmp_path_factory.mktemp("keras2")
    env = subprocess_env()
    env["TF_USE_LEGACY_KERAS"] = "1"
    completed = subprocess.run(
        [sys.executable, "-c", _KERAS_2_BUILDER, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder


def _load_keras_2(folder: Path, name: str) -> SavedModel:
    with np.load(folder / f"{name}.npz") as arrays:
        inputs = {key[3:]: arrays[key] for key in arrays.files if key.startswith("in:")}
        expected = {key[4:]: arrays[key] for key in arrays.files if key.startswith("out:")}
    return SavedModel(h5_path=folder / f"{name}.h5", inputs=inputs, expected=expected, keras_version_major="2")


@pytest.fixture(scope="session")
def keras_2_text(keras_2_folder) -> SavedModel:
    """Keras 2 functional text model with Bidirectional(LSTM) and GRU layers (configs with `time_major`)."""
    return _load_keras_2(keras_2_folder, "k2_text")


@pytest.fixture(scope="session")
def keras_2_fallback(keras_2_folder) -> SavedModel:
    """Keras 2 two-input model with a ThresholdedReLU layer, which only tf_keras can load."""
    return _load_keras_2(keras_2_folder, "k2_fallback")


def model_config(h5_path: Path) -> dict:
    """The model config stored in an .h5 file."""
    import h5py

    with h5py.File(h5_path, "r") as h5_file:
        raw = h5_file.attrs["model_config"]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
