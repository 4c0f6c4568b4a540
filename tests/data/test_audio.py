"""Audio decoding against librosa (the dev-only reference), chunking and layouts; features: test_spectrogram.py."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from numpy.testing import assert_allclose

from predict.config import AudioFeatures, AudioPreprocessing, FeatureRecipe
from predict.data.audio import audio_input_from, read_audio, split_chunks
from predict.data.collate import Batch, average_chunks
from predict.data.context import ChunkContext
from predict.errors import ConfigError
from predict.runners.base import TensorSpec

librosa = pytest.importorskip("librosa")
# librosa's audioread fallback imports modules Python 3.13 drops; nothing here uses it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:audioread.*")


def reference_clip(rate: int = 16000, seconds: float = 1.5) -> np.ndarray:
    """A tone, a chirp and noise, with a stretch of silence: every part of the spectrum gets exercised."""
    rng = np.random.default_rng(0)
    times = np.arange(round(rate * seconds)) / rate
    clip = 0.4 * np.sin(2 * np.pi * 440 * times) + 0.2 * np.sin(2 * np.pi * (200 + 900 * times) * times)
    clip += 0.05 * rng.standard_normal(len(times))
    clip[: rate // 10] = 0.0
    return clip.astype(np.float32)


@pytest.mark.parametrize(
    ("extension", "rate", "subtype"),
    [("wav", 16000, "FLOAT"), ("wav", 44100, "PCM_16"), ("flac", 22050, "PCM_24"), ("ogg", 11025, "VORBIS")],
)
def test_read_audio_equals_librosa_load(tmp_path, extension, rate, subtype):
    stereo = np.stack([reference_clip(rate), 0.5 * reference_clip(rate)[::-1]], axis=1)
    path = tmp_path / f"clip.{extension}"
    soundfile.write(path, stereo, rate, subtype=subtype)
    expected, _ = librosa.load(path, sr=16000, mono=True)
    samples = read_audio(path, 16000)
    assert samples.dtype == np.float32 and samples.shape == expected.shape
    assert_allclose(samples, expected, atol=1e-6)


def test_split_chunks_pads_short_clips_and_aligns_the_last_chunk_to_the_end():
    clip = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(split_chunks(clip[:3], 4), [[1, 2, 3, 0]])
    np.testing.assert_array_equal(split_chunks(clip[:4], 4), [[1, 2, 3, 4]])
    np.testing.assert_array_equal(split_chunks(clip, 4), [[1, 2, 3, 4], [5, 6, 7, 8], [7, 8, 9, 10]])
    np.testing.assert_array_equal(split_chunks(clip[:8], 4), [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_average_chunks_means_each_rows_chunks():
    outputs = {"scores": np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], np.float32)}
    batch = Batch(np.arange(3), {}, [], ChunkContext(chunk_counts=np.array([2, 1, 3])))
    averaged = average_chunks(outputs, batch)["scores"]
    assert averaged.dtype == np.float32
    np.testing.assert_array_equal(averaged, [[2, 1], [5, 5], [2, 3]])
    assert average_chunks(outputs, Batch(np.arange(6), {}, [], None)) is outputs


def preprocessing(**overrides) -> AudioPreprocessing:
    values = {"sample_rate": 8000, "mel_frequency_bins": 64, "window_size": 256, "hop_size": 512} | overrides
    return AudioPreprocessing(**values)


@pytest.mark.parametrize(
    ("shape", "features", "seconds", "axes", "chunk"),
    [
        ((None, 8000), AudioFeatures.WAVEFORM, None, ("time",), 8000),
        ((None, 1, None), AudioFeatures.WAVEFORM, 0.5, ("channel", "time"), 4000),
        ((None, 64, 17, 1), AudioFeatures.LOG_MEL, None, ("mels", "time", "channel"), 8192),
        ((None, 1, 17, 64), AudioFeatures.LOG_MEL, 1.024, ("channel", "time", "mels"), 8192),
        ((None, None, 64), AudioFeatures.LOG_MEL, 1.024, ("time", "mels"), 8192),
    ],
)
def test_model_input_layouts(shape, features, seconds, axes, chunk):
    spec = TensorSpec(name="audio", shape=shape, dtype=np.dtype(np.float32))
    audio_input = audio_input_from(
        spec, preprocessing(audio_features=features, inference_chunk_seconds=seconds), model_name="m.onnx"
    )
    assert audio_input.axes == axes and audio_input.chunk_samples == chunk


@pytest.mark.parametrize(
    ("shape", "overrides", "message"),
    [
        (
            (None, 8000, 2),
            {"audio_features": AudioFeatures.WAVEFORM},
            r"has shape \(\?, 8000, 2\); preprocessing.audio_features: waveform needs",
        ),
        ((None, 40, 17), {}, r"no axis has preprocessing.mel_frequency_bins = 64 entries"),
        ((None, 64, 64), {}, r"the mel axis is ambiguous"),
        (
            (None, 64, None),
            {},
            r"preprocessing.inference_chunk_seconds is missing and model m.onnx takes any number of frames",
        ),
        (
            (None, 64, 17),
            {"inference_chunk_seconds": 2.0},
            r"gives 32 frames per chunk but model m.onnx takes 17 .*set it to 1.024",
        ),
        (
            (None, 8000),
            {"audio_features": AudioFeatures.WAVEFORM, "inference_chunk_seconds": 0.5},
            r"gives 4000 samples .* set it to 1 ",
        ),
    ],
)
def test_model_input_errors_name_the_key(shape, overrides, message):
    spec = TensorSpec(name="audio", shape=shape, dtype=np.dtype(np.float32))
    with pytest.raises(ConfigError, match=message):
        audio_input_from(spec, preprocessing(**overrides), model_name="m.onnx")


def test_integer_audio_input_is_refused():
    spec = TensorSpec(name="audio", shape=(None, 8000), dtype=np.dtype(np.int16))
    with pytest.raises(ConfigError, match=r"input 'audio' takes int16; audio models need float"):
        audio_input_from(spec, preprocessing(audio_features=AudioFeatures.WAVEFORM), model_name="m.onnx")


def test_uncentred_frames_set_the_chunk_length():
    # 17 frames of 256 samples every 512: 256 + 16 * 512 samples, not the centred 16 * 512.
    spec = TensorSpec(name="audio", shape=(None, 64, 17), dtype=np.dtype(np.float32))
    audio_input = audio_input_from(spec, preprocessing(center=False), model_name="m.onnx")
    assert audio_input.chunk_samples == 256 + 16 * 512
    tf_framing = preprocessing(feature_recipe=FeatureRecipe.TF_SIGNAL, window_size=200, fft_size=256)
    assert audio_input_from(spec, tf_framing, model_name="m.onnx").chunk_samples == 200 + 16 * 512
    with pytest.raises(ConfigError, match=r"gives 17 frames per chunk but model m.onnx takes 18 .* set it to 1.1"):
        audio_input_from(TensorSpec(name="audio", shape=(None, 64, 18), dtype=np.dtype(np.float32)),
                         preprocessing(center=False, inference_chunk_seconds=1.056), model_name="m.onnx")  # fmt: skip


def test_chunk_shorter_than_an_uncentred_frame_is_refused():
    spec = TensorSpec(name="audio", shape=(None, 64, None), dtype=np.dtype(np.float32))
    with pytest.raises(
        ConfigError, match=r"inference_chunk_seconds 0.01 gives 80 samples per chunk, shorter than one frame of 256"
    ):
        audio_input_from(spec, preprocessing(center=False, inference_chunk_seconds=0.01), model_name="m.onnx")
