"""Task config schema: the frozen dataclasses a task YAML becomes, and how raw YAML values become them.

`predict.task.load_config` reads a file with these pieces and validates it with its problem type's
spec (predict.problems): unknown keys (with a did-you-mean), missing keys, coercion (str to enum or
path), then types, ranges and that the named files and columns exist. This module imports nothing
of predict's problem types, so every module can import it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from predict.enums import (
    ROW_COLUMN,
    AudioFeatures,
    Backend,
    Device,
    Engine,
    FeatureNormalization,
    FeatureRecipe,
    Framing,
    Interpolation,
    LogScale,
    MelNorm,
    MelScale,
    MelTriangles,
    OnError,
    PaddingSide,
    PadMode,
    Precision,
    ProblemType,
    ResizeMode,
    Split,
    Toggle,
    TruncationSide,
    Window,
)
from predict.errors import ConfigError, one_line


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The dataframe to score and where its files live.

    Array problem types take either a `dataframe` with `feature_columns`, or seed-style files:
    `inputs` (`X_test.npy`, `.npz`, a CSV of features) and optional `labels` (`y_test.npy`, a CSV).
    """

    dataframe: Path | None = None  # required, except for array problem types given `inputs`
    split: Split = Split.VALIDATION
    data_folder: Path | None = None  # default: the dataframe's folder
    image_column: str | None = None
    text_column: str | None = None
    question_column: str | None = None  # span prediction: the question and context columns (no text_column)
    context_column: str | None = None
    audio_column: str | None = None  # audio file paths (WAV, FLAC, OGG), relative to data_folder
    label_columns: tuple[str, ...] = ()
    on_error: OnError = OnError.RAISE  # skip: leave unreadable rows out, list them in {split}_errors.csv
    allow_outside_folder: bool = False  # accept file paths that leave data_folder (`../`, absolute)
    # Array problem types (see predict.data.arrays):
    inputs: Path | None = None  # .npy (N, ...) memory-mapped, .npz (one array per model input), .csv/.parquet
    labels: Path | None = None  # .npy (N,) values or class ids, (N, k) values or one-hot; .csv/.parquet
    # The features of each row: one list for the model's only input, or input name -> list. Default:
    # every column that is not a label or the id column.
    feature_columns: tuple[str, ...] | dict[str, tuple[str, ...]] | None = None
    id_column: str | None = None  # names the rows in the pkl (default: `row`, or the inputs CSV's index)

    @property
    def rows_file(self) -> Path:
        """The file whose rows are scored, for messages: the dataframe, or an array task's inputs."""
        return self.dataframe or self.inputs

    @property
    def labels_file(self) -> Path:
        """The file the labels are read from, for messages: the dataframe, or an array task's labels."""
        return self.dataframe or self.labels or self.inputs


@dataclass(frozen=True, kw_only=True)
class ImagePreprocessing:
    """`preprocessing:` of image problem types: resize to `image_size` (height, width), then
    `(pixel - mean) / std` per channel."""

    image_size: tuple[int, int] | None = None  # default: the model's own static height and width
    mean: tuple[float, ...] = (0.0,)  # one value applies to every channel
    std: tuple[float, ...] = (255.0,)
    interpolation: Interpolation = Interpolation.BILINEAR
    resize_mode: ResizeMode = ResizeMode.RESIZE  # detection/segmentation map boxes and masks back the same way


@dataclass(frozen=True, kw_only=True)
class TextPreprocessing:
    """`preprocessing:` of text problem types (see predict.data.tokenizer)."""

    # A Hugging Face tokenizer.json, a Keras Tokenizer JSON / word index JSON, or a TextVectorization
    # vocabulary .txt (one token per line, line i = id i). Required; load_config says so.
    tokenizer: Path | None = None
    max_length: int | None = None  # tokens per sequence; default: the model's static sequence length
    lowercase: bool | None = None  # word-index vocabularies only (default true); tokenizer.json normalizes itself
    oov_token: str | None = None  # word-index vocabularies: the out-of-vocabulary token (default: the file's own)
    padding_side: PaddingSide = PaddingSide.RIGHT
    truncation_side: TruncationSide = TruncationSide.RIGHT  # Keras pad_sequences' default is left (and padding left)
    doc_stride: int = 128  # span prediction: tokens shared by consecutive windows over a long context


@dataclass(frozen=True, kw_only=True)
class ArrayPreprocessing:
    """`preprocessing:` of array problem types: none; rows reach the model as they are (predict.data.arrays)."""


@dataclass(frozen=True, kw_only=True)
class AudioPreprocessing:
    """`preprocessing:` of audio problem types (see predict.data.audio)."""

    # Files are read mono and resampled to `sample_rate`, cut into chunks of
    # `inference_chunk_seconds` (default: the model's static length), features per chunk.
    sample_rate: int | None = None  # Hz the model was trained at; required (load_config says so)
    audio_features: AudioFeatures = AudioFeatures.LOG_MEL
    inference_chunk_seconds: float | None = None
    # log_mel (see predict.data.spectrogram). None = the feature_recipe's default.
    feature_recipe: FeatureRecipe = FeatureRecipe.LIBROSA
    mel_frequency_bins: int = 128  # mel bands (librosa n_mels)
    window_size: int = 2048  # window length in samples (librosa win_length); also the FFT length unless fft_size
    hop_size: int = 512  # samples between frames (librosa hop_length)
    fft_size: int | None = None  # FFT length (librosa n_fft); default window_size (tf_signal: next power of 2)
    window: Window = Window.HANN
    center: bool | None = None  # pad fft_size // 2 at both ends so frame t is centred on sample t * hop_size
    pad_mode: PadMode | None = None  # centred frames' padding
    framing: Framing | None = None
    mel_scale: MelScale | None = None
    mel_norm: MelNorm | None = None
    mel_triangles: MelTriangles | None = None
    f_min: float = 0.0  # lowest mel edge, Hz
    f_max: float | None = None  # highest mel edge, Hz; default sample_rate / 2
    spectrum_power: int | None = None  # 2: power |STFT|^2, 1: magnitude |STFT|
    log_scale: LogScale | None = None
    log_offset: float | None = None  # added to mel energies before the log
    top_db: float | None = None  # decibel only: clip each chunk to its maximum - top_db (librosa power_to_db)
    feature_normalization: FeatureNormalization = FeatureNormalization.NONE

    def spectrogram_recipe(self) -> SpectrogramRecipe:
        """The log-mel recipe in full: the keys set, and `feature_recipe`'s defaults for those left unset.

        Raises:
            ValueError: `sample_rate` is unset (load_config reports it first for audio tasks).
        """
        if self.sample_rate is None:
            raise ValueError("preprocessing.sample_rate is needed for a spectrogram")
        defaults = _RECIPE_DEFAULTS[self.feature_recipe]
        chosen = {
            name: getattr(defaults, name) if getattr(self, name) is None else getattr(self, name)
            for name in _RECIPE_KEYS
        }
        fft_size = self.fft_size
        if fft_size is None:
            # tf.signal.stft's fft_length=None: the smallest power of 2 that holds a frame.
            power_of_two = self.feature_recipe is FeatureRecipe.TF_SIGNAL
            fft_size = 1 << (self.window_size - 1).bit_length() if power_of_two else self.window_size
        return SpectrogramRecipe(
            sample_rate=self.sample_rate,
            mel_bins=self.mel_frequency_bins,
            window_size=self.window_size,
            hop_size=self.hop_size,
            fft_size=fft_size,
            window=self.window,
            f_min=self.f_min,
            f_max=self.sample_rate / 2 if self.f_max is None else self.f_max,
            top_db=self.top_db,
            feature_normalization=self.feature_normalization,
            **chosen,
        )


Preprocessing = ImagePreprocessing | TextPreprocessing | AudioPreprocessing | ArrayPreprocessing


@dataclass(frozen=True, kw_only=True)
class _RecipeDefaults:
    """What a `FeatureRecipe` sets: the `AudioPreprocessing` keys whose default is None (but `fft_size`)."""

    center: bool
    pad_mode: PadMode
    framing: Framing
    mel_scale: MelScale
    mel_norm: MelNorm
    mel_triangles: MelTriangles
    spectrum_power: int
    log_scale: LogScale
    log_offset: float


_RECIPE_KEYS = tuple(item.name for item in dataclasses.fields(_RecipeDefaults))
_RECIPE_DEFAULTS = {
    # librosa.feature.melspectrogram defaults, then power_to_db(ref=1.0, amin=1e-10, top_db=None).
    FeatureRecipe.LIBROSA: _RecipeDefaults(
        center=True,
        pad_mode=PadMode.CONSTANT,
        framing=Framing.LIBROSA,
        mel_scale=MelScale.SLANEY,
        mel_norm=MelNorm.SLANEY,
        mel_triangles=MelTriangles.HERTZ,
        spectrum_power=2,
        log_scale=LogScale.DECIBEL,
        log_offset=0.0,
    ),
    # torchaudio.transforms.MelSpectrogram defaults, then AmplitudeToDB(stype="power", top_db=None).
    FeatureRecipe.TORCHAUDIO: _RecipeDefaults(
        center=True,
        pad_mode=PadMode.REFLECT,
        framing=Framing.LIBROSA,
        mel_scale=MelScale.HTK,
        mel_norm=MelNorm.NONE,
        mel_triangles=MelTriangles.HERTZ,
        spectrum_power=2,
        log_scale=LogScale.DECIBEL,
        log_offset=0.0,
    ),
    # The tf.signal guide: abs(stft(...)) @ linear_to_mel_weight_matrix(...), then tf.math.log(mel + 1e-6).
    FeatureRecipe.TF_SIGNAL: _RecipeDefaults(
        center=False,
        pad_mode=PadMode.CONSTANT,
        framing=Framing.TF_SIGNAL,
        mel_scale=MelScale.HTK,
        mel_norm=MelNorm.NONE,
        mel_triangles=MelTriangles.MEL,
        spectrum_power=1,
        log_scale=LogScale.NATURAL,
        log_offset=1e-6,
    ),
}


@dataclass(frozen=True, kw_only=True)
class SpectrogramRecipe:
    """Every log-mel setting resolved: what `predict.data.spectrogram.MelFeatures` computes (see there)."""

    sample_rate: int
    mel_bins: int
    window_size: int
    hop_size: int
    fft_size: int
    window: Window
    center: bool
    pad_mode: PadMode
    framing: Framing
    mel_scale: MelScale
    mel_norm: MelNorm
    mel_triangles: MelTriangles
    f_min: float
    f_max: float
    spectrum_power: int
    log_scale: LogScale
    log_offset: float
    top_db: float | None
    feature_normalization: FeatureNormalization


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """How the model runs."""

    backend: Backend = Backend.ONNXRUNTIME
    device: Device = Device.AUTO
    batch_size: int = 32
    # Decoding processes; 0 decodes on the main thread while the model runs on its own. Unset: 0
    # when the model runs on the CPU of a machine with <= 2 CPUs (measured faster there; 2 after
    # 8 batches if decoding proves the bottleneck), else 2.
    num_workers: int | None = None
    # onnxruntime intra-op threads; 0 lets onnxruntime pick (one per physical core), except for sequence to
    # sequence on the CPU: two batches generated at once, each on half the cores (predict.runners.generation).
    threads: int = 0
    precision: Precision = Precision.FP32  # onnxruntime: fp16 halves memory traffic on CUDA
    io_binding: Toggle = Toggle.AUTO  # onnxruntime: bind inputs/outputs by pointer (auto: on CUDA)
    engine: Engine = Engine.LOCAL  # ray: Ray Data (pip install 'predict[ray]'), see predict.engines.ray
    ray_actors: int = 0  # ray engine: most model replicas; 0 = one per GPU, or half the cluster's CPUs
    # torch backend, TorchScript: one "name: dtype[d0, d1, ...]" per forward() input, ? = any size
    input_spec: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModelOptionsConfig:
    """How a Keras `.h5` model is loaded (converted or checked against Keras); see converters.keras_to_onnx."""

    # A Python file you trust, relative to the config's folder: its classes and functions are given
    # to Keras by name before the model loads (custom layers, activations...).
    custom_objects: Path | None = None
    # Let Lambda layers that hold Python bytecode load: the bytecode runs, so only for files you trust.
    allow_unsafe_deserialization: bool = False


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    """Where the prediction files go."""

    dir: Path | None = None  # default: runs/<config file stem> beside the config
    checkpoint_rows: int = 4096  # rows per checkpoint chunk (rounded up to whole batches), for --resume
    write_npz: bool = False  # also write {split}_raw_predictions.npz: the raw arrays, loadable without pickle


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """`predict serve` (predict.serve): the served models' name and the dynamic batcher, in Triton's words."""

    model_name: str | None = None  # `{name}` and `{name}_raw`; default: the config file's stem
    max_batch_size: int | None = None  # rows per model run, and per request, at most; default runtime.batch_size
    # How long the first queued request waits for company. 0 (Triton's default): batches still form from the
    # requests that queue while the model runs; measured on 2 cores, a 1 ms delay only added latency
    # (docs/performance.md, "Serving").
    max_queue_delay_microseconds: int = 0
    max_queue_size: int = 256  # requests waiting for the model; one more gets 503
    request_timeout_seconds: float = 30.0  # from arrival; a request not answered by then gets 504
    max_request_bytes: int = 64 * 1024 * 1024  # a larger body gets 413
    decoding_threads: int | None = None  # decode and post-process requests; default: the CPUs but one (1 to 4)
    replicas: int = 1  # `--engine ray`: copies of the server on Ray Serve, each with the batching above


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """A whole, validated task. Read-only: nothing writes to it after `load_config`."""

    source: Path  # the YAML file, for messages
    problem_type: ProblemType
    model: Path
    data: DataConfig
    # The modality's own section: ImagePreprocessing, TextPreprocessing, AudioPreprocessing or ArrayPreprocessing.
    preprocessing: Preprocessing
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    model_options: ModelOptionsConfig = field(default_factory=ModelOptionsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    head: Any = None  # the head's own frozen `Config` dataclass, see predict.heads

    @property
    def input_column(self) -> str:
        """The dataframe column the model reads (`data.image_column`, `data.text_column`, ...); for
        array problem types, the column that names the rows (`data.id_column`, default `row`)."""
        if self.problem_type.modality == "array":
            return self.data.id_column or ROW_COLUMN
        return getattr(self.data, f"{self.problem_type.modality}_column")

    @property
    def output_dir(self) -> Path:
        """The resolved output folder."""
        return self.output.dir or self.source.parent / "runs" / self.source.stem


# The sections every problem type reads the same way; `preprocessing` and `head` depend on it.
SECTIONS = {
    "data": DataConfig,
    "runtime": RuntimeConfig,
    "model_options": ModelOptionsConfig,
    "output": OutputConfig,
    "serve": ServeConfig,
}
TOP_LEVEL_KEYS = (
    "problem_type",
    "model",
    "data",
    "preprocessing",
    "runtime",
    "model_options",
    "output",
    "serve",
    "head",
)


def read_yaml(path: Path | str, overrides: typing.Sequence[str] = ()) -> tuple[dict, Path]:
    """A task YAML as a mapping, `--set` overrides applied, and its resolved path.

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping; an override is malformed.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"config file not found: {source}")
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source}: not valid YAML: {one_line(error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level (got {type(raw).__name__})")
    for override in overrides:
        _apply_override(raw, override, source)
    return raw, source.resolve()


def parse_section(cls: type, raw: Any, *, key: str, base_dir: Path, errors: list[str]) -> Any:
    """Build the dataclass `cls` from a raw mapping, appending problems to `errors` instead of raising.

    Heads use this for their own `Config`, so every section is checked the same way.

    Returns:
        An instance of `cls`, or None when the section could not be built.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{key} must be a mapping of keys (got {_show(raw)})")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    hints = typing.get_type_hints(cls)
    for name in raw:
        if name not in fields:
            errors.append(unknown_key(f"{key}.{name}", str(name), list(fields)))
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        full_key = f"{key}.{name}"
        if name not in raw:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                errors.append(f"{full_key} is missing")
            continue
        try:
            values[name] = _coerce(raw[name], hints[name], key=full_key, base_dir=base_dir)
        except _CoercionError as error:
            errors.append(str(error))
    try:
        return cls(**values)
    except TypeError:  # a required key was missing: already reported above
        return None


def feature_column_lists(
    feature_columns: tuple[str, ...] | dict[str, tuple[str, ...]] | None,
) -> list[tuple[str, tuple[str, ...]]]:
    """(config key, column names) of each list in `data.feature_columns`."""
    if feature_columns is None:
        return []
    if isinstance(feature_columns, dict):
        return [(f"data.feature_columns.{name}", names) for name, names in feature_columns.items()]
    return [("data.feature_columns", feature_columns)]


def missing_column(key: str, name: str, columns: list[str], dataframe: Path) -> str:
    message = f"{key}: column '{name}' is not in {dataframe.name} (columns: {', '.join(columns)})"
    suggestion = difflib.get_close_matches(name, columns, n=1)
    return message + (f"; did you mean '{suggestion[0]}'?" if suggestion else "")


# Keys that existed once: why they went, instead of a bare "unknown key".
_REMOVED_KEYS = {
    "output.pkl_array_limit_mb": "removed: every array is in the pkl now, however large, written from disk in pieces",
}


def unknown_key(full_key: str, name: str, valid: list[str]) -> str:
    if full_key in _REMOVED_KEYS:
        return f"{full_key}: {_REMOVED_KEYS[full_key]}; delete the key"
    suggestion = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{suggestion[0]}'?" if suggestion else f"valid keys: {', '.join(valid)}"
    return f"unknown key {full_key}: {hint}"


def _apply_override(raw: dict, override: str, source: Path) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. runtime.batch_size=64")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML: {one_line(error)}") from None
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part} in {source.name} is not a section")
        node = child
    node[parts[-1]] = value


class _CoercionError(Exception):
    pass


def coerce_value(value: Any, hint: Any, *, key: str, base_dir: Path, errors: list[str]) -> Any:
    """One top-level value as `hint` (problem_type, model), appending the problem to `errors`; None if bad."""
    try:
        return _coerce(value, hint, key=key, base_dir=base_dir)
    except _CoercionError as error:
        errors.append(str(error))
        return None


def _coerce(value: Any, hint: Any, *, key: str, base_dir: Path) -> Any:
    """Turn a YAML value into the annotated type, or raise `_CoercionError` naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        # A mapping goes to the union's mapping type (feature_columns: a list, or input name -> list).
        mappings = [option for option in options if typing.get_origin(option) is dict]
        chosen = mappings[0] if isinstance(value, dict) and mappings else options[0]
        return _coerce(value, chosen, key=key, base_dir=base_dir)
    if value is None:
        raise _CoercionError(f"{key} must not be empty")
    if origin is dict:
        return _coerce_mapping(value, hint, key=key, base_dir=base_dir)
    if origin is tuple:
        return _coerce_list(value, hint, key=key, base_dir=base_dir)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return _coerce_choice(value, hint, key=key)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise _CoercionError(f"{key} must be a path (got {_show(value)})")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base_dir / path).resolve()
    return _coerce_scalar(value, hint, key=key)


def _coerce_mapping(value: Any, hint: Any, *, key: str, base_dir: Path) -> dict:
    key_type, value_type = typing.get_args(hint)
    if not isinstance(value, dict) or not value:
        raise _CoercionError(f"{key} must be a mapping of keys (got {_show(value)})")
    return {
        _coerce(name, key_type, key=key, base_dir=base_dir): _coerce(
            item, value_type, key=f"{key}.{name}", base_dir=base_dir
        )
        for name, item in value.items()
    }


def _coerce_list(value: Any, hint: Any, *, key: str, base_dir: Path) -> tuple:
    args = typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
        raise _CoercionError(f"{key} must be a list (got {_show(value)})")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(item, args[0], key=key, base_dir=base_dir) for item in value)
    if len(value) != len(args):
        raise _CoercionError(f"{key} must be a list of {len(args)} values (got {len(value)})")
    return tuple(_coerce(item, arg, key=key, base_dir=base_dir) for item, arg in zip(value, args))


def _coerce_choice(value: Any, hint: type[StrEnum], *, key: str) -> StrEnum:
    choices = [member.value for member in hint]
    if isinstance(value, str) and value in choices:
        return hint(value)
    suggestion = difflib.get_close_matches(str(value), choices, n=1)
    hint_text = f"; did you mean '{suggestion[0]}'?" if suggestion else ""
    raise _CoercionError(f"{key} must be one of {', '.join(choices)} (got {_show(value)}){hint_text}")


def _coerce_scalar(value: Any, hint: Any, *, key: str) -> Any:
    if hint is bool:
        # Only real YAML booleans: bool("false") is True.
        if not isinstance(value, bool):
            raise _CoercionError(f"{key} must be true or false (got {_show(value)})")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _CoercionError(f"{key} must be an integer (got {_show(value)})")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _CoercionError(f"{key} must be a number (got {_show(value)})")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise _CoercionError(f"{key} must be a string (got {_show(value)})")
        return str(value)
    raise TypeError(f"config field {key} has an unsupported annotation {hint!r}")


def _show(value: Any) -> str:
    return f"{value!r}" if not isinstance(value, (dict, list)) else type(value).__name__
