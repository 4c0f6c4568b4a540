"""Pre-processing inside the model: Keras' image and audio pre-processing layers convert and run.

A model that takes raw pixels (Rescaling, adapted Normalization, Resizing, CenterCrop) runs with
`preprocessing.mean: 0, std: 1`; one that takes the raw waveform (MelSpectrogram, STFTSpectrogram)
with `audio_features: waveform`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from converters.keras_to_onnx import convert_keras_to_onnx
from predict.cli import main
from tests.conftest import preprocess, write_config

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
soundfile = pytest.importorskip("soundfile")

RAW_SIZE = 40  # the raw pixels the model takes; it resizes to 32 and crops 24 itself
SAMPLE_RATE = 8000
CHUNK = 4000  # samples per model input: 0.5 s


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory, image_folder):
    """A classifier on raw 0-255 pixels with Rescaling, an adapted Normalization, Resizing and CenterCrop."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    names = list(pd.read_csv(image_folder / "labels.csv")["image_path"])
    pixels = preprocess(image_folder, names, channels_first=False, size=RAW_SIZE) * 255.0
    normalization = layers.Normalization(axis=-1)
    normalization.adapt(pixels / 255.0)
    image = keras.Input((RAW_SIZE, RAW_SIZE, 3), name="pixels")
    hidden = normalization(layers.Rescaling(1 / 255.0)(image))
    hidden = layers.CenterCrop(24, 24)(layers.Resizing(32, 32)(hidden))
    hidden = layers.GlobalAveragePooling2D()(layers.Conv2D(6, 3, activation="relu")(hidden))
    model = keras.Model(image, layers.Dense(3, name="scores")(hidden))
    path = tmp_path_factory.mktemp("pixel_model") / "pixels.h5"
    model.save(path)
    return path, pixels, model.predict(pixels, verbose=0)


def test_image_preprocessing_layers_convert_with_parity(pixel_model, tmp_path):
    path, pixels, expected = pixel_model
    report = convert_keras_to_onnx(path, tmp_path / "pixels.onnx")
    assert report.input_names == ("pixels",)  # the adapted mean and variance are constants, not graph inputs
    assert "Resize" in _op_types(report.onnx_path)
    assert_allclose(_session(report.onnx_path).run(None, {"pixels": pixels})[0], expected, rtol=1e-4, atol=1e-5)


def test_raw_pixel_model_runs_with_mean_0_and_std_1(pixel_model, make_task, tmp_path, capsys):
    path, _, logits = pixel_model
    preprocessing = {"image_size": [RAW_SIZE, RAW_SIZE], "mean": [0], "std": [1]}
    assert main(["--config", str(make_task(path, preprocessing=preprocessing))]) == 0
    assert "(within tolerance" in capsys.readouterr().out  # Keras agrees on the first batch of real rows
    raw = pd.read_pickle(tmp_path / "out" / "validation_raw_predictions.pkl")
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert_allclose(raw["predictions"], expected, rtol=1e-4, atol=1e-5)


def _sounds(rows: int, seed: int) -> np.ndarray:
    """float32[rows, CHUNK]: tones of different pitch with a little noise."""
    rng = np.random.default_rng(seed)
    times = np.arange(CHUNK) / SAMPLE_RATE
    tones = [0.4 * np.sin(2 * np.pi * rng.uniform(100, 3000) * times) for _ in range(rows)]
    return (np.stack(tones) + 0.02 * rng.standard_normal((rows, CHUNK))).astype(np.float32)


def _audio_model(kind: str):
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    if kind == "mel":
        waveform = keras.Input((CHUNK,), name="waveform")
        features = layers.MelSpectrogram(
            fft_length=512, sequence_stride=256, sampling_rate=SAMPLE_RATE, num_mel_bins=32, power_to_db=True
        )(waveform)
    else:
        waveform = keras.Input((CHUNK, 1), name="waveform")
        features = layers.STFTSpectrogram(mode="log", frame_length=256, frame_step=128, fft_length=256)(waveform)
    hidden = layers.GlobalAveragePooling1D()(features)
    return keras.Model(waveform, layers.Dense(2, name="scores")(layers.Dense(8, activation="tanh")(hidden)))


@pytest.mark.parametrize("kind", ["mel", "stft"])
def test_audio_layers_convert_with_parity(kind, tmp_path):
    model = _audio_model(kind)
    path = tmp_path / f"{kind}.h5"
    model.save(path)
    sounds = _sounds(6, seed=1)
    inputs = sounds if kind == "mel" else sounds[..., None]
    expected = model.predict(inputs, verbose=0)
    report = convert_keras_to_onnx(path, tmp_path / f"{kind}.onnx")
    if kind == "mel":
        assert "DFT" in _op_types(report.onnx_path)  # tf.signal.stft's RFFT, as ONNX's DFT
    assert_allclose(_session(report.onnx_path).run(None, {"waveform": inputs})[0], expected, rtol=1e-4, atol=1e-4)


def test_raw_waveform_model_runs_with_audio_features_waveform(tmp_path, capsys):
    model = _audio_model("mel")
    path = tmp_path / "mel.h5"
    model.save(path)
    sounds = _sounds(5, seed=2)
    rows = []
    for index, sound in enumerate(sounds):
        soundfile.write(tmp_path / f"clip{index}.wav", sound, SAMPLE_RATE, subtype="FLOAT")
        rows.append({"path": f"clip{index}.wav", "energy": float(index), "brightness": 0.0})
    pd.DataFrame(rows).to_csv(tmp_path / "clips.csv", index=False)
    config = {
        "problem_type": "audio_regression",
        "model": str(path),
        "data": {"dataframe": "clips.csv", "audio_column": "path", "label_columns": ["energy", "brightness"]},
        "preprocessing": {"sample_rate": SAMPLE_RATE, "audio_features": "waveform"},
        "runtime": {"batch_size": 4, "num_workers": 0},
        "output": {"dir": "out"},
    }
    assert main(["--config", str(write_config(tmp_path / "task.yaml", config))]) == 0
    assert "(within tolerance" in capsys.readouterr().out
    raw = pd.read_pickle(tmp_path / "out" / "validation_raw_predictions.pkl")
    assert_allclose(raw["predictions"], model.predict(sounds, verbose=0), rtol=1e-4, atol=1e-4)
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert report["fidelity"]["within_tolerance"] is True and report["fidelity"]["rows"] == 4
