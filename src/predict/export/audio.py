"""The audio front end of an exported graph: waveform chunks in, the model's features computed in the graph.

Inputs: `waveform` float32 (P, C), chunks of C samples at `preprocessing.sample_rate` as
`predict.data.audio.split_chunks` cuts a clip (one zero-padded chunk for a short clip; a long one in
chunks starting every C samples, the last aligned to its end), and `chunk_rows` int64 (P,), the row
of each chunk (0..N-1, ascending; `arange(P)` when every clip is one chunk).

Features (`preprocessing.audio_features`): the chunk itself (`waveform`), or the log-mel spectrogram
of `predict.data.spectrogram.MelFeatures`, step by step in float64 as there: padding (`center`,
`pad_mode`), the `STFT` op with predict's own frame window, |X|^2 or |X|, `MatMul` with predict's own
mel matrix (`mel_filterbank`, an initializer), the log scale, `top_db` and per-example normalisation.
After the model, each row's outputs are the mean of its chunks' (as `predict.data.collate.average_chunks`,
in float64), so the head's post-processing sees one output per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predict.config import SpectrogramRecipe, TaskConfig
from predict.data.audio import AudioInput, audio_input_from
from predict.data.collate import Batch
from predict.data.spectrogram import MelFeatures, mel_filterbank, padding
from predict.enums import AudioFeatures, FeatureNormalization, LogScale, PadMode
from predict.export.graph import MODEL_PREFIX, GraphBuilder, element_type
from predict.export.inputs import FrontEnd
from predict.runners.base import TensorSpec, single_input

WAVEFORM_INPUT = "waveform"
CHUNK_ROWS_INPUT = "chunk_rows"
# predict.data.spectrogram's floors (librosa's amin) and normalisation epsilon.
_POWER_FLOOR = 1e-10
_MAGNITUDE_FLOOR = 1e-5
_NORMALIZATION_EPSILON = 1e-6


@dataclass(frozen=True)
class AudioFrontEnd(FrontEnd):
    """Waveform chunks in; the model's features (waveform or log-mel) out; chunk outputs averaged per row."""

    audio: AudioInput
    task: TaskConfig

    @classmethod
    def for_task(cls, task: TaskConfig, model_inputs: tuple[TensorSpec, ...]) -> AudioFrontEnd:
        spec = single_input(model_inputs, kind="audio", model_name=task.model.name)
        return cls(audio_input_from(spec, task.preprocessing, model_name=task.model.name), task)

    def add(self, builder: GraphBuilder) -> None:
        audio = self.audio
        waveform = builder.input(WAVEFORM_INPUT, np.float32, ["chunks", audio.chunk_samples])
        builder.input(CHUNK_ROWS_INPUT, np.int64, ["chunks"])
        if audio.features is AudioFeatures.WAVEFORM:
            values, order = waveform, ("time",)
        else:
            recipe = self.task.preprocessing.spectrogram_recipe()
            values, order = log_mel(builder, waveform, recipe), ("time", "mels")
        wanted = [axis for axis in audio.axes if axis != "channel"]
        if list(order) != wanted:
            values = builder.op("Transpose", values, perm=[0, *(1 + order.index(axis) for axis in wanted)])
        if "channel" in audio.axes:
            values = builder.op("Unsqueeze", values, builder.const([1 + audio.axes.index("channel")]))
        if audio.dtype != np.float32:
            values = builder.op("Cast", values, to=element_type(audio.dtype))
        builder.feed_model_input(audio.name, values)

    def after_model(self, builder: GraphBuilder) -> None:
        """Every model output averaged over each row's chunks, in float64, back in its own dtype."""
        rows = builder.op("Add", builder.reduce("ReduceMax", CHUNK_ROWS_INPUT, [0], keepdims=True), builder.const([1]))
        row_ids = builder.op(
            "Range", builder.const(np.int64(0)), builder.op("Squeeze", rows), builder.const(np.int64(1))
        )
        member = builder.op(
            "Equal",
            builder.op("Unsqueeze", row_ids, builder.const([1])),
            builder.op("Unsqueeze", CHUNK_ROWS_INPUT, builder.const([0])),
        )
        member = builder.op("Cast", member, to=element_type(np.float64))  # (rows, chunks)
        counts = builder.reduce("ReduceSum", member, [1], keepdims=True)
        for output in builder.model.graph.output:
            name = output.name.removeprefix(MODEL_PREFIX)
            raw = builder.op("Cast", builder.model_output(name), to=element_type(np.float64))
            sums = builder.op("MatMul", member, builder.op("Flatten", raw, axis=1))
            shape = builder.op("Concat", rows, _tail(builder, raw), axis=0)
            mean = builder.op("Reshape", builder.op("Div", sums, counts), shape)
            builder.replace_model_output(name, builder.op("Cast", mean, to=output.type.tensor_type.elem_type))

    def feeds(self, dataset, index: int) -> tuple[Batch, dict[str, np.ndarray]]:
        """The pipeline's batch `index` and the graph's feeds: the same chunks before features."""
        batch = dataset[index]
        _, chunks, _, context = dataset.chunks(index)
        chunk_rows = np.repeat(np.arange(len(context.chunk_counts), dtype=np.int64), context.chunk_counts)
        return batch, {WAVEFORM_INPUT: chunks, CHUNK_ROWS_INPUT: chunk_rows}

    def metadata(self) -> dict[str, str]:
        preprocessing = self.task.preprocessing
        facts = {
            "sample_rate": str(preprocessing.sample_rate),
            "chunk_samples": str(self.audio.chunk_samples),
            "audio_features": str(self.audio.features),
        }
        if self.audio.features is AudioFeatures.LOG_MEL:
            recipe = preprocessing.spectrogram_recipe()
            facts["spectrogram_recipe"] = str({key: str(value) for key, value in vars(recipe).items()})
        return facts

    def outside(self) -> list[str]:
        return [
            f"reading each clip mono at {self.task.preprocessing.sample_rate} Hz (resampled as librosa.load) and "
            f"cutting it into chunks of {self.audio.chunk_samples} samples (chunk_rows: each chunk's row)"
        ]


def _tail(builder: GraphBuilder, value: str) -> str:
    """Shape(value)[1:], int64."""
    return builder.op(
        "Slice", builder.op("Shape", value), builder.const([1]), builder.const([2**62]), builder.const([0])
    )


def log_mel(builder: GraphBuilder, waveform: str, recipe: SpectrogramRecipe) -> str:
    """float32 (P, C) chunks to float32 (P, frames, mels) features, computed in float64 (MelFeatures' steps)."""
    samples = builder.op("Cast", waveform, to=element_type(np.float64))
    before, after = padding(recipe)
    if before or after:
        mode = "constant" if recipe.pad_mode is PadMode.CONSTANT else recipe.pad_mode.value
        samples = builder.op("Pad", samples, builder.const([0, before, 0, after]), mode=mode)
    window = MelFeatures(recipe).window.numpy()
    spectrum = builder.op(
        "STFT",
        builder.op("Unsqueeze", samples, builder.const([2])),
        builder.const(np.int64(recipe.hop_size)),
        builder.const(window.astype(np.float64)),
        builder.const(np.int64(recipe.fft_size)),
        onesided=1,
    )  # (P, frames, bins, 2): real and imaginary parts
    power = builder.reduce("ReduceSum", builder.op("Mul", spectrum, spectrum), [3], keepdims=False)
    energies = power if recipe.spectrum_power == 2 else builder.op("Sqrt", power)
    mel = builder.op("MatMul", energies, builder.const(mel_filterbank(recipe).T.astype(np.float64)))
    mel = builder.op("Add", mel, builder.const(np.float64(recipe.log_offset)))
    values = _log(builder, mel, recipe)
    if recipe.feature_normalization is FeatureNormalization.PER_EXAMPLE:
        mean = builder.reduce("ReduceMean", values, [1, 2], keepdims=True)
        centred = builder.op("Sub", values, mean)
        variance = builder.reduce("ReduceMean", builder.op("Mul", centred, centred), [1, 2], keepdims=True)
        std = builder.op("Add", builder.op("Sqrt", variance), builder.const(np.float64(_NORMALIZATION_EPSILON)))
        values = builder.op("Div", centred, std)
    return builder.op("Cast", values, to=element_type(np.float32))


def _log(builder: GraphBuilder, mel: str, recipe: SpectrogramRecipe) -> str:
    """The recipe's log scale (and top_db) on float64 mel energies."""
    if recipe.log_scale is LogScale.NONE:
        return mel
    if recipe.log_scale is LogScale.NATURAL:
        return builder.op("Log", mel)
    if recipe.log_scale is LogScale.LOG10:
        return builder.op("Div", builder.op("Log", mel), builder.const(np.float64(math.log(10))))
    power = recipe.spectrum_power == 2
    floor, factor = (_POWER_FLOOR, 10.0) if power else (_MAGNITUDE_FLOOR, 20.0)
    log10 = builder.op(
        "Div", builder.op("Log", builder.op("Max", mel, builder.const(np.float64(floor)))), builder.const(math.log(10))
    )
    values = builder.op("Mul", log10, builder.const(np.float64(factor)))
    if recipe.top_db is not None:
        peak = builder.reduce("ReduceMax", values, [1, 2], keepdims=True)
        values = builder.op("Max", values, builder.op("Sub", peak, builder.const(np.float64(recipe.top_db))))
    return values
