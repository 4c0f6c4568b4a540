"""Audio and metric learning end to end: the committed examples, WAV files written here, and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from numpy.testing import assert_allclose

from predict.cli import main
from predict.data.audio import read_audio, split_chunks
from predict.errors import ConfigError, InputError
from predict.pipeline import run_task
from predict.task import load_config
from tests.conftest import export_torch, preprocess, write_config

ROOT = Path(__file__).resolve().parents[1]

# (config, pkl keys, added CSV columns, metric, lowest acceptable value): the example models are
# trained (scripts/make_audio_and_metric_examples.py), so their metrics are far from chance.
EXAMPLES = [
    (
        "audio_classification",
        ["predictions", "labels", "audio_path"],
        ["pred_sound_chirp", "pred_sound_noise", "pred_sound_tone", "pred_sound"],
        "Accuracy",
        0.85,
    ),
    ("audio_regression", ["predictions", "labels", "audio_path"], ["pred_level_db"], "R2", 0.9),
    (
        "image_metric_learning",
        ["embeddings", "cosine_similarities", "similar_images", "image_path"],
        [f"top_{k}_similar_image" for k in (1, 2, 3)] + [f"top_{k}_cosine_similarity" for k in (1, 2, 3)],
        "mAP",
        0.5,
    ),
]


def read_outputs(folder: Path):
    csv = pd.read_csv(folder / "validation_predictions.csv", dtype=str, keep_default_na=False)
    with open(folder / "validation_raw_predictions.pkl", "rb") as handle:
        return csv, pickle.load(handle)


@pytest.mark.parametrize(
    ("name", "keys", "columns", "metric", "lowest"), EXAMPLES, ids=[example[0] for example in EXAMPLES]
)
def test_example_writes_the_contract(name, keys, columns, metric, lowest, tmp_path):
    config = ROOT / "configs" / f"{name}.yaml"
    assert main(["--config", str(config), "--quiet", "--set", f"output.dir={tmp_path}"]) == 0
    csv, raw = read_outputs(tmp_path)
    source = pd.read_csv(load_config(config).data.dataframe, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(csv[source.columns], source)
    assert list(csv.columns) == list(source.columns) + columns
    assert list(raw) == keys
    metrics = json.loads((tmp_path / "validation_metrics.json").read_text())
    assert metrics[metric] >= lowest


def test_metric_learning_example_files_agree_with_brute_force(tmp_path):
    config = ROOT / "configs" / "image_metric_learning.yaml"
    assert main(["--config", str(config), "--quiet", "--set", f"output.dir={tmp_path}"]) == 0
    csv, raw = read_outputs(tmp_path)
    embeddings = raw["embeddings"].astype(np.float64)
    assert raw["embeddings"].dtype == np.float32 and raw["similar_images"].shape == (96, 10)
    assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-6)
    full = embeddings @ embeddings.T
    np.fill_diagonal(full, -np.inf)
    assert_allclose(raw["cosine_similarities"], -np.sort(-full, axis=1)[:, :10], atol=1e-6)
    names = raw["image_path"]
    assert list(csv["top_1_similar_image"]) == list(names[raw["similar_images"][:, 0]])
    assert_allclose(csv["top_2_cosine_similarity"].astype(float), raw["cosine_similarities"][:, 1], rtol=1e-6)


class WaveformScorer(torch.nn.Module):
    """(batch, 1, 4000) waveform to 2 scores: log energy and mean of a learned filter's output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, 2, 15, stride=5)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.conv(waveform).square().mean(dim=2).add(1e-6).log()


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> Path:
    """WAV/FLAC/OGG files of tones and noise, 0.2 to 1.7 s at 8 to 22.05 kHz, and labels.csv."""
    folder = tmp_path_factory.mktemp("sounds")
    rng = np.random.default_rng(0)
    rows = []
    for index, (seconds, rate, extension) in enumerate(
        [(0.2, 8000, "wav"), (0.5, 16000, "wav"), (0.9, 22050, "flac"), (1.7, 8000, "ogg"), (1.2, 11025, "wav")]
    ):
        times = np.arange(round(seconds * rate)) / rate
        clip = (
            0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * times)
            if index % 2
            else 0.1 * rng.standard_normal(len(times))
        )
        soundfile.write(folder / f"s{index}.{extension}", clip.astype(np.float32), rate)
        rows.append({"path": f"s{index}.{extension}", "loud": float(index)})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


def audio_task(tmp_path: Path, model: Path, sounds: Path, **overrides) -> Path:
    config = {
        "problem_type": "audio_regression",
        "model": str(model),
        "data": {
            "dataframe": str(sounds / "labels.csv"),
            "data_folder": str(sounds),
            "audio_column": "path",
            "label_columns": ["loud"],
        },
        "preprocessing": {"sample_rate": 8000, "audio_features": "waveform", "inference_chunk_seconds": 0.5},
        "runtime": {"batch_size": 2, "num_workers": 0},
        "output": {"dir": str(tmp_path / "out")},
    }
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if name:
            config[section][name] = value
        else:
            config[section] = value
    return write_config(tmp_path / "task.yaml", config)


def test_long_clips_are_chunked_and_averaged(tmp_path, sounds):
    module = WaveformScorer().eval()
    model = tmp_path / "scorer.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, 1, 4000),),
        str(model),
        input_names=["waveform"],
        output_names=["scores"],
        dynamic_axes={"waveform": {0: "chunks"}, "scores": {0: "chunks"}},
        opset_version=17,
        dynamo=False,
    )
    # A two-output model scored as a test split: label columns the dataframe does not have.
    config = audio_task(tmp_path, model, sounds, **{"data.split": "test", "data.label_columns": ["energy", "filtered"]})
    assert main(["--config", str(config), "--quiet"]) == 0
    with open(tmp_path / "out" / "test_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    frame = pd.read_csv(sounds / "labels.csv")
    expected = []
    for path in frame["path"]:
        chunks = split_chunks(read_audio(sounds / path, 8000), 4000)
        with torch.no_grad():
            expected.append(module(torch.from_numpy(chunks)[:, None]).numpy().mean(axis=0))
    assert [len(split_chunks(read_audio(sounds / path, 8000), 4000)) for path in frame["path"]] == [1, 1, 2, 4, 3]
    assert_allclose(raw["predictions"], np.stack(expected), rtol=1e-4, atol=1e-5)
    assert list(raw) == ["predictions", "labels", "path"] and list(raw["path"]) == list(frame["path"])


def test_metric_learning_on_png_images(tmp_path, image_folder):
    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.conv = torch.nn.Conv2d(3, 6, 3)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.conv(image).mean(dim=(2, 3))

    module = Embedder().eval()
    model = export_torch(module, tmp_path / "embedder.onnx", output_name="embedding")
    config = {
        "problem_type": "image_metric_learning",
        "model": str(model),
        "data": {
            "dataframe": str(image_folder / "labels.csv"),
            "data_folder": str(image_folder),
            "image_column": "image_path",
            "label_columns": ["label"],
        },
        "preprocessing": {"image_size": [16, 16], "mean": [0, 0, 0], "std": [255, 255, 255]},
        "head": {"top_k_similar": 100},
        "runtime": {"batch_size": 8, "num_workers": 0},
        "output": {"dir": str(tmp_path / "out")},
    }
    summary = run_task(load_config(write_config(tmp_path / "task.yaml", config)), progress=False)
    assert "head.top_k_similar 100 capped at 19: the split has 20 row(s)" in summary.notes
    _csv, raw = read_outputs(tmp_path / "out")
    frame = pd.read_csv(image_folder / "labels.csv")
    with torch.no_grad():
        embeddings = module(
            torch.from_numpy(preprocess(image_folder, list(frame["image_path"]), channels_first=True))
        ).numpy()
    embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert_allclose(raw["embeddings"], embeddings, rtol=1e-4, atol=1e-5)
    full = embeddings.astype(np.float64) @ embeddings.T.astype(np.float64)
    np.fill_diagonal(full, -np.inf)
    assert_allclose(raw["cosine_similarities"], -np.sort(-full, axis=1)[:, :19], atol=1e-5)
    assert set(summary.metrics) == {"mAP"}


def test_audio_config_errors_name_their_keys(tmp_path, sounds, torch_models):
    _, model = torch_models["regression1"]
    config = audio_task(tmp_path, model, sounds, preprocessing={"hop_size": 0, "inference_chunk_seconds": -1})
    with pytest.raises(ConfigError) as error:
        load_config(config)
    message = str(error.value)
    assert (
        "preprocessing.sample_rate is missing: the sample rate (Hz) the model was trained at (audio_regression)"
        in message
    )
    assert "preprocessing.hop_size must be >= 1 (got 0)" in message
    assert "preprocessing.inference_chunk_seconds must be > 0 (got -1.0)" in message
    config = audio_task(tmp_path, model, sounds, preprocessing={"sample_rate": 8000, "inference_chunk_seconds": 1e-6})
    with pytest.raises(
        ConfigError, match=r"preprocessing.inference_chunk_seconds 1e-06 is shorter than one sample at 8000 Hz"
    ):
        load_config(config)
    config = audio_task(tmp_path, model, sounds, **{"preprocessing.audio_features": "mfcc"})
    with pytest.raises(
        ConfigError, match=r"preprocessing.audio_features must be one of waveform, log_mel \(got 'mfcc'\)"
    ):
        load_config(config)


def test_metric_learning_config_errors(tmp_path, image_folder, torch_models):
    _, model = torch_models["logits3"]
    config = {
        "problem_type": "image_metric_learning",
        "model": str(model),
        "data": {
            "dataframe": str(image_folder / "labels.csv"),
            "image_column": "image_path",
            "label_columns": ["label", "id"],
        },
        "preprocessing": {"image_size": [16, 16]},
        "head": {"top_k_similar": 0},
    }
    with pytest.raises(ConfigError, match=r"head.top_k_similar must be >= 1 \(got 0\)"):
        load_config(write_config(tmp_path / "task.yaml", config))
    config["head"] = {"top_k_similar": 5}
    with pytest.raises(ConfigError, match=r"data.label_columns: metric learning takes one label column .* got 2"):
        run_task(load_config(write_config(tmp_path / "task.yaml", config)), progress=False)
    _, one_output = torch_models["regression1"]
    config["model"], config["data"]["label_columns"] = str(one_output), ["label"]
    with pytest.raises(ConfigError, match=r"output 'scores' has shape \(\?, 1\); metric learning needs embeddings"):
        run_task(load_config(write_config(tmp_path / "task.yaml", config)), progress=False)


def test_unreadable_audio_names_its_row(tmp_path, sounds):
    folder = tmp_path / "bad"
    folder.mkdir()
    soundfile.write(folder / "good.wav", np.zeros(800, np.float32), 8000)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    pd.DataFrame({"path": ["good.wav", "broken.wav", "missing.wav"], "loud": [1, 2, 3]}).to_csv(
        folder / "labels.csv", index=False
    )
    model = tmp_path / "level.onnx"
    torch.onnx.export(
        torch.nn.Linear(800, 1),
        (torch.zeros(2, 800),),
        str(model),
        input_names=["waveform"],
        output_names=["level"],
        dynamic_axes={"waveform": {0: "chunks"}, "level": {0: "chunks"}},
        opset_version=17,
        dynamo=False,
    )
    config = audio_task(
        tmp_path,
        model,
        folder,
        data={"dataframe": str(folder / "labels.csv"), "audio_column": "path", "label_columns": ["loud"]},
        preprocessing={"sample_rate": 8000, "audio_features": "waveform"},
    )
    with pytest.raises(
        InputError, match=r"labels.csv: row 1, path 'broken.wav': not a readable audio file \(WAV, FLAC, OGG\)"
    ):
        run_task(load_config(config), progress=False)
    assert not (tmp_path / "out" / "validation_predictions.csv").exists()


def test_spectrogram_config_errors_name_their_keys(tmp_path, sounds, torch_models):
    _, model = torch_models["regression1"]
    recipe = {"sample_rate": 8000, "audio_features": "log_mel", "feature_recipe": "tf_signal", "window_size": 400}
    bad = recipe | {
        "fft_size": 256,
        "spectrum_power": 3,
        "center": True,
        "f_min": 5000.0,
        "f_max": 4100.0,
        "log_offset": 0.0,
        "top_db": 80.0,
    }
    with pytest.raises(ConfigError) as error:
        load_config(audio_task(tmp_path, model, sounds, preprocessing=bad))
    message = str(error.value)
    assert (
        "preprocessing.fft_size 256 must be >= preprocessing.window_size 400: the window must fit in the FFT" in message
    )
    assert "preprocessing.spectrum_power must be 1 (magnitude) or 2 (power) (got 3)" in message
    assert (
        "preprocessing.center must be false with framing: tf_signal (tf.signal.stft does not centre frames)" in message
    )
    assert "preprocessing.f_max must be <= sample_rate / 2 = 4000 Hz (got 4100)" in message
    assert "preprocessing.f_min 5000 must be < f_max 4100 Hz" in message
    assert "preprocessing.log_offset must be > 0 with log_scale: natural (silence would give -inf)" in message
    assert "preprocessing.top_db applies to log_scale: decibel only (got log_scale: natural)" in message
    decibel = recipe | {"log_scale": "decibel", "log_offset": -1.0, "top_db": 0.0, "f_min": -5.0}
    with pytest.raises(ConfigError) as error:
        load_config(audio_task(tmp_path, model, sounds, preprocessing=decibel))
    message = str(error.value)
    assert "preprocessing.log_offset must be >= 0 (got -1)" in message
    assert "preprocessing.top_db must be > 0 dB (got 0)" in message
    assert "preprocessing.f_min must be >= 0 Hz (got -5)" in message
    with pytest.raises(
        ConfigError,
        match=(
            r"preprocessing.log_scale must be one of decibel, natural, log10, none \(got 'decibels'\); "
            r"did you mean 'decibel'\?"
        ),
    ):
        load_config(audio_task(tmp_path, model, sounds, preprocessing=recipe | {"log_scale": "decibels"}))
    with pytest.raises(
        ConfigError,
        match=(
            r"preprocessing.feature_recipe must be one of librosa, torchaudio, tf_signal \(got 'tf.signal'\); "
            r"did you mean 'tf_signal'\?"
        ),
    ):
        load_config(audio_task(tmp_path, model, sounds, preprocessing=recipe | {"feature_recipe": "tf.signal"}))
    with pytest.raises(ConfigError, match=r"unknown key preprocessing.fft_sise: did you mean 'fft_size'\?"):
        load_config(audio_task(tmp_path, model, sounds, preprocessing=recipe | {"fft_sise": 512}))


class MelRegressor(torch.nn.Module):
    """(batch, 1, 40 mels, frames) features to one score: a fixed random projection of the frame mean."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(40, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.mean(dim=3)[:, 0])


@pytest.mark.parametrize("recipe", ["torchaudio", "tf_signal"])
def test_a_recipe_set_in_yaml_reaches_the_model(tmp_path, sounds, recipe):
    # The reference features come from librosa (torchaudio's definitions, see tests/data/test_spectrogram.py)
    # or tf.signal, computed here from the decoded chunks, not from predict.data.spectrogram.
    module = MelRegressor().eval()
    model = tmp_path / "mel.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, 1, 40, 11),),
        str(model),
        input_names=["log_mel"],
        output_names=["score"],
        dynamic_axes={"log_mel": {0: "chunks"}, "score": {0: "chunks"}},
        opset_version=17,
        dynamo=False,
    )
    keys = {
        "feature_recipe": recipe,
        "window_size": 400,
        "hop_size": 160,
        "mel_frequency_bins": 40,
        "feature_normalization": "per_example",
    }
    config = audio_task(
        tmp_path, model, sounds, preprocessing={"sample_rate": 8000, "audio_features": "log_mel", **keys}
    )
    task = load_config(config)
    assert main(["--config", str(config), "--quiet"]) == 0
    _, raw = read_outputs(tmp_path / "out")
    # 11 frames every 160 samples: centred (torchaudio) 10 * 160 samples; tf.signal frames of 400: 400 + 10 * 160.
    chunk = 400 + 10 * 160 if recipe == "tf_signal" else 10 * 160
    assert task.preprocessing.inference_chunk_seconds is None
    expected = []
    for path in pd.read_csv(sounds / "labels.csv")["path"]:
        chunks = split_chunks(read_audio(sounds / path, 8000), chunk).astype(np.float64)
        if recipe == "torchaudio":
            librosa = pytest.importorskip("librosa")
            mel = librosa.feature.melspectrogram(
                y=chunks,
                sr=8000,
                n_fft=400,
                hop_length=160,
                n_mels=40,
                htk=True,
                norm=None,
                pad_mode="reflect",
                dtype=np.float64,
            )
            features = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
        else:
            tf = pytest.importorskip("tensorflow")
            stfts = tf.signal.stft(tf.constant(chunks), frame_length=400, frame_step=160)
            weights = tf.signal.linear_to_mel_weight_matrix(40, stfts.shape[-1], 8000, 0.0, 4000.0, dtype=tf.float64)
            features = tf.math.log(tf.tensordot(tf.abs(stfts), weights, 1) + 1e-6).numpy().transpose(0, 2, 1)
        features = np.stack([(item - item.mean()) / (item.std() + 1e-6) for item in features])
        assert features.shape[1:] == (40, 11)
        with torch.no_grad():
            expected.append(module(torch.from_numpy(features[:, None]).float()).numpy().mean(axis=0))
    assert_allclose(raw["predictions"], np.stack(expected), rtol=1e-4, atol=1e-5)
