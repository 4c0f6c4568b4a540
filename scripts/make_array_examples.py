"""Generate the array examples (`configs/array_*.yaml`): real tables and series, small Keras `.h5` models.

The data ships inside installed packages (no downloads): scikit-learn's `load_digits` and
`load_diabetes`, and matplotlib's sample daily GOOG prices (`goog.npz`). Writes, deterministically:

- `configs/data/digits/X_test.npy` float32 (400, 64) pixel intensities / 16, `y_test.npy` float32
  (400, 10) one-hot: the seed-style files of the Keras FAQ. `configs/models/digits_mlp.h5`: a
  Sequential MLP, softmax over the 10 digits (trained on the other 1,397 images).
- `configs/data/diabetes/valid.csv` (`id`, ten standardised features, `progression`) and
  `test.csv` (no label): a dataframe of feature columns. `configs/models/diabetes_mlp.h5`: a
  functional MLP regressor (trained on the other 342 patients).
- `configs/data/goog/X_test.npy` float32 (N, 16, 2) windows of 16 trading days (close and log
  volume, standardised on the training years) and `y_test.npy` float32 (N,) the next day's
  standardised close. `configs/models/goog_lstm.h5`: an LSTM forecaster trained on 2004-2007.

After saving, each model is reloaded from disk and scored on the committed files; the printed
metrics are what `python -m predict --config configs/array_*.yaml` reports.

Needs the dev install (TensorFlow). Run from anywhere:

    python scripts/make_array_examples.py
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODELS = CONFIGS / "models"
SEED = 7
WINDOW = 16  # trading days per forecaster input


def seed_everything() -> None:
    import tensorflow as tf

    random.seed(SEED)
    np.random.seed(SEED)
    tf.random.set_seed(SEED)
    tf.config.experimental.enable_op_determinism()


def make_digits() -> None:
    """Seed-style X_test.npy / one-hot y_test.npy and a softmax MLP."""
    import keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    one_hot = np.eye(10, dtype=np.float32)[digits.target]
    order = np.random.default_rng(SEED).permutation(len(features))
    train, test = order[400:], order[:400]
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    model.fit(features[train], one_hot[train], epochs=40, batch_size=64, verbose=0)
    folder = CONFIGS / "data" / "digits"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X_test.npy", features[test])
    np.save(folder / "y_test.npy", one_hot[test])
    model.save(MODELS / "digits_mlp.h5")
    reloaded = keras.models.load_model(MODELS / "digits_mlp.h5", compile=False)
    accuracy = (reloaded.predict(features[test], verbose=0).argmax(1) == digits.target[test]).mean()
    print(f"digits: {len(test)} test rows, accuracy {accuracy:.4f}")


def make_diabetes() -> None:
    """A dataframe of feature columns (valid with labels, test without) and a functional MLP regressor."""
    import keras
    from sklearn.datasets import load_diabetes
    from sklearn.metrics import r2_score

    diabetes = load_diabetes(as_frame=True)  # features standardised by scikit-learn, as most tutorials use them
    frame = diabetes.frame.rename(columns={"target": "progression"})
    frame.insert(0, "id", [f"p{index:03d}" for index in range(len(frame))])
    order = np.random.default_rng(SEED).permutation(len(frame))
    train, valid = frame.iloc[order[100:]], frame.iloc[order[:100]]
    names = list(diabetes.feature_names)
    inputs = keras.Input((len(names),), name="features")
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, name="progression")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    model.fit(
        train[names].to_numpy(np.float32),
        train["progression"].to_numpy(np.float32),
        epochs=300,
        batch_size=32,
        verbose=0,
    )
    folder = CONFIGS / "data" / "diabetes"
    folder.mkdir(parents=True, exist_ok=True)
    valid.to_csv(folder / "valid.csv", index=False, float_format="%.6f")
    valid.drop(columns=["progression"]).to_csv(folder / "test.csv", index=False, float_format="%.6f")
    model.save(MODELS / "diabetes_mlp.h5")
    reloaded = keras.models.load_model(MODELS / "diabetes_mlp.h5", compile=False)
    committed = pd.read_csv(folder / "valid.csv")
    predicted = reloaded.predict(committed[names].to_numpy(np.float32), verbose=0)[:, 0]
    print(f"diabetes: {len(valid)} validation rows, R2 {r2_score(committed['progression'], predicted):.4f}")


def make_goog() -> None:
    """Windows of a real daily price series and an LSTM forecaster of the next close."""
    import keras
    from matplotlib import cbook
    from sklearn.metrics import r2_score

    with cbook.get_sample_data("goog.npz") as archive:
        prices = archive["price_data"]
    series = np.stack([prices["adj_close"], np.log(prices["volume"].astype(np.float64))], axis=1)
    years = prices["date"].astype("datetime64[Y]").astype(int) + 1970
    split = int(np.searchsorted(years, 2008))  # train on 2004-2007, forecast 2008
    mean, std = series[:split].mean(axis=0), series[:split].std(axis=0)
    scaled = ((series - mean) / std).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(scaled[:-1], WINDOW, axis=0).transpose(0, 2, 1)
    targets = scaled[WINDOW:, 0]
    train = slice(0, split - WINDOW)
    test = slice(split - WINDOW, len(windows))
    model = keras.Sequential([keras.Input((WINDOW, 2)), keras.layers.LSTM(16), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(windows[train], targets[train], epochs=30, batch_size=32, verbose=0)
    folder = CONFIGS / "data" / "goog"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X_test.npy", np.ascontiguousarray(windows[test]))
    np.save(folder / "y_test.npy", targets[test])
    model.save(MODELS / "goog_lstm.h5")
    reloaded = keras.models.load_model(MODELS / "goog_lstm.h5", compile=False)
    predicted = reloaded.predict(np.load(folder / "X_test.npy"), verbose=0)[:, 0]
    print(f"goog: {len(targets[test])} windows of 2008, R2 {r2_score(targets[test], predicted):.4f}")


def main() -> None:
    seed_everything()
    MODELS.mkdir(parents=True, exist_ok=True)
    make_digits()
    make_diabetes()
    make_goog()


if __name__ == "__main__":
    main()
