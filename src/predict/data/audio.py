"""Audio: read with soundfile, mono, resample, cut into chunks, then waveform or log-mel features in torch.

Reading matches `librosa.load(path, sr=sample_rate, mono=True)`, which most audio models were
trained with: soundfile decodes WAV, FLAC and OGG to float32, channels are averaged, and a file at
another rate is resampled with soxr at librosa's default quality (`soxr_hq`), then cut or
zero-padded to `ceil(length * ratio)` samples as librosa does.

Chunks. The model sees fixed-length chunks of `C` samples (`preprocessing.inference_chunk_seconds`,
or by default the model's own static time length). A clip of `L <= C` samples is one chunk,
zero-padded at the end. A longer clip gives `ceil(L / C)` chunks starting at 0, C, 2C, ...; the
last one is aligned to the clip's end (it overlaps the one before), so no chunk of a long clip
holds padding that would pull its average towards silence.

Rows and chunks. The loader puts all chunks of a batch's rows into one model input, each row's
chunks next to each other, and the batch's `ChunkContext.chunk_counts` (int64[B]) says how many
belong to each row. The pipeline runs the model once per batch and `predict.data.collate.average_chunks`
takes the mean of each row's chunk outputs (the raw model outputs, e.g. logits) before the head, so
heads are the image ones, unchanged: they see one output per row. `runtime.batch_size` counts rows.

Cells name files under the data folder, or hold the encoded file itself as bytes (`predict serve`'s
requests, through `AudioBatches.with_rows`): both are read by the same code.

Features (`preprocessing.audio_features`):
- `waveform`: the chunk's samples. Model input (batch, samples), (batch, samples, 1) or (batch, 1, samples).
- `log_mel`: a mel spectrogram, by default librosa's `power_to_db(melspectrogram(...))`; the feature
  recipes of librosa, torchaudio and tf.signal, and every setting of them, are in
  predict.data.spectrogram. A chunk of C samples has `frame_count(recipe, C)` frames (`1 + C // hop_size`
  for centred frames and an even FFT size). Model input: two axes (mels, frames) or (frames, mels),
  found by which one has `mel_frequency_bins` entries, with an optional channel axis of size 1 first
  or last: (batch, 1, mels, frames), (batch, frames, mels, 1), ...
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
import soxr

from predict.config import AudioPreprocessing, TaskConfig
from predict.data.collate import Batch, BatchDataset
from predict.data.context import ChunkContext
from predict.data.paths import UnreadableRow, resolve_data_path, shown_cell
from predict.data.spectrogram import MelFeatures, chunk_samples_for, frame_count
from predict.enums import AudioFeatures
from predict.errors import ConfigError, one_line
from predict.runners.base import TensorSpec, format_shape, single_input

_FLOAT_DTYPES = (np.float32, np.float16, np.float64)


@dataclass(frozen=True, kw_only=True)
class AudioInput:
    """How one model input takes audio.

    Attributes:
        name: the input's name in the graph.
        features: waveform or log_mel.
        chunk_samples: C, samples per chunk at `sample_rate`.
        axes: the order of the non-batch axes, from `time` (samples or frames), `mels` and `channel`.
        dtype: the float dtype the model takes.
    """

    name: str
    features: AudioFeatures
    chunk_samples: int
    axes: tuple[str, ...]
    dtype: np.dtype


def audio_input_from(spec: TensorSpec, preprocessing: AudioPreprocessing, *, model_name: str) -> AudioInput:
    """Read the layout and chunk length off a model input, and check them against the config.

    Raises:
        ConfigError: the input's shape fits neither feature layout, its static length disagrees
            with `preprocessing.inference_chunk_seconds`, or neither gives a chunk length.
    """
    if np.dtype(spec.dtype).type not in _FLOAT_DTYPES:
        raise ConfigError(
            f"model {model_name}: input '{spec.name}' takes {np.dtype(spec.dtype).name}; audio models need float"
        )
    dims = list(spec.shape[1:])
    features = preprocessing.audio_features
    shown = format_shape(spec.shape)
    wanted_axes = 1 if features is AudioFeatures.WAVEFORM else 2
    axes: list[str | None] = [None] * len(dims)
    if len(dims) == wanted_axes + 1:  # a channel axis of size 1, first or last
        if dims[-1] == 1:
            axes[-1] = "channel"
        elif dims[0] == 1:
            axes[0] = "channel"
    open_axes = [i for i, axis in enumerate(axes) if axis is None]
    if len(open_axes) != wanted_axes:
        layouts = (
            "(batch, samples), (batch, samples, 1) or (batch, 1, samples)"
            if features is AudioFeatures.WAVEFORM
            else "(batch, mels, frames) or (batch, frames, mels), "
            "optionally with a channel axis of size 1 first or last"
        )
        raise ConfigError(
            f"model {model_name}: input '{spec.name}' has shape {shown}; preprocessing.audio_features: {features} "
            f"needs {layouts}"
        )
    if features is AudioFeatures.WAVEFORM:
        axes[open_axes[0]] = "time"
    else:
        mels = preprocessing.mel_frequency_bins
        first, second = (dims[i] for i in open_axes)
        if first == mels and second != mels:
            axes[open_axes[0]], axes[open_axes[1]] = "mels", "time"
        elif second == mels and first != mels:
            axes[open_axes[0]], axes[open_axes[1]] = "time", "mels"
        elif first == second == mels:
            raise ConfigError(
                f"model {model_name}: input '{spec.name}' has shape {shown}: both axes have {mels} entries, so the mel "
                "axis is ambiguous; choose preprocessing.inference_chunk_seconds so the frame count differs from "
                "preprocessing.mel_frequency_bins"
            )
        else:
            raise ConfigError(
                f"model {model_name}: input '{spec.name}' has shape {shown}, but no axis has "
                f"preprocessing.mel_frequency_bins = {mels} entries; set it to the model's mel bands"
            )
    model_length = dims[axes.index("time")]
    chunk_samples = _chunk_samples(preprocessing, model_length, features=features, model_name=model_name, shown=shown)
    return AudioInput(
        name=spec.name, features=features, chunk_samples=chunk_samples, axes=tuple(axes), dtype=np.dtype(spec.dtype)
    )


def _chunk_samples(
    preprocessing: AudioPreprocessing,
    model_length: int | None,
    *,
    features: AudioFeatures,
    model_name: str,
    shown: str,
) -> int:
    """C from the config, or from the model's static time axis; both must agree when both are given."""
    recipe = preprocessing.spectrogram_recipe() if features is AudioFeatures.LOG_MEL else None
    unit = "samples" if recipe is None else "frames"
    seconds = preprocessing.inference_chunk_seconds
    if seconds is None:
        if model_length is None:
            raise ConfigError(
                f"preprocessing.inference_chunk_seconds is missing and model {model_name} takes any number of {unit} "
                f"{shown}: set it to the clip length the model was trained on"
            )
        return model_length if recipe is None else chunk_samples_for(recipe, model_length)
    chunk = round(seconds * preprocessing.sample_rate)
    length = chunk if recipe is None else frame_count(recipe, chunk)
    if recipe is not None and length < 1:
        raise ConfigError(
            f"preprocessing.inference_chunk_seconds {seconds:g} gives {chunk} samples per chunk, shorter than one "
            "frame "
            f"of {recipe.fft_size} samples without centring (preprocessing.center: false); make chunks longer"
        )
    if model_length is not None and length != model_length:
        fits_samples = model_length if recipe is None else chunk_samples_for(recipe, model_length)
        fits = f"{fits_samples / preprocessing.sample_rate:g}"
        raise ConfigError(
            f"preprocessing.inference_chunk_seconds {seconds:g} gives {length} {unit} per chunk but model {model_name} "
            f"takes {model_length} {shown}; set it to {fits} (or leave it out to use the model's length)"
        )
    return chunk


def read_audio(path: Path | io.BytesIO, sample_rate: int) -> np.ndarray:
    """One file (a path, or its bytes in a file object) as `librosa.load(path, sr=sample_rate, mono=True)` would
    return it.

    Returns:
        float32[L] mono samples at `sample_rate`.

    Raises:
        soundfile.LibsndfileError, RuntimeError: the file cannot be decoded.
    """
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1, dtype=np.float32)
    if rate == sample_rate:
        return mono
    resampled = soxr.resample(mono, rate, sample_rate, quality="soxr_hq")
    length = math.ceil(len(mono) * sample_rate / rate)
    if len(resampled) >= length:
        return np.ascontiguousarray(resampled[:length], dtype=np.float32)
    return np.pad(resampled, (0, length - len(resampled))).astype(np.float32)


def split_chunks(samples: np.ndarray, chunk_samples: int) -> np.ndarray:
    """Cut a clip into chunks (see the module docstring): float32[L] to float32[ceil(L / C) or 1, C]."""
    length = len(samples)
    if length <= chunk_samples:
        chunk = np.zeros((1, chunk_samples), dtype=np.float32)
        chunk[0, :length] = samples
        return chunk
    starts = list(range(0, length - chunk_samples, chunk_samples)) + [length - chunk_samples]
    return np.stack([samples[start : start + chunk_samples] for start in starts])


class AudioBatches:
    """Item i is batch i: consecutive rows, each read, chunked and turned into features.

    A worker builds a whole batch, so one message crosses processes per batch, not per clip.
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        data_folder: Path,
        audio_input: AudioInput,
        preprocessing: AudioPreprocessing,
        batch_size: int,
        column: str,
        allow_outside: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.data_folder = data_folder
        self.allow_outside = allow_outside
        self.audio_input = audio_input
        self.sample_rate = preprocessing.sample_rate
        self.batch_size = batch_size
        self.column = column
        self.mel_features = None
        if audio_input.features is AudioFeatures.LOG_MEL:
            self.mel_features = MelFeatures(preprocessing.spectrogram_recipe())

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def with_rows(self, dataframe: pd.DataFrame) -> AudioBatches:
        """This loader (rate, chunks, features) over other rows of its column, whose cells may hold encoded
        files as bytes (a server's requests)."""
        other = copy.copy(self)
        other.paths = dataframe[self.column].tolist()
        return other

    def __getitem__(self, index: int) -> Batch:
        row_ids, chunks, errors, context = self.chunks(index)
        return Batch(row_ids, {self.audio_input.name: self._features(chunks)}, errors, context)

    def chunks(self, index: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]], ChunkContext]:
        """Batch `index` read and cut into chunks, before features: row ids, float32[P, C] chunks (each
        row's next to each other; one zero chunk for an unreadable row), errors and the `ChunkContext`
        (what `predict export`'s graph is fed: it computes the features in the graph)."""
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.paths))
        spec = self.audio_input
        pieces, errors = [], []
        for row in range(start, stop):
            try:
                pieces.append(split_chunks(self._read(self.paths[row]), spec.chunk_samples))
            except UnreadableRow as error:
                errors.append((row, f"row {row}, {self.column} {shown_cell(self.paths[row])}: {error}"))
                pieces.append(np.zeros((1, spec.chunk_samples), dtype=np.float32))
        counts = np.array([len(piece) for piece in pieces], dtype=np.int64)
        context = ChunkContext(chunk_counts=counts)
        return np.arange(start, stop, dtype=np.int64), np.concatenate(pieces), errors, context

    def _read(self, value: str | bytes) -> np.ndarray:
        if isinstance(value, bytes):
            source = io.BytesIO(value)
        else:
            source = resolve_data_path(self.data_folder, value, allow_outside=self.allow_outside)
            if not source.is_file():
                raise UnreadableRow(f"file not found: {source}")
        try:
            samples = read_audio(source, self.sample_rate)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            raise UnreadableRow(f"not a readable audio file (WAV, FLAC, OGG): {one_line(error)}") from None
        if samples.size == 0:
            raise UnreadableRow("the file holds no samples")
        if not np.isfinite(samples).all():
            raise UnreadableRow("the file holds NaN or inf samples")
        return samples

    def _features(self, chunks: np.ndarray) -> np.ndarray:
        """float32[N, C] chunks to the model's layout and dtype."""
        spec = self.audio_input
        if self.mel_features is None:
            values, order = chunks, ("time",)
        else:
            values, order = self.mel_features(chunks), ("mels", "time")
        wanted = [axis for axis in spec.axes if axis != "channel"]
        if list(order) != wanted:
            values = values.transpose(0, *(1 + order.index(axis) for axis in wanted))
        if "channel" in spec.axes:
            values = np.expand_dims(values, 1 + spec.axes.index("channel"))
        return np.ascontiguousarray(values, dtype=spec.dtype)


def build_audio_dataset(
    task: TaskConfig, dataframe: pd.DataFrame, model_inputs: tuple[TensorSpec, ...]
) -> BatchDataset:
    """Batches of the audio column in row order (`predict.data.collate.batch_loader` feeds them to the model).

    Raises:
        ConfigError: the model does not take exactly one audio input that fits `preprocessing`.
    """
    model_name = task.model.name
    spec = single_input(model_inputs, kind="audio", model_name=model_name)
    dataset = AudioBatches(
        dataframe[task.data.audio_column].tolist(),
        data_folder=task.data.data_folder or task.data.dataframe.parent,
        audio_input=audio_input_from(spec, task.preprocessing, model_name=model_name),
        preprocessing=task.preprocessing,
        batch_size=task.runtime.batch_size,
        column=task.data.audio_column,
        allow_outside=task.data.allow_outside_folder,
    )
    return dataset
