"""The names a task config chooses from: problem types, modes and backends, as string enums.

Shared by the config, the problem specs, the loaders and the heads; it imports nothing of `predict`,
so any module can use it without an import cycle.
"""

from __future__ import annotations

from enum import StrEnum


class ProblemType(StrEnum):
    """The 14 problem types of H2O Hydrogen Torch, in snake case, and two for numeric arrays and tables."""

    IMAGE_REGRESSION = "image_regression"
    IMAGE_CLASSIFICATION = "image_classification"
    IMAGE_METRIC_LEARNING = "image_metric_learning"
    IMAGE_OBJECT_DETECTION = "image_object_detection"
    IMAGE_SEMANTIC_SEGMENTATION = "image_semantic_segmentation"
    IMAGE_INSTANCE_SEGMENTATION = "image_instance_segmentation"
    TEXT_REGRESSION = "text_regression"
    TEXT_CLASSIFICATION = "text_classification"
    TEXT_SEQUENCE_TO_SEQUENCE = "text_sequence_to_sequence"
    TEXT_SPAN_PREDICTION = "text_span_prediction"
    TEXT_TOKEN_CLASSIFICATION = "text_token_classification"
    TEXT_METRIC_LEARNING = "text_metric_learning"
    AUDIO_REGRESSION = "audio_regression"
    AUDIO_CLASSIFICATION = "audio_classification"
    # Beyond H2O: one numeric array per row (feature columns, `X_test.npy`, time-series windows).
    ARRAY_REGRESSION = "array_regression"
    ARRAY_CLASSIFICATION = "array_classification"

    @property
    def modality(self) -> str:
        """`image`, `text`, `audio` or `array`: the prefix of the name."""
        return self.value.split("_", 1)[0]

    @property
    def scikit_learn_metrics(self) -> bool:
        """Whether its metrics are scikit-learn's (classification and regression heads). Known here, before any
        head is imported, so that the library's 1-1.6 s import can start first (`predict.report.metrics`)."""
        return self in _SCIKIT_LEARN_METRICS


_SCIKIT_LEARN_METRICS = frozenset(
    {
        ProblemType.IMAGE_REGRESSION,
        ProblemType.IMAGE_CLASSIFICATION,
        ProblemType.TEXT_REGRESSION,
        ProblemType.TEXT_CLASSIFICATION,
        ProblemType.AUDIO_REGRESSION,
        ProblemType.AUDIO_CLASSIFICATION,
        ProblemType.ARRAY_REGRESSION,
        ProblemType.ARRAY_CLASSIFICATION,
    }
)


class Split(StrEnum):
    """Which prediction files a run writes: `validation` (labels, metrics) or `test` (labels optional)."""

    VALIDATION = "validation"
    TEST = "test"


class Interpolation(StrEnum):
    """Pillow's resampling filter for resizing images; match the one used in training."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"  # Keras' "area"
    LANCZOS = "lanczos"


class ResizeMode(StrEnum):
    """How an image becomes the model's size: stretch it (`resize`) or keep its aspect ratio and pad (`letterbox`)."""

    RESIZE = "resize"
    LETTERBOX = "letterbox"  # scaled to fit, centred, padded with gray 114 (Ultralytics' letterbox)


class PaddingSide(StrEnum):
    """Where padding tokens go: `right` (tokenizers, TextVectorization) or `left` (Keras `pad_sequences` default)."""

    RIGHT = "right"
    LEFT = "left"


class TruncationSide(StrEnum):
    """Which end of a too-long text is cut: `right` keeps its start (tokenizers' default), `left` keeps its end
    (Keras `pad_sequences(truncating="pre")`, its default)."""

    RIGHT = "right"
    LEFT = "left"


class AudioFeatures(StrEnum):
    """What an audio model takes: the `waveform` itself, or its `log_mel` spectrogram (see predict.data.audio)."""

    WAVEFORM = "waveform"
    LOG_MEL = "log_mel"


class FeatureRecipe(StrEnum):
    """The library whose spectrogram conventions a log_mel model was trained with (see predict.data.spectrogram).

    A recipe only fills the keys left unset (`fft_size`, `center`, `pad_mode`, `framing`, `mel_scale`,
    `mel_norm`, `mel_triangles`, `spectrum_power`, `log_scale`, `log_offset`); an explicit key wins.
    """

    LIBROSA = "librosa"  # librosa.feature.melspectrogram + power_to_db: the default, as before recipes existed
    TORCHAUDIO = "torchaudio"  # torchaudio.transforms.MelSpectrogram + AmplitudeToDB: HTK mels, no norm, reflect
    TF_SIGNAL = "tf_signal"  # tf.signal.stft + linear_to_mel_weight_matrix, |STFT|, log(mel + 1e-6), no centring


class Window(StrEnum):
    """The STFT window, periodic (librosa `get_window(..., fftbins=True)`, torch and tf.signal defaults)."""

    HANN = "hann"
    HAMMING = "hamming"


class PadMode(StrEnum):
    """How centred frames pad the clip's ends (numpy `np.pad` modes; torch calls `edge` `replicate`)."""

    CONSTANT = "constant"
    REFLECT = "reflect"
    EDGE = "edge"


class Framing(StrEnum):
    """How frames are cut when `fft_size` > `window_size`.

    `librosa`: a frame is `fft_size` samples with the window centred in it (librosa, torch.stft,
    torchaudio); `tf_signal`: a frame is `window_size` samples, zero-padded at its end to `fft_size`
    (tf.signal.stft). Equal when `fft_size` == `window_size`, except that `tf_signal` also takes
    tf.signal's windows, periodic for an even `window_size` only (symmetric for an odd one).
    """

    LIBROSA = "librosa"
    TF_SIGNAL = "tf_signal"


class MelScale(StrEnum):
    """Hz to mel: `slaney` (linear below 1 kHz, log above; librosa's default) or `htk` (2595 log10(1 + f / 700))."""

    SLANEY = "slaney"
    HTK = "htk"


class MelNorm(StrEnum):
    """Mel filter weights: `slaney` scales each to unit area (2 / bandwidth in Hz), `none` keeps peaks at 1."""

    SLANEY = "slaney"
    NONE = "none"


class MelTriangles(StrEnum):
    """Where mel filters are triangles: over `hertz` (librosa, torchaudio) or over `mel` (tf.signal)."""

    HERTZ = "hertz"
    MEL = "mel"


class LogScale(StrEnum):
    """The log applied to mel energies (see predict.data.spectrogram for the exact formulas)."""

    DECIBEL = "decibel"  # 10 log10(max(mel + log_offset, 1e-10)) for power, 20 log10(max(., 1e-5)) for magnitude
    NATURAL = "natural"  # ln(mel + log_offset)
    LOG10 = "log10"  # log10(mel + log_offset)
    NONE = "none"  # the mel energies themselves


class FeatureNormalization(StrEnum):
    """Standardise each chunk's features: `none`, or `per_example`: (x - mean) / (std + 1e-6) over the whole chunk."""

    NONE = "none"
    PER_EXAMPLE = "per_example"


class OnError(StrEnum):
    """What a row that cannot be read does: stop the run (`raise`) or leave the row out (`skip`)."""

    RAISE = "raise"
    SKIP = "skip"


class Precision(StrEnum):
    """Arithmetic of the onnxruntime graph; fp16 is checked against fp32 on the first batch."""

    FP32 = "fp32"
    FP16 = "fp16"


class Toggle(StrEnum):
    """On, off, or `auto`: on where it helps (IO binding: on CUDA)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class Backend(StrEnum):
    """The runtime that executes the model."""

    ONNXRUNTIME = "onnxruntime"
    TORCH = (
        "torch"  # TorchScript (.pt), torch.export (.pt2), Keras .h5 through Keras 3 on torch (predict.runners.torch)
    )


class Engine(StrEnum):
    """What drives the batches: this process (`local`) or Ray Data over a local or remote cluster (`ray`)."""

    LOCAL = "local"
    RAY = "ray"


class Device(StrEnum):
    """Where the model runs; `auto` takes CUDA when onnxruntime can load it, else the CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


MODEL_SUFFIXES = (".onnx", ".h5", ".hdf5")
DATAFRAME_SUFFIXES = (".csv", ".parquet", ".pq")
ARRAY_INPUT_SUFFIXES = (".npy", ".npz", *DATAFRAME_SUFFIXES)
ARRAY_LABEL_SUFFIXES = (".npy", *DATAFRAME_SUFFIXES)
# Array problem types: the index column the files name rows by when nothing else does (0..n-1).
ROW_COLUMN = "row"


class TextLayout(StrEnum):
    """How a text problem type's rows become model sequences (see predict.data.text)."""

    SEQUENCE = "sequence"  # one sequence per row: classification, regression, metric learning, seq2seq
    WORDS = "words"  # whitespace words per row, tagged per word: token classification
    WINDOWS = "windows"  # question-context windows over long contexts: span prediction
