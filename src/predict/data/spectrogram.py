"""Mel spectrogram features as librosa, torchaudio or tf.signal compute them, in torch (float64).

A `SpectrogramRecipe` (`AudioPreprocessing.spectrogram_recipe()`: the keys set, and the
`feature_recipe`'s defaults for the others) says exactly what is computed from a chunk of C samples:

1. Framing. `center`: the chunk is padded with `fft_size // 2` samples at both ends (`pad_mode`:
   numpy's constant, reflect or edge), so frame t is centred on sample `t * hop_size`. Frames of
   `fft_size` samples start every `hop_size` samples. The periodic `window` of `window_size` samples
   sits centred in each frame (`framing: librosa`, as librosa, torch.stft and torchaudio do), or at
   its start, the frame being `window_size` samples zero-padded at its end to `fft_size`
   (`framing: tf_signal`, as tf.signal.stft does; its windows are periodic for even lengths only, an
   odd `window_size` gets a symmetric one as tf.signal's do). Frames: `1 + (P - fft_size) // hop_size` for
   P padded samples (`frame_count`).
2. Spectrum: `|rfft(frame * window)| ** spectrum_power` (2: power, 1: magnitude).
3. Mel filters, `mel_bins` of them with edges equally spaced on the `mel_scale` from `f_min` to
   `f_max`: triangles over Hz (`mel_triangles: hertz`, `librosa.filters.mel` and torchaudio's
   `melscale_fbanks`, FFT bin k at `k * sample_rate / fft_size` Hz) or over mels
   (`mel_triangles: mel`, `tf.signal.linear_to_mel_weight_matrix`, bins from 0 to sample_rate / 2
   and the DC bin zeroed); `mel_norm: slaney` scales each filter by 2 / (its width in Hz).
4. Log (`log_scale`), with `m` the mel energy and `o` the `log_offset`:
   - decibel: `10 log10(max(m + o, 1e-10))` for power, `20 log10(max(m + o, 1e-5))` for magnitude
     (librosa's `power_to_db(ref=1.0, amin=1e-10)` / `amplitude_to_db(ref=1.0, amin=1e-5)`, and
     torchaudio's `AmplitudeToDB(stype="power")`); `top_db` then raises every value to at least the
     chunk's maximum - top_db;
   - natural: `ln(m + o)`; log10: `log10(m + o)` (the usual `log(mel + 1e-6)`); none: `m`.
5. `feature_normalization: per_example`: `(x - mean) / (std + 1e-6)` over the chunk's whole
   (mels, frames) array, std as numpy's (ddof 0).

The three recipes (their library's defaults; sizes, bands and f_min/f_max are always the config's):

| recipe | fft_size | center, pad_mode | framing | mel_scale, mel_norm, mel_triangles | power | log |
|---|---|---|---|---|---|---|
| librosa | window_size | true, constant | librosa | slaney, slaney, hertz | 2 | decibel |
| torchaudio | window_size | true, reflect | librosa | htk, none, hertz | 2 | decibel |
| tf_signal | next power of 2 | false | tf_signal | htk, none, mel | 1 | natural, offset 1e-6 |
"""

from __future__ import annotations

import math

import numpy as np
import torch

from predict.config import SpectrogramRecipe
from predict.enums import FeatureNormalization, Framing, LogScale, MelNorm, MelScale, MelTriangles, PadMode, Window

_POWER_FLOOR = 1e-10  # librosa power_to_db's amin: -100 dB for silence
_MAGNITUDE_FLOOR = 1e-5  # librosa amplitude_to_db's amin: the same -100 dB
_NORMALIZATION_EPSILON = 1e-6


def padding(recipe: SpectrogramRecipe) -> tuple[int, int]:
    """Samples added before and after a chunk before it is cut into frames of `fft_size`."""
    if recipe.center:
        return recipe.fft_size // 2, recipe.fft_size // 2
    if recipe.framing is Framing.TF_SIGNAL:
        return 0, recipe.fft_size - recipe.window_size
    return 0, 0


def frame_count(recipe: SpectrogramRecipe, samples: int) -> int:
    """Frames of a chunk of `samples` samples; 0 when it is shorter than one frame."""
    padded = samples + sum(padding(recipe))
    return 0 if padded < recipe.fft_size else 1 + (padded - recipe.fft_size) // recipe.hop_size


def chunk_samples_for(recipe: SpectrogramRecipe, frames: int) -> int:
    """The shortest chunk (>= 1 sample) that gives `frames` frames."""
    return max(1, recipe.fft_size + (frames - 1) * recipe.hop_size - sum(padding(recipe)))


def mel_filterbank(recipe: SpectrogramRecipe) -> np.ndarray:
    """The recipe's mel filters (step 3 of the module docstring).

    Equals `librosa.filters.mel(sr, n_fft=fft_size, n_mels, fmin=f_min, fmax=f_max, htk=mel_scale == htk,
    norm="slaney" or None)` for `mel_triangles: hertz`, and `tf.signal.linear_to_mel_weight_matrix(...)`
    transposed for the tf_signal recipe.

    Returns:
        float64[mel_bins, fft_size // 2 + 1] filter weights.
    """
    bins = recipe.fft_size // 2 + 1
    mel_edges = np.linspace(
        _hz_to_mel(recipe.f_min, recipe.mel_scale), _hz_to_mel(recipe.f_max, recipe.mel_scale), recipe.mel_bins + 2
    )
    hz_edges = _mel_to_hz(mel_edges, recipe.mel_scale)
    if recipe.mel_triangles is MelTriangles.HERTZ:
        positions, edges = np.fft.rfftfreq(recipe.fft_size, d=1.0 / recipe.sample_rate), hz_edges
    else:  # tf.signal: bins spread from 0 to Nyquist, measured in mels
        positions = _hz_to_mel(np.linspace(0.0, recipe.sample_rate / 2, bins), recipe.mel_scale)
        edges = mel_edges
    lower = (positions[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - positions[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if recipe.mel_triangles is MelTriangles.MEL:
        weights[:, 0] = 0.0  # linear_to_mel_weight_matrix zeroes the DC bin (as HTK does)
    if recipe.mel_norm is MelNorm.SLANEY:
        weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights


# Slaney's auditory-toolbox mel scale (librosa's default, htk=False): linear below 1 kHz, log above.
_MEL_LINEAR_HZ = 200.0 / 3
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_LINEAR_HZ
_MEL_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: float | np.ndarray, scale: MelScale) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    if scale is MelScale.HTK:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    linear = hz / _MEL_LINEAR_HZ
    logarithmic = _MEL_BREAK + np.log(np.maximum(hz, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return np.where(hz >= _MEL_BREAK_HZ, logarithmic, linear)


def _mel_to_hz(mels: np.ndarray, scale: MelScale) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    if scale is MelScale.HTK:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear = mels * _MEL_LINEAR_HZ
    logarithmic = _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (np.maximum(mels, _MEL_BREAK) - _MEL_BREAK))
    return np.where(mels >= _MEL_BREAK, logarithmic, linear)


def _frame_window(recipe: SpectrogramRecipe) -> torch.Tensor:
    """float64[fft_size]: the periodic window, placed in the frame as `framing` says, zeros elsewhere."""
    make = torch.hann_window if recipe.window is Window.HANN else torch.hamming_window
    # tf.signal's windows honour periodic=True only for even lengths: an odd one comes out symmetric.
    periodic = recipe.framing is Framing.LIBROSA or recipe.window_size % 2 == 0
    window = make(recipe.window_size, periodic=periodic, dtype=torch.float64)
    start = (recipe.fft_size - recipe.window_size) // 2 if recipe.framing is Framing.LIBROSA else 0
    frame = torch.zeros(recipe.fft_size, dtype=torch.float64)
    frame[start : start + recipe.window_size] = window
    return frame


class MelFeatures:
    """Mel (log) spectrograms of chunks, exactly as the module docstring says."""

    def __init__(self, recipe: SpectrogramRecipe) -> None:
        self.recipe = recipe
        self.window = _frame_window(recipe)
        self.filterbank = torch.from_numpy(mel_filterbank(recipe))

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        """float32[N, C] samples to float32[N, mel_bins, frame_count(C)] features.

        Computed in float64 (as cheap as float32 at these sizes), so it matches the reference
        libraries run in float64 to well under 1e-4 relative.

        Raises:
            ValueError: a chunk is shorter than one frame (the loader's chunk length rules this out).
        """
        recipe = self.recipe
        before, after = padding(recipe)
        samples = torch.from_numpy(chunks).to(torch.float64)
        if (before or after) and recipe.pad_mode is PadMode.CONSTANT:
            samples = torch.nn.functional.pad(samples, (before, after))
        elif before or after:  # numpy reflects any length; torch's reflect needs more samples than the padding
            samples = torch.from_numpy(np.pad(samples.numpy(), ((0, 0), (before, after)), mode=recipe.pad_mode.value))
        if samples.shape[1] < recipe.fft_size:
            raise ValueError(f"a chunk of {chunks.shape[1]} samples is shorter than one frame of {recipe.fft_size}")
        spectrum = torch.stft(
            samples,
            n_fft=recipe.fft_size,
            hop_length=recipe.hop_size,
            win_length=recipe.fft_size,
            window=self.window,
            center=False,
            return_complex=True,
        )
        power = spectrum.real.square() + spectrum.imag.square()
        energies = power if recipe.spectrum_power == 2 else power.sqrt()
        mel = torch.matmul(self.filterbank, energies) + recipe.log_offset
        if recipe.log_scale is LogScale.DECIBEL:
            if recipe.spectrum_power == 2:
                values = 10.0 * torch.log10(torch.clamp(mel, min=_POWER_FLOOR))
            else:
                values = 20.0 * torch.log10(torch.clamp(mel, min=_MAGNITUDE_FLOOR))
            if recipe.top_db is not None:
                values = torch.maximum(values, values.amax(dim=(1, 2), keepdim=True) - recipe.top_db)
        elif recipe.log_scale is LogScale.NATURAL:
            values = torch.log(mel)
        elif recipe.log_scale is LogScale.LOG10:
            values = torch.log10(mel)
        else:
            values = mel
        if recipe.feature_normalization is FeatureNormalization.PER_EXAMPLE:
            mean = values.mean(dim=(1, 2), keepdim=True)
            std = values.std(dim=(1, 2), keepdim=True, correction=0)
            values = (values - mean) / (std + _NORMALIZATION_EPSILON)
        return values.to(torch.float32).numpy()
