"""Generate the example data and models for the audio and image metric learning configs.

Writes, deterministically (fixed seeds; rerunnable, old outputs replaced):

- `configs/data/sounds/clips/*.{wav,flac,ogg}` and `configs/data/sounds/valid.csv`
  (`id, audio_path, sound, level_db`): synthesised clips of 0.4 to 2.6 s, one of three sounds
  (`tone`: a sine at 300 to 1500 Hz; `chirp`: a sweep over 300 to 3000 Hz; `noise`: white noise),
  at a random level (`level_db`, RMS in dBFS). Files are written at 8, 11.025 and 16 kHz, so
  resampling to the models' 8 kHz is exercised, and clips longer than 1 s are chunked.
- `configs/models/sounds_classifier.h5`: a Keras CNN on log-mels, input float32[N, 64, 17, 1]
  (64 mel bands x 17 frames of one 1.024 s chunk at 8 kHz, window 256, hop 512), softmax over
  `chirp, noise, tone` (sorted).
- `configs/models/sounds_level.onnx`: a torch 1-D CNN on the raw waveform, float32[N, 8000]
  (1 s at 8 kHz) to `level_db` float32[N, 1].
- `configs/models/shapes_embedder.onnx`: a torch CNN mapping the `shapes` images
  (float32[N, 3, 32, 32], see scripts/make_examples.py) to 16-d embeddings, trained as a cosine
  classifier (softmax over scaled cosine similarities to one learned vector per shape).

Needs the dev install (TensorFlow, torch). Run: `python scripts/make_audio_and_metric_examples.py`
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT / "src"))
sys.path.insert(0, str(REPOSITORY_ROOT / "scripts"))

from make_examples import CLASS_NAMES as SHAPE_NAMES  # noqa: E402  (the shapes images' generator)
from make_examples import draw_split, preprocess_image  # noqa: E402

from predict.config import AudioPreprocessing  # noqa: E402
from predict.data.audio import read_audio, split_chunks  # noqa: E402
from predict.data.spectrogram import MelFeatures  # noqa: E402

CONFIGS_FOLDER = REPOSITORY_ROOT / "configs"
SOUNDS_FOLDER = CONFIGS_FOLDER / "data" / "sounds"
CLIPS_FOLDER = SOUNDS_FOLDER / "clips"
MODELS_FOLDER = CONFIGS_FOLDER / "models"
CLASSIFIER_PATH = MODELS_FOLDER / "sounds_classifier.h5"
LEVEL_PATH = MODELS_FOLDER / "sounds_level.onnx"
EMBEDDER_PATH = MODELS_FOLDER / "shapes_embedder.onnx"

SOUND_NAMES = ("chirp", "noise", "tone")  # sorted: output i of the classifier is SOUND_NAMES[i]
# Must match configs/audio_*.yaml.
SAMPLE_RATE = 8000
MEL_BINS = 64
WINDOW_SIZE = 256
HOP_SIZE = 512  # > window: 17 frames per 1.024 s chunk keep the classifier tiny
CLASSIFIER_CHUNK = (17 - 1) * HOP_SIZE  # the classifier's static 17 frames
LEVEL_CHUNK = SAMPLE_RATE  # 1 s
FILE_RATES = {"wav": 8000, "flac": 16000, "ogg": 11025}
CLIPS_PER_SOUND = 6  # 18 committed clips, about 0.2 MB
TRAIN_CLIPS = 600
SEED_VALID, SEED_TRAIN, SEED_MODEL = 1, 0, 42


def synthesise(rng: np.random.Generator, sound: str, seconds: float, rate: int) -> tuple[np.ndarray, float]:
    """One clip at `rate` Hz.

    Returns:
        float32[round(seconds * rate)] samples in [-1, 1], and their RMS level in dBFS.
    """
    times = np.arange(round(seconds * rate)) / rate
    if sound == "tone":
        wave = np.sin(2 * np.pi * rng.uniform(300, 1500) * times + rng.uniform(0, 2 * np.pi))
    elif sound == "chirp":
        start, stop = rng.uniform(300, 800), rng.uniform(1500, 3000)
        phase = 2 * np.pi * (start * times + (stop - start) * times**2 / (2 * seconds))
        wave = np.sin(phase)
    else:
        wave = rng.standard_normal(len(times))
    level_db = rng.uniform(-30, -8)
    wave = wave / np.sqrt(np.mean(wave**2)) * 10 ** (level_db / 20)
    wave = np.clip(wave, -1, 1).astype(np.float32)
    return wave, float(10 * np.log10(np.mean(wave.astype(np.float64) ** 2)))


def write_clips() -> pd.DataFrame:
    """Write the committed clips and valid.csv; return the dataframe."""
    CLIPS_FOLDER.mkdir(parents=True, exist_ok=True)
    for stale in CLIPS_FOLDER.iterdir():
        stale.unlink()
    rng = np.random.default_rng(SEED_VALID)
    rows = []
    sounds = rng.permutation(np.repeat(SOUND_NAMES, CLIPS_PER_SOUND))
    formats = list(FILE_RATES)
    for number, sound in enumerate(sounds, start=1):
        extension = formats[number % len(formats)]
        rate = FILE_RATES[extension]
        wave, level_db = synthesise(rng, str(sound), rng.uniform(0.4, 2.6), rate)
        name = f"clip_{number:02d}.{extension}"
        subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS"}[extension]
        soundfile.write(CLIPS_FOLDER / name, wave, rate, subtype=subtype)
        rows.append(
            {"id": f"clip-{number:02d}", "audio_path": name, "sound": str(sound), "level_db": round(level_db, 3)}
        )
    frame = pd.DataFrame(rows)
    frame.to_csv(SOUNDS_FOLDER / "valid.csv", index=False)
    return frame


def training_clips(chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-memory training chunks at SAMPLE_RATE: float32[N, chunk] waves, int64[N] classes, float32[N] levels."""
    rng = np.random.default_rng(SEED_TRAIN)
    waves, classes, levels = [], [], []
    for index in range(TRAIN_CLIPS):
        sound = SOUND_NAMES[index % len(SOUND_NAMES)]
        wave, level = synthesise(rng, sound, chunk / SAMPLE_RATE, SAMPLE_RATE)
        waves.append(wave)
        classes.append(index % len(SOUND_NAMES))
        levels.append(level)
    return np.stack(waves), np.array(classes), np.array(levels, dtype=np.float32)


def log_mel_features() -> MelFeatures:
    """The classifier's features: the librosa recipe, as configs/audio_classification.yaml sets it."""
    preprocessing = AudioPreprocessing(
        sample_rate=SAMPLE_RATE, mel_frequency_bins=MEL_BINS, window_size=WINDOW_SIZE, hop_size=HOP_SIZE
    )
    return MelFeatures(preprocessing.spectrogram_recipe())


def train_classifier() -> None:
    """A Keras CNN on (64 mels, 17 frames, 1) log-mels, saved as .h5."""
    import keras

    keras.utils.set_random_seed(SEED_MODEL)
    waves, classes, _ = training_clips(CLASSIFIER_CHUNK)
    features = log_mel_features()(waves)
    model = keras.Sequential(
        [
            keras.Input((MEL_BINS, 17, 1), name="log_mel"),
            keras.layers.Rescaling(1 / 40.0, offset=2.0),  # -100..+10 dB to roughly -0.5..2.3
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(SOUND_NAMES), activation="softmax"),
        ],
        name="sounds_classifier",
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(features[..., None], classes, batch_size=32, epochs=15, verbose=0)
    model.save(CLASSIFIER_PATH, include_optimizer=False)


def train_level_regressor() -> None:
    """A torch 1-D CNN on 1 s waveforms predicting the RMS level in dBFS, exported to ONNX."""
    import torch
    from torch import nn

    class Level(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 9, padding=4)
            self.out = nn.Linear(4, 1)

        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            energy = self.conv(waveform.unsqueeze(1)).square().mean(dim=2)
            return self.out(10 * torch.log10(energy + 1e-8))

    torch.manual_seed(SEED_MODEL)
    waves, _, levels = training_clips(LEVEL_CHUNK)
    inputs, targets = torch.from_numpy(waves), torch.from_numpy(levels)[:, None]
    model = Level()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
    print(f"level regressor: train RMSE {loss.item() ** 0.5:.3f} dB")
    _export(model.eval(), torch.zeros(2, LEVEL_CHUNK), LEVEL_PATH, "waveform", "level_db")


def train_embedder() -> None:
    """A torch CNN trained as a cosine classifier on the shapes images; its 16-d embedding is exported."""
    import torch
    from torch import nn

    torch.manual_seed(SEED_MODEL)
    samples = draw_split(0, 400)
    images = np.stack([preprocess_image(sample.image) for sample in samples]).transpose(0, 3, 1, 2)
    classes = torch.tensor([SHAPE_NAMES.index(sample.shape) for sample in samples])
    embedder = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 16),
    )
    # A cosine classifier (NormFace): logits from the L2-normalised embedding, so the training
    # objective is the very cosine similarity the metric learning head ranks by.
    weights = nn.Parameter(torch.randn(len(SHAPE_NAMES), 16))

    def classifier(images: torch.Tensor) -> torch.Tensor:
        embedding = nn.functional.normalize(embedder(images), dim=1)
        return 16.0 * embedding @ nn.functional.normalize(weights, dim=1).T

    inputs = torch.from_numpy(np.ascontiguousarray(images))
    optimizer = torch.optim.Adam([*embedder.parameters(), weights], lr=3e-3)
    for _ in range(30):
        order = torch.randperm(len(inputs))
        for start in range(0, len(order), 64):
            rows = order[start : start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(classifier(inputs[rows]), classes[rows]).backward()
            optimizer.step()
    _export(embedder.eval(), torch.zeros(2, 3, 32, 32), EMBEDDER_PATH, "image", "embedding")


def _export(model, example, path: Path, input_name: str, output_name: str) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def verify(frame: pd.DataFrame) -> None:
    """Score the committed clips as `predict` will (mean over chunks), and print accuracy and MAE."""
    import keras
    import onnxruntime

    classifier = keras.models.load_model(CLASSIFIER_PATH, compile=False)
    level = onnxruntime.InferenceSession(str(LEVEL_PATH), providers=["CPUExecutionProvider"])
    log_mel = log_mel_features()
    correct, errors = 0, []
    for path, sound, level_db in zip(frame["audio_path"], frame["sound"], frame["level_db"]):
        samples = read_audio(CLIPS_FOLDER / path, SAMPLE_RATE)
        probabilities = classifier.predict(log_mel(split_chunks(samples, CLASSIFIER_CHUNK))[..., None], verbose=0)
        correct += SOUND_NAMES[int(probabilities.mean(axis=0).argmax())] == sound
        (predicted,) = level.run(None, {"waveform": split_chunks(samples, LEVEL_CHUNK)})
        errors.append(abs(float(predicted.mean()) - level_db))
    print(
        f"classifier accuracy {correct / len(frame):.3f}; "
        f"level MAE {np.mean(errors):.3f} dB on {len(frame)} committed clips"
    )


def main() -> None:
    """Write the clips, train and save the three models, verify, print sizes."""
    started = time.perf_counter()
    MODELS_FOLDER.mkdir(parents=True, exist_ok=True)
    frame = write_clips()
    train_classifier()
    train_level_regressor()
    train_embedder()
    verify(frame)
    sizes = {path: path.stat().st_size for path in (CLASSIFIER_PATH, LEVEL_PATH, EMBEDDER_PATH)}
    sizes[CLIPS_FOLDER] = sum(path.stat().st_size for path in CLIPS_FOLDER.iterdir())
    for path, size in sizes.items():
        print(f"  {path.relative_to(REPOSITORY_ROOT)}: {size / 1024:.1f} KiB")
    print(f"  total: {sum(sizes.values()) / 1024:.1f} KiB; done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
