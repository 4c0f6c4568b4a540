"""Each feature recipe against its reference library, on a WAV file: within 1e-4 relative, element by element.

References: librosa for the `librosa` recipe and its settings; `tf.signal` for `tf_signal` (skipped
without TensorFlow). torchaudio is not installed here, so the `torchaudio` recipe is checked against
librosa called with `htk=True, norm=None, pad_mode="reflect"`, which is what
`torchaudio.transforms.MelSpectrogram`'s defaults compute (HTK mel scale, no filter norm, reflect
padding of centred frames, periodic Hann window, power 2), followed by `AmplitudeToDB(stype="power")`,
which is `power_to_db(ref=1.0, amin=1e-10, top_db=None)`. The references run in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from numpy.testing import assert_allclose

from predict.config import (
    AudioPreprocessing,
    FeatureNormalization,
    FeatureRecipe,
    Framing,
    LogScale,
    MelNorm,
    MelScale,
    MelTriangles,
    PadMode,
    Window,
)
from predict.data.audio import read_audio
from predict.data.spectrogram import MelFeatures, chunk_samples_for, frame_count, mel_filterbank

librosa = pytest.importorskip("librosa")
# librosa's audioread fallback imports modules Python 3.13 drops; nothing here uses it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:audioread.*", "ignore:Empty filters detected")

RATE = 16000
# Not a multiple of any hop below: librosa >= 0.10 pads its last frames from a slice of the clip, and
# when that slice is exactly fft_size // 2 samples long its reflect padding wraps around the slice
# instead of reflecting the clip as torch.stft (and so torchaudio) does.
SAMPLES = 24037


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> np.ndarray:
    """Two different clips (tone + chirp + noise with leading silence, and a noisier one reversed),
    written as 16-bit WAV and read back: float32[2, SAMPLES]."""
    folder = tmp_path_factory.mktemp("recipes")
    rng = np.random.default_rng(0)
    times = np.arange(SAMPLES) / RATE
    first = 0.4 * np.sin(2 * np.pi * 440 * times) + 0.2 * np.sin(2 * np.pi * (200 + 900 * times) * times)
    first += 0.05 * rng.standard_normal(SAMPLES)
    first[: RATE // 10] = 0.0
    second = (0.3 * np.sin(2 * np.pi * 3000 * times) * np.exp(-3 * times) + 0.2 * rng.standard_normal(SAMPLES))[::-1]
    read = []
    for index, clip in enumerate((first, second)):
        path = folder / f"clip{index}.wav"
        soundfile.write(path, clip.astype(np.float32), RATE, subtype="PCM_16")
        read.append(read_audio(path, RATE))
    return np.stack(read)


def ours(clips: np.ndarray, **keys) -> np.ndarray:
    return MelFeatures(AudioPreprocessing(sample_rate=RATE, **keys).spectrogram_recipe())(clips)


def librosa_mel(clip: np.ndarray, **kwargs) -> np.ndarray:
    return librosa.feature.melspectrogram(y=clip.astype(np.float64), sr=RATE, dtype=np.float64, **kwargs)


def power_db(mel: np.ndarray, top_db: float | None = None) -> np.ndarray:
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=top_db)


def standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-6)


# (id, config keys, reference of one clip)
LIBROSA_CASES = [
    ("default", {}, lambda y: power_db(librosa_mel(y, n_fft=2048, hop_length=512, n_mels=128))),
    (
        "log-offset-512-400-160",  # the most common recipe: n_fft 512, win_length 400, hop 160, log(mel + 1e-6)
        {
            "fft_size": 512,
            "window_size": 400,
            "hop_size": 160,
            "mel_frequency_bins": 80,
            "log_scale": LogScale.NATURAL,
            "log_offset": 1e-6,
        },
        lambda y: np.log(librosa_mel(y, n_fft=512, win_length=400, hop_length=160, n_mels=80) + 1e-6),
    ),
    (
        "hamming-edge-band-top-db",
        {
            "window_size": 512,
            "hop_size": 128,
            "mel_frequency_bins": 64,
            "window": Window.HAMMING,
            "pad_mode": PadMode.EDGE,
            "f_min": 60.0,
            "f_max": 7600.0,
            "top_db": 60.0,
        },
        lambda y: power_db(
            librosa_mel(
                y, n_fft=512, hop_length=128, n_mels=64, window="hamming", pad_mode="edge", fmin=60.0, fmax=7600.0
            ),
            top_db=60.0,
        ),
    ),
    (
        "magnitude-decibel",
        {"window_size": 1024, "hop_size": 256, "mel_frequency_bins": 96, "spectrum_power": 1},
        lambda y: librosa.amplitude_to_db(
            librosa_mel(y, n_fft=1024, hop_length=256, n_mels=96, power=1.0), ref=1.0, amin=1e-5, top_db=None
        ),
    ),
    (
        "not-centred-log10",
        {
            "fft_size": 512,
            "window_size": 400,
            "hop_size": 160,
            "mel_frequency_bins": 40,
            "center": False,
            "log_scale": LogScale.LOG10,
            "log_offset": 1e-3,
        },
        lambda y: np.log10(librosa_mel(y, n_fft=512, win_length=400, hop_length=160, n_mels=40, center=False) + 1e-3),
    ),
    (
        "htk-scale-slaney-norm-odd-fft-reflect",
        {
            "window_size": 511,
            "hop_size": 160,
            "mel_frequency_bins": 64,
            "mel_scale": MelScale.HTK,
            "pad_mode": PadMode.REFLECT,
        },
        lambda y: power_db(librosa_mel(y, n_fft=511, hop_length=160, n_mels=64, htk=True, pad_mode="reflect")),
    ),
    (
        "per-example-normalisation",
        {
            "window_size": 400,
            "hop_size": 160,
            "mel_frequency_bins": 64,
            "feature_normalization": FeatureNormalization.PER_EXAMPLE,
        },
        lambda y: standardised(power_db(librosa_mel(y, n_fft=400, hop_length=160, n_mels=64))),
    ),
    (
        "no-log",
        {"window_size": 256, "hop_size": 128, "mel_frequency_bins": 32, "log_scale": LogScale.NONE},
        lambda y: librosa_mel(y, n_fft=256, hop_length=128, n_mels=32),
    ),
]
TORCHAUDIO_CASES = [
    # MelSpectrogram(sample_rate=16000): n_fft=400, hop_length=200, n_mels=128.
    (
        "defaults",
        {"window_size": 400, "hop_size": 200},
        lambda y: power_db(
            librosa_mel(y, n_fft=400, hop_length=200, n_mels=128, htk=True, norm=None, pad_mode="reflect")
        ),
    ),
    # MelSpectrogram(n_fft=512, win_length=400, hop_length=160, n_mels=80, f_min=20.0, f_max=7600.0).
    (
        "512-400-160-band",
        {
            "fft_size": 512,
            "window_size": 400,
            "hop_size": 160,
            "mel_frequency_bins": 80,
            "f_min": 20.0,
            "f_max": 7600.0,
        },
        lambda y: power_db(
            librosa_mel(
                y,
                n_fft=512,
                win_length=400,
                hop_length=160,
                n_mels=80,
                fmin=20.0,
                fmax=7600.0,
                htk=True,
                norm=None,
                pad_mode="reflect",
            )
        ),
    ),
]


def check(features: np.ndarray, references: list[np.ndarray]) -> None:
    expected = np.stack(references)
    assert features.dtype == np.float32 and features.shape == expected.shape
    assert_allclose(features, expected, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    ("keys", "reference"), [case[1:] for case in LIBROSA_CASES], ids=[case[0] for case in LIBROSA_CASES]
)
def test_librosa_recipe_matches_librosa(clips, keys, reference):
    check(ours(clips, **keys), [reference(clip) for clip in clips])


@pytest.mark.parametrize(
    ("keys", "reference"), [case[1:] for case in TORCHAUDIO_CASES], ids=[case[0] for case in TORCHAUDIO_CASES]
)
def test_torchaudio_recipe_matches_librosa_with_torchaudio_defaults(clips, keys, reference):
    check(ours(clips, feature_recipe=FeatureRecipe.TORCHAUDIO, **keys), [reference(clip) for clip in clips])


@pytest.mark.parametrize(
    ("frame_length", "frame_step", "mels", "lower_hz", "upper_hz"),
    [(1024, 256, 80, 80.0, 7600.0), (400, 160, 80, 80.0, 7600.0), (255, 128, 40, 0.0, 8000.0)],
    ids=["tf-guide-1024-256", "400-fft-512", "odd-255"],
)
def test_tf_signal_recipe_matches_tf_signal(clips, frame_length, frame_step, mels, lower_hz, upper_hz):
    tf = pytest.importorskip("tensorflow")
    # The tf.signal guide's recipe; fft_length=None is the next power of 2.
    stfts = tf.signal.stft(tf.constant(clips.astype(np.float64)), frame_length=frame_length, frame_step=frame_step)
    weights = tf.signal.linear_to_mel_weight_matrix(mels, stfts.shape[-1], RATE, lower_hz, upper_hz, dtype=tf.float64)
    expected = tf.math.log(tf.tensordot(tf.abs(stfts), weights, 1) + 1e-6).numpy().transpose(0, 2, 1)
    keys = {
        "window_size": frame_length,
        "hop_size": frame_step,
        "mel_frequency_bins": mels,
        "f_min": lower_hz,
        "f_max": upper_hz,
    }
    check(ours(clips, feature_recipe=FeatureRecipe.TF_SIGNAL, **keys), list(expected))
    recipe = AudioPreprocessing(sample_rate=RATE, feature_recipe=FeatureRecipe.TF_SIGNAL, **keys).spectrogram_recipe()
    assert_allclose(mel_filterbank(recipe), weights.numpy().T, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("scale", "norm"), [(MelScale.SLANEY, MelNorm.SLANEY), (MelScale.HTK, MelNorm.NONE), (MelScale.HTK, MelNorm.SLANEY)]
)
def test_hertz_filterbank_equals_librosa_filters_mel(scale, norm):
    keys = {
        "window_size": 400,
        "fft_size": 512,
        "mel_frequency_bins": 40,
        "f_min": 30.0,
        "f_max": 7000.0,
        "mel_scale": scale,
        "mel_norm": norm,
    }
    recipe = AudioPreprocessing(sample_rate=RATE, **keys).spectrogram_recipe()
    expected = librosa.filters.mel(
        sr=RATE, n_fft=512, n_mels=40, fmin=30.0, fmax=7000.0, htk=scale is MelScale.HTK,
        norm="slaney" if norm is MelNorm.SLANEY else None, dtype=np.float64,
    )  # fmt: skip
    assert_allclose(mel_filterbank(recipe), expected, rtol=1e-9, atol=1e-15)


def test_recipes_fill_only_the_keys_left_unset():
    librosa_recipe = AudioPreprocessing(sample_rate=RATE).spectrogram_recipe()
    assert (librosa_recipe.fft_size, librosa_recipe.window_size, librosa_recipe.hop_size) == (2048, 2048, 512)
    assert (
        librosa_recipe.center
        and librosa_recipe.pad_mode is PadMode.CONSTANT
        and librosa_recipe.framing is Framing.LIBROSA
    )
    assert (librosa_recipe.mel_scale, librosa_recipe.mel_norm, librosa_recipe.mel_triangles) == (
        MelScale.SLANEY,
        MelNorm.SLANEY,
        MelTriangles.HERTZ,
    )
    assert (librosa_recipe.spectrum_power, librosa_recipe.log_scale, librosa_recipe.log_offset) == (
        2,
        LogScale.DECIBEL,
        0.0,
    )
    assert (librosa_recipe.f_min, librosa_recipe.f_max, librosa_recipe.top_db) == (0.0, 8000.0, None)

    torchaudio = AudioPreprocessing(
        sample_rate=RATE, feature_recipe=FeatureRecipe.TORCHAUDIO, window_size=400
    ).spectrogram_recipe()
    assert (torchaudio.mel_scale, torchaudio.mel_norm, torchaudio.pad_mode, torchaudio.fft_size) == (
        MelScale.HTK,
        MelNorm.NONE,
        PadMode.REFLECT,
        400,
    )

    tf_signal = AudioPreprocessing(
        sample_rate=RATE, feature_recipe=FeatureRecipe.TF_SIGNAL, window_size=400
    ).spectrogram_recipe()
    assert (tf_signal.fft_size, tf_signal.center, tf_signal.framing, tf_signal.mel_triangles) == (
        512,
        False,
        Framing.TF_SIGNAL,
        MelTriangles.MEL,
    )
    assert (tf_signal.spectrum_power, tf_signal.log_scale, tf_signal.log_offset) == (1, LogScale.NATURAL, 1e-6)

    explicit = AudioPreprocessing(
        sample_rate=RATE, feature_recipe=FeatureRecipe.TF_SIGNAL, window_size=400, fft_size=400, spectrum_power=2,
        log_scale=LogScale.DECIBEL, log_offset=0.0, mel_norm=MelNorm.SLANEY,
    ).spectrogram_recipe()  # fmt: skip
    assert (explicit.fft_size, explicit.spectrum_power, explicit.log_scale, explicit.log_offset) == (
        400,
        2,
        LogScale.DECIBEL,
        0.0,
    )
    assert explicit.mel_norm is MelNorm.SLANEY and explicit.mel_scale is MelScale.HTK  # the unset one stays tf_signal's


@pytest.mark.parametrize(
    ("keys", "frames_of_8000"),
    [
        ({}, 1 + 8000 // 512),  # centred, even FFT: 1 + C // hop
        ({"window_size": 511}, 1 + (8000 - 1) // 512),  # centred, odd FFT: padded by 2 * 255
        ({"window_size": 400, "fft_size": 512, "center": False}, 1 + (8000 - 512) // 512),  # frames of fft_size
        # frames of window_size (tf.signal)
        ({"window_size": 400, "feature_recipe": FeatureRecipe.TF_SIGNAL}, 1 + (8000 - 400) // 512),
    ],
)
def test_frame_count_and_its_inverse(keys, frames_of_8000):
    recipe = AudioPreprocessing(sample_rate=RATE, **keys).spectrogram_recipe()
    assert frame_count(recipe, 8000) == frames_of_8000
    for frames in (1, 2, 17, 100):
        samples = chunk_samples_for(recipe, frames)
        assert frame_count(recipe, samples) == frames and (
            samples == 1 or frame_count(recipe, samples - 1) == frames - 1
        )
    assert MelFeatures(recipe)(np.zeros((1, 8000), dtype=np.float32)).shape == (1, recipe.mel_bins, frames_of_8000)
