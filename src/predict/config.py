"""Task config: a YAML file becomes frozen dataclasses, fully validated before any model or file opens.

`load_config` checks, in order: unknown keys (with a did-you-mean), missing keys, coercion (str to
enum or path), then types, ranges and that the named files and columns exist. Every problem found is
reported in one `ConfigError`, one line per problem, each naming the key: `task.yaml: runtime.batch_size
must be >= 1 (got 0)`.
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

from predict.errors import ConfigError, one_line


class ProblemType(StrEnum):
    """The 14 problem types of H2O Hydrogen Torch, in snake case."""

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

    @property
    def modality(self) -> str:
        """`image`, `text` or `audio`: the prefix of the name."""
        return self.value.split("_", 1)[0]


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


class AudioFeatures(StrEnum):
    """What an audio model takes: the `waveform` itself, or its `log_mel` spectrogram (see predict.data.audio)."""

    WAVEFORM = "waveform"
    LOG_MEL = "log_mel"


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
    TORCH = "torch"  # TorchScript (.pt), torch.export (.pt2), Keras .h5 through Keras 3 on torch (predict.runners.torch)


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


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The dataframe to score and where its files live."""

    dataframe: Path
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


@dataclass(frozen=True, kw_only=True)
class PreprocessingConfig:
    """Image pre-processing: resize to `image_size` (height, width), then `(pixel - mean) / std` per channel."""

    image_size: tuple[int, int] | None = None  # default: the model's own static height and width
    mean: tuple[float, ...] = (0.0,)  # one value applies to every channel
    std: tuple[float, ...] = (255.0,)
    interpolation: Interpolation = Interpolation.BILINEAR
    resize_mode: ResizeMode = ResizeMode.RESIZE  # detection/segmentation map boxes and masks back the same way
    # Text (see predict.data.tokenizer): a Hugging Face tokenizer.json, a Keras Tokenizer JSON / word
    # index JSON, or a TextVectorization vocabulary .txt (one token per line, line i = id i).
    tokenizer: Path | None = None
    max_length: int | None = None  # tokens per sequence; default: the model's static sequence length
    lowercase: bool | None = None  # word-index vocabularies only (default true); tokenizer.json normalizes itself
    oov_token: str | None = None  # word-index vocabularies: the out-of-vocabulary token (default: the file's own)
    padding_side: PaddingSide = PaddingSide.RIGHT
    doc_stride: int = 128  # span prediction: tokens shared by consecutive windows over a long context
    # Audio (see predict.data.audio): files are read mono and resampled to `sample_rate`, cut into
    # chunks of `inference_chunk_seconds` (default: the model's static length), features per chunk.
    sample_rate: int | None = None  # Hz the model was trained at; required for audio
    audio_features: AudioFeatures = AudioFeatures.LOG_MEL
    mel_frequency_bins: int = 128  # log_mel: mel bands (librosa n_mels)
    window_size: int = 2048  # log_mel: STFT window and FFT length in samples (librosa n_fft)
    hop_size: int = 512  # log_mel: samples between frames (librosa hop_length)
    inference_chunk_seconds: float | None = None


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
    threads: int = 0  # onnxruntime intra-op threads; 0 lets onnxruntime pick (one per physical core)
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
    # Masks bigger than this stay in {split}_{key}.npy beside the pkl, which names the file (see pipeline._place_disk_arrays).
    pkl_array_limit_mb: int = 256


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """A whole, validated task. Read-only: nothing writes to it after `load_config`."""

    source: Path  # the YAML file, for messages
    problem_type: ProblemType
    model: Path
    data: DataConfig
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    model_options: ModelOptionsConfig = field(default_factory=ModelOptionsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    head: Any = None  # the head's own frozen `Config` dataclass, see predict.heads

    @property
    def input_column(self) -> str:
        """The dataframe column the model reads: `data.image_column`, `data.text_column`, ..."""
        return getattr(self.data, f"{self.problem_type.modality}_column")

    @property
    def output_dir(self) -> Path:
        """The resolved output folder."""
        return self.output.dir or self.source.parent / "runs" / self.source.stem


_SECTIONS = {
    "data": DataConfig,
    "preprocessing": PreprocessingConfig,
    "runtime": RuntimeConfig,
    "model_options": ModelOptionsConfig,
    "output": OutputConfig,
}
_TOP_LEVEL_KEYS = ("problem_type", "model", *_SECTIONS, "head")


def load_config(path: Path | str, overrides: typing.Sequence[str] = ()) -> TaskConfig:
    """Read, override and validate a task YAML.

    Args:
        path: the YAML file; relative paths inside it resolve against its folder.
        overrides: `a.b=value` strings from `--set`; the value is parsed as YAML (`64`, `test`, `[1, 2]`).

    Returns:
        The validated, frozen task config.

    Raises:
        ConfigError: listing every problem found, one per line, each naming its key.
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
    return _build_task(raw, source.resolve())


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
            errors.append(_unknown_key(f"{key}.{name}", str(name), list(fields)))
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


def _build_task(raw: dict, source: Path) -> TaskConfig:
    # Imported here: the registry imports this module for the enums.
    from predict.heads import HEADS

    errors: list[str] = []
    base_dir = source.parent
    for name in raw:
        if name not in _TOP_LEVEL_KEYS:
            errors.append(_unknown_key(str(name), str(name), list(_TOP_LEVEL_KEYS)))
    for name in ("problem_type", "model", "data"):
        if name not in raw:
            errors.append(f"{name} is missing")

    problem_type = None
    if "problem_type" in raw:
        try:
            problem_type = _coerce(raw["problem_type"], ProblemType, key="problem_type", base_dir=base_dir)
        except _CoercionError as error:
            errors.append(str(error))

    model = None
    if "model" in raw:
        try:
            model = _coerce(raw["model"], Path, key="model", base_dir=base_dir)
        except _CoercionError as error:
            errors.append(str(error))

    sections = {
        name: parse_section(cls, raw.get(name), key=name, base_dir=base_dir, errors=errors)
        for name, cls in _SECTIONS.items()
        if name in raw or name != "data"
    }
    head = None
    if problem_type is not None:
        head = parse_section(
            HEADS[problem_type].Config, raw.get("head"), key="head", base_dir=base_dir, errors=errors
        )

    if not errors and all(value is not None for value in sections.values()):
        task = TaskConfig(source=source, problem_type=problem_type, model=model, head=head, **sections)
        errors.extend(_check_task(task))
        if not errors:
            return task
    raise ConfigError("\n".join(f"{source.name}: {error}" for error in errors))


def _check_task(task: TaskConfig) -> list[str]:
    """Ranges, files and columns: the checks that need the whole, typed config."""
    errors: list[str] = []
    data, preprocessing, runtime = task.data, task.preprocessing, task.runtime
    if runtime.batch_size < 1:
        errors.append(f"runtime.batch_size must be >= 1 (got {runtime.batch_size})")
    if runtime.num_workers is not None and runtime.num_workers < 0:
        errors.append(f"runtime.num_workers must be >= 0 (got {runtime.num_workers})")
    if task.output.pkl_array_limit_mb < 0:
        errors.append(f"output.pkl_array_limit_mb must be >= 0 (got {task.output.pkl_array_limit_mb})")
    if task.output.checkpoint_rows < 1:
        errors.append(f"output.checkpoint_rows must be >= 1 (got {task.output.checkpoint_rows})")
    if runtime.threads < 0:
        errors.append(f"runtime.threads must be >= 0 (got {runtime.threads})")
    if preprocessing.image_size is not None and min(preprocessing.image_size) < 1:
        errors.append(f"preprocessing.image_size must be two positive integers (got {list(preprocessing.image_size)})")
    for name in ("mean", "std"):
        value = getattr(preprocessing, name)
        if len(value) not in (1, 3):
            errors.append(f"preprocessing.{name} must have 1 or 3 values, one per channel (got {len(value)})")
    if any(value == 0 for value in preprocessing.std):
        errors.append(f"preprocessing.std must not contain 0 (got {list(preprocessing.std)})")

    if not task.model.is_file():
        errors.append(f"model file not found: {task.model}")
    elif runtime.backend is not Backend.TORCH and task.model.suffix.lower() not in MODEL_SUFFIXES:
        errors.append(f"model must be one of {', '.join(MODEL_SUFFIXES)} (got '{task.model.name}')")
    if task.model.is_file():
        from predict.runners.torch_spec import check_runtime

        errors.extend(check_runtime(task))  # backend and model file, runtime.input_spec, runtime.engine
    errors.extend(_check_model_options(task))
    if data.data_folder is not None and not data.data_folder.is_dir():
        errors.append(f"data.data_folder is not a folder: {data.data_folder}")

    column_key = f"{task.problem_type.modality}_column"
    if task.problem_type.modality == "text":
        errors.extend(_check_text(task))
    if task.problem_type.modality == "audio":
        errors.extend(_check_audio(task))
    head_check = getattr(task.head, "check", None)
    if head_check is not None:  # a head's own ranges, e.g. head.top_k_similar >= 1
        errors.extend(head_check())
    # Span prediction reads data.question_column and data.context_column instead (see _check_text).
    if task.problem_type is not ProblemType.TEXT_SPAN_PREDICTION and getattr(data, column_key, None) is None:
        errors.append(f"data.{column_key} is missing (needed for {task.problem_type})")
    if not data.label_columns:
        errors.append("data.label_columns is missing: name the label column(s) the model predicts")
    elif len(set(data.label_columns)) != len(data.label_columns):
        errors.append(f"data.label_columns has duplicates: {list(data.label_columns)}")

    if not data.dataframe.is_file():
        errors.append(f"data.dataframe file not found: {data.dataframe}")
    elif data.dataframe.suffix.lower() not in DATAFRAME_SUFFIXES:
        errors.append(f"data.dataframe must be one of {', '.join(DATAFRAME_SUFFIXES)} (got '{data.dataframe.name}')")
    else:
        from predict.data.dataframe import read_columns

        try:
            columns = read_columns(data.dataframe)
        except Exception as error:  # any reader failure is a bad file; say which and why
            errors.append(f"data.dataframe {data.dataframe} cannot be read: {one_line(error)}")
        else:
            errors.extend(_check_columns(task, columns, column_key))
    return errors


def _check_model_options(task: TaskConfig) -> list[str]:
    """The custom objects file exists and is Python, and the options apply to the model given."""
    errors = []
    options = task.model_options
    if options.custom_objects is not None:
        if not options.custom_objects.is_file():
            errors.append(f"model_options.custom_objects file not found: {options.custom_objects}")
        elif options.custom_objects.suffix != ".py":
            name = options.custom_objects.name
            errors.append(f"model_options.custom_objects must be a Python file (.py) (got '{name}')")
    uses_options = options.custom_objects is not None or options.allow_unsafe_deserialization
    if uses_options and task.model.suffix.lower() not in (".h5", ".hdf5"):
        errors.append(f"model_options apply to Keras .h5 models only (model is '{task.model.name}')")
    return errors


def _check_audio(task: TaskConfig) -> list[str]:
    """Sample rate, spectrogram and chunk settings: the keys every audio problem type needs."""
    errors = []
    preprocessing = task.preprocessing
    if preprocessing.sample_rate is None:
        errors.append(f"preprocessing.sample_rate is missing: the sample rate (Hz) the model was trained at ({task.problem_type})")
    elif preprocessing.sample_rate < 1:
        errors.append(f"preprocessing.sample_rate must be >= 1 (got {preprocessing.sample_rate})")
    for key, minimum in (("mel_frequency_bins", 1), ("window_size", 2), ("hop_size", 1)):
        value = getattr(preprocessing, key)
        if value < minimum:
            errors.append(f"preprocessing.{key} must be >= {minimum} (got {value})")
    seconds = preprocessing.inference_chunk_seconds
    if seconds is not None and seconds <= 0:
        errors.append(f"preprocessing.inference_chunk_seconds must be > 0 (got {seconds})")
    elif seconds is not None and preprocessing.sample_rate and round(seconds * preprocessing.sample_rate) < 1:
        errors.append(
            f"preprocessing.inference_chunk_seconds {seconds} is shorter than one sample at {preprocessing.sample_rate} Hz"
        )
    return errors


def _check_text(task: TaskConfig) -> list[str]:
    """Tokenizer and text columns: the keys every text problem type needs."""
    errors = []
    preprocessing = task.preprocessing
    if preprocessing.tokenizer is None:
        errors.append(f"preprocessing.tokenizer is missing: a text model needs the tokenizer it was trained with ({task.problem_type})")
    elif not preprocessing.tokenizer.is_file():
        errors.append(f"preprocessing.tokenizer file not found: {preprocessing.tokenizer}")
    if preprocessing.max_length is not None and preprocessing.max_length < 1:
        errors.append(f"preprocessing.max_length must be >= 1 (got {preprocessing.max_length})")
    if preprocessing.doc_stride < 0:
        errors.append(f"preprocessing.doc_stride must be >= 0 (got {preprocessing.doc_stride})")
    if task.problem_type is ProblemType.TEXT_SPAN_PREDICTION:
        for key in ("question_column", "context_column"):
            if getattr(task.data, key) is None:
                errors.append(f"data.{key} is missing (needed for {task.problem_type})")
        if len(task.data.label_columns) > 1:
            errors.append(f"data.label_columns: span prediction takes one answer column (got {list(task.data.label_columns)})")
    return errors


def _check_columns(task: TaskConfig, columns: list[str], column_key: str) -> list[str]:
    errors = []
    data = task.data
    for key in ("question_column", "context_column"):
        name = getattr(data, key, None)
        if name is not None and name not in columns:
            errors.append(_missing_column(f"data.{key}", name, columns, data.dataframe))
    input_column = getattr(data, column_key, None)
    if input_column is not None and input_column not in columns:
        errors.append(_missing_column(f"data.{column_key}", input_column, columns, data.dataframe))
    present = [name for name in data.label_columns if name in columns]
    if data.split is Split.VALIDATION or present:
        # A validation split needs every label; a test split may have none, but not half of them.
        for name in data.label_columns:
            if name not in columns:
                hint = " (a test split may leave every label column out: data.split: test)"
                errors.append(_missing_column("data.label_columns", name, columns, data.dataframe) + hint)
    return errors


def _missing_column(key: str, name: str, columns: list[str], dataframe: Path) -> str:
    message = f"{key}: column '{name}' is not in {dataframe.name} (columns: {', '.join(columns)})"
    suggestion = difflib.get_close_matches(name, columns, n=1)
    return message + (f"; did you mean '{suggestion[0]}'?" if suggestion else "")


def _unknown_key(full_key: str, name: str, valid: list[str]) -> str:
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


def _coerce(value: Any, hint: Any, *, key: str, base_dir: Path) -> Any:
    """Turn a YAML value into the annotated type, or raise `_CoercionError` naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], key=key, base_dir=base_dir)
    if value is None:
        raise _CoercionError(f"{key} must not be empty")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise _CoercionError(f"{key} must be a list (got {_show(value)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], key=key, base_dir=base_dir) for item in value)
        if len(value) != len(args):
            raise _CoercionError(f"{key} must be a list of {len(args)} values (got {len(value)})")
        return tuple(_coerce(item, arg, key=key, base_dir=base_dir) for item, arg in zip(value, args))
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        choices = [member.value for member in hint]
        if isinstance(value, str) and value in choices:
            return hint(value)
        suggestion = difflib.get_close_matches(str(value), choices, n=1)
        hint_text = f"; did you mean '{suggestion[0]}'?" if suggestion else ""
        raise _CoercionError(f"{key} must be one of {', '.join(choices)} (got {_show(value)}){hint_text}")
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise _CoercionError(f"{key} must be a path (got {_show(value)})")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base_dir / path).resolve()
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

