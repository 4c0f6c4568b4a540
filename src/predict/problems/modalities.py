"""The four kinds of rows a problem type reads: images, texts, audio files, numeric arrays.

A `Modality` names its `preprocessing:` section, the data key of the column the model reads, its
config checks, how its rows are read, and its loader. Loaders are imported when a dataset is built,
not with this module: an image run never loads the audio (torch) or text (tokenizers) code (issue 18).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import pandas as pd

from predict.config import (
    ArrayPreprocessing,
    AudioPreprocessing,
    ImagePreprocessing,
    SpectrogramRecipe,
    TaskConfig,
    TextPreprocessing,
)
from predict.data.arrays import build_array_dataset, name_unlabelled_outputs, read_array_rows
from predict.data.collate import BatchDataset
from predict.data.dataframe import read_dataframe
from predict.enums import ARRAY_INPUT_SUFFIXES, ARRAY_LABEL_SUFFIXES, Framing, LogScale, TextLayout
from predict.runners.base import TensorSpec

# (task, dataframe, the model's inputs, the problem type's text layout) -> the batches of the rows.
DatasetBuilder = Callable[[TaskConfig, pd.DataFrame, tuple[TensorSpec, ...], "TextLayout | None"], BatchDataset]


@dataclass(frozen=True, kw_only=True)
class Modality:
    """What a family of problem types reads, and how.

    Attributes:
        name: `image`, `text`, `audio` or `array` (the prefix of the problem types' names).
        preprocessing: the class of the `preprocessing:` section.
        column_key: the `data.` key naming the column the model reads (None: array rows name none).
        decoded: rows are decoded from files or text, so decoding processes may pay off (the local
            engine's probe); array rows are only read.
        check: the config checks of the modality's keys.
        build_dataset: the loader of the rows (see `DatasetBuilder`).
        read_rows: the rows to score as a dataframe, and the task as they complete it.
        name_outputs: the task once the model's outputs are known (array tasks without labels name them).
    """

    name: str
    preprocessing: type
    column_key: str | None
    decoded: bool
    check: Callable[[TaskConfig], list[str]]
    build_dataset: DatasetBuilder
    read_rows: Callable[[TaskConfig], tuple[TaskConfig, pd.DataFrame]]
    name_outputs: Callable[[TaskConfig, tuple[TensorSpec, ...]], TaskConfig]

    def preprocessing_keys(self) -> list[str]:
        """The keys of the `preprocessing:` section."""
        return [item.name for item in fields(self.preprocessing)]


def read_dataframe_rows(task: TaskConfig) -> tuple[TaskConfig, pd.DataFrame]:
    """The dataframe named by `data.dataframe`, the task as it is."""
    return task, read_dataframe(task.data.dataframe)


def outputs_as_configured(task: TaskConfig, outputs: tuple[TensorSpec, ...]) -> TaskConfig:
    """The task as it is: the config names the label columns."""
    return task


def _image_dataset(task, dataframe, model_inputs, layout) -> BatchDataset:
    from predict.data.image import build_image_dataset

    return build_image_dataset(task, dataframe, model_inputs)


def _text_dataset(task, dataframe, model_inputs, layout) -> BatchDataset:
    from predict.data.text import build_text_dataset  # tokenizers

    return build_text_dataset(task, dataframe, model_inputs, layout=layout)


def _audio_dataset(task, dataframe, model_inputs, layout) -> BatchDataset:
    from predict.data.audio import build_audio_dataset  # soundfile, soxr, torch

    return build_audio_dataset(task, dataframe, model_inputs)


def _array_dataset(task, dataframe, model_inputs, layout) -> BatchDataset:
    return build_array_dataset(task, dataframe, model_inputs)


def _check_image(task: TaskConfig) -> list[str]:
    """Image size, mean and std: the keys every image problem type reads."""
    preprocessing, errors = task.preprocessing, _check_not_array_data(task)
    if preprocessing.image_size is not None and min(preprocessing.image_size) < 1:
        errors.append(f"preprocessing.image_size must be two positive integers (got {list(preprocessing.image_size)})")
    for name in ("mean", "std"):
        value = getattr(preprocessing, name)
        if len(value) not in (1, 3):
            errors.append(f"preprocessing.{name} must have 1 or 3 values, one per channel (got {len(value)})")
    if any(value == 0 for value in preprocessing.std):
        errors.append(f"preprocessing.std must not contain 0 (got {list(preprocessing.std)})")
    return errors


def _check_audio(task: TaskConfig) -> list[str]:
    """Sample rate, spectrogram and chunk settings: the keys every audio problem type needs."""
    errors = _check_not_array_data(task)
    preprocessing = task.preprocessing
    if preprocessing.sample_rate is None:
        errors.append(
            f"preprocessing.sample_rate is missing: the sample rate (Hz) the model was trained at ({task.problem_type})"
        )
    elif preprocessing.sample_rate < 1:
        errors.append(f"preprocessing.sample_rate must be >= 1 (got {preprocessing.sample_rate})")
    for key, minimum in (("mel_frequency_bins", 1), ("window_size", 2), ("hop_size", 1)):
        value = getattr(preprocessing, key)
        if value < minimum:
            errors.append(f"preprocessing.{key} must be >= {minimum} (got {value})")
    if preprocessing.sample_rate is not None and preprocessing.sample_rate >= 1 and preprocessing.window_size >= 2:
        errors.extend(_check_spectrogram(preprocessing.spectrogram_recipe()))
    seconds = preprocessing.inference_chunk_seconds
    if seconds is not None and seconds <= 0:
        errors.append(f"preprocessing.inference_chunk_seconds must be > 0 (got {seconds})")
    elif seconds is not None and preprocessing.sample_rate and round(seconds * preprocessing.sample_rate) < 1:
        errors.append(
            f"preprocessing.inference_chunk_seconds {seconds} is shorter than one sample at "
            f"{preprocessing.sample_rate} Hz"
        )
    return errors


def _check_spectrogram(recipe: SpectrogramRecipe) -> list[str]:
    """The log-mel recipe's ranges and combinations, on the resolved values (a recipe's defaults included)."""
    errors = []
    if recipe.fft_size < recipe.window_size:  # only an explicit fft_size can be: every default is >= window_size
        errors.append(
            f"preprocessing.fft_size {recipe.fft_size} must be >= preprocessing.window_size {recipe.window_size}: "
            "the window must fit in the FFT"
        )
    if recipe.spectrum_power not in (1, 2):
        errors.append(f"preprocessing.spectrum_power must be 1 (magnitude) or 2 (power) (got {recipe.spectrum_power})")
    if recipe.framing is Framing.TF_SIGNAL and recipe.center:
        errors.append(
            "preprocessing.center must be false with framing: tf_signal (tf.signal.stft does not centre frames)"
        )
    nyquist = recipe.sample_rate / 2
    if recipe.f_min < 0:
        errors.append(f"preprocessing.f_min must be >= 0 Hz (got {recipe.f_min:g})")
    if recipe.f_max > nyquist:
        errors.append(f"preprocessing.f_max must be <= sample_rate / 2 = {nyquist:g} Hz (got {recipe.f_max:g})")
    if recipe.f_min >= recipe.f_max:
        errors.append(f"preprocessing.f_min {recipe.f_min:g} must be < f_max {recipe.f_max:g} Hz")
    if recipe.log_offset < 0:
        errors.append(f"preprocessing.log_offset must be >= 0 (got {recipe.log_offset:g})")
    elif recipe.log_offset == 0 and recipe.log_scale in (LogScale.NATURAL, LogScale.LOG10):
        errors.append(
            f"preprocessing.log_offset must be > 0 with log_scale: {recipe.log_scale} (silence would give -inf); "
            "the usual recipe is log(mel + 1e-6): log_offset: 1.0e-6"
        )
    if recipe.top_db is not None:
        if recipe.log_scale is not LogScale.DECIBEL:
            errors.append(
                f"preprocessing.top_db applies to log_scale: decibel only (got log_scale: {recipe.log_scale})"
            )
        elif recipe.top_db <= 0:
            errors.append(f"preprocessing.top_db must be > 0 dB (got {recipe.top_db:g})")
    return errors


def _check_text(task: TaskConfig) -> list[str]:
    """Tokenizer and text columns: the keys every text problem type needs."""
    errors = _check_not_array_data(task)
    preprocessing = task.preprocessing
    if preprocessing.tokenizer is None:
        errors.append(
            "preprocessing.tokenizer is missing: a text model needs the tokenizer it was trained with "
            f"({task.problem_type})"
        )
    elif not preprocessing.tokenizer.is_file():
        errors.append(f"preprocessing.tokenizer file not found: {preprocessing.tokenizer}")
    if preprocessing.max_length is not None and preprocessing.max_length < 1:
        errors.append(f"preprocessing.max_length must be >= 1 (got {preprocessing.max_length})")
    if preprocessing.doc_stride < 0:
        errors.append(f"preprocessing.doc_stride must be >= 0 (got {preprocessing.doc_stride})")
    return errors


def _check_not_array_data(task: TaskConfig) -> list[str]:
    """None of the keys that only array problem types read."""
    errors = []
    for key in ("inputs", "labels", "feature_columns", "id_column"):
        if getattr(task.data, key) is not None:
            errors.append(
                f"data.{key} applies to array_regression and array_classification only (got {task.problem_type})"
            )
    return errors


def _check_array_data(task: TaskConfig) -> list[str]:
    """Either a dataframe or seed-style `inputs` (+ `labels`), with files of the kinds predict.data.arrays reads."""
    data = task.data
    if (data.dataframe is None) == (data.inputs is None):
        return [
            "data: give either dataframe (with feature_columns) or inputs (X_test.npy, .npz, .csv; labels optional), "
            f"not {'both' if data.dataframe else 'neither'}"
        ]
    errors = []
    if data.labels is not None and data.inputs is None:
        errors.append("data.labels goes with data.inputs; a dataframe holds its labels in data.label_columns")
    for key, suffixes in (("inputs", ARRAY_INPUT_SUFFIXES), ("labels", ARRAY_LABEL_SUFFIXES)):
        path = getattr(data, key)
        if path is None:
            continue
        if not path.is_file():
            errors.append(f"data.{key} file not found: {path}")
        elif path.suffix.lower() not in suffixes:
            errors.append(f"data.{key} must be one of {', '.join(suffixes)} (got '{path.name}')")
    if data.inputs is not None and data.feature_columns is not None and data.inputs.suffix.lower() in (".npy", ".npz"):
        errors.append(
            f"data.feature_columns: {data.inputs.name} has no columns (it applies to a dataframe or a CSV of features)"
        )
    return errors


IMAGE = Modality(
    name="image",
    preprocessing=ImagePreprocessing,
    column_key="image_column",
    decoded=True,
    check=_check_image,
    build_dataset=_image_dataset,
    read_rows=read_dataframe_rows,
    name_outputs=outputs_as_configured,
)
TEXT = Modality(
    name="text",
    preprocessing=TextPreprocessing,
    column_key="text_column",
    decoded=True,
    check=_check_text,
    build_dataset=_text_dataset,
    read_rows=read_dataframe_rows,
    name_outputs=outputs_as_configured,
)
AUDIO = Modality(
    name="audio",
    preprocessing=AudioPreprocessing,
    column_key="audio_column",
    decoded=True,
    check=_check_audio,
    build_dataset=_audio_dataset,
    read_rows=read_dataframe_rows,
    name_outputs=outputs_as_configured,
)
ARRAY = Modality(
    name="array",
    preprocessing=ArrayPreprocessing,
    column_key=None,
    decoded=False,
    check=_check_array_data,
    build_dataset=_array_dataset,
    read_rows=read_array_rows,
    name_outputs=name_unlabelled_outputs,
)
MODALITIES = (IMAGE, TEXT, AUDIO, ARRAY)
