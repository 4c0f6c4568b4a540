"""Loading a task: a YAML file becomes a `TaskConfig`, validated before any model or file opens.

The schema is predict.config; what depends on the problem type (its `preprocessing:` section, its
`head:` keys, its columns and checks) comes from its spec in predict.problems. Every problem found is
reported in one `ConfigError`, one line per problem, each naming the key:
`task.yaml: runtime.batch_size must be >= 1 (got 0)`.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

from predict.config import (
    SECTIONS,
    TOP_LEVEL_KEYS,
    TaskConfig,
    coerce_value,
    feature_column_lists,
    missing_column,
    parse_section,
    read_yaml,
    unknown_key,
)
from predict.data.dataframe import read_columns
from predict.enums import DATAFRAME_SUFFIXES, MODEL_SUFFIXES, Backend, ProblemType, Split
from predict.errors import ConfigError, one_line
from predict.problems import PROBLEMS, ProblemSpec
from predict.problems.modalities import MODALITIES
from predict.runners.torch_spec import check_runtime

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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
    raw, source = read_yaml(path, overrides)
    errors: list[str] = []
    task = _build_task(raw, source, errors)
    if task is not None:
        errors.extend(check_task(task, PROBLEMS[task.problem_type]))
    if errors or task is None:
        raise ConfigError("\n".join(f"{source.name}: {error}" for error in errors))
    return task


def _build_task(raw: dict, source: Path, errors: list[str]) -> TaskConfig | None:
    """The typed task, or None with the problems in `errors` (keys, types, coercion)."""
    base_dir = source.parent
    errors.extend(unknown_key(str(name), str(name), list(TOP_LEVEL_KEYS)) for name in raw if name not in TOP_LEVEL_KEYS)
    errors.extend(f"{name} is missing" for name in ("problem_type", "model", "data") if name not in raw)
    problem_type = model = None
    if "problem_type" in raw:
        problem_type = coerce_value(
            raw["problem_type"], ProblemType, key="problem_type", base_dir=base_dir, errors=errors
        )
    if "model" in raw:
        model = coerce_value(raw["model"], Path, key="model", base_dir=base_dir, errors=errors)
    sections = {
        name: parse_section(cls, raw.get(name), key=name, base_dir=base_dir, errors=errors)
        for name, cls in SECTIONS.items()
        if name in raw or name != "data"
    }
    if problem_type is None:
        return None
    spec = PROBLEMS[problem_type]
    data = sections.get("data")
    if data is not None and data.dataframe is None and spec.modality.name != "array":
        errors.append("data.dataframe is missing")  # array problem types may give data.inputs instead
    preprocessing = _parse_preprocessing(spec, raw.get("preprocessing"), base_dir, errors)
    head = parse_section(spec.head.Config, raw.get("head"), key="head", base_dir=base_dir, errors=errors)
    if errors or any(value is None for value in sections.values()):
        return None
    return TaskConfig(
        source=source, problem_type=problem_type, model=model, preprocessing=preprocessing, head=head, **sections
    )


def _parse_preprocessing(spec: ProblemSpec, raw: Any, base_dir: Path, errors: list[str]) -> Any:
    """The modality's `preprocessing:` section; a key of another modality's section says whose it is."""
    if isinstance(raw, dict):
        own = spec.modality.preprocessing_keys()
        for name in [name for name in raw if name not in own]:
            owners = [modality.name for modality in MODALITIES if name in modality.preprocessing_keys()]
            if owners:
                del raw[name]  # reported here, instead of as an unknown key
                errors.append(
                    f"preprocessing.{name} applies to {' and '.join(owners)} problem types, not {spec.problem_type} "
                    f"(its preprocessing keys: {', '.join(own) or 'none'}); remove it"
                )
    return parse_section(spec.modality.preprocessing, raw, key="preprocessing", base_dir=base_dir, errors=errors)


def check_task(task: TaskConfig, spec: ProblemSpec) -> list[str]:
    """Ranges, files and columns: the checks that need the whole, typed config."""
    errors = [
        *_check_ranges(task),
        *_check_model(task),
        *spec.modality.check(task),
        *spec.check(task),
        *_check_data(task, spec),
    ]
    head_check = getattr(task.head, "check", None)
    if head_check is not None:  # a head's own ranges, e.g. head.top_k_similar >= 1
        errors.extend(head_check())
    return errors


def _check_ranges(task: TaskConfig) -> list[str]:
    runtime, errors = task.runtime, []
    if runtime.batch_size < 1:
        errors.append(f"runtime.batch_size must be >= 1 (got {runtime.batch_size})")
    if runtime.num_workers is not None and runtime.num_workers < 0:
        errors.append(f"runtime.num_workers must be >= 0 (got {runtime.num_workers})")
    if task.output.checkpoint_rows < 1:
        errors.append(f"output.checkpoint_rows must be >= 1 (got {task.output.checkpoint_rows})")
    if runtime.threads < 0:
        errors.append(f"runtime.threads must be >= 0 (got {runtime.threads})")
    if runtime.ray_actors < 0:
        errors.append(f"runtime.ray_actors must be >= 0 (got {runtime.ray_actors})")
    return errors + _check_serve(task)


def _check_serve(task: TaskConfig) -> list[str]:
    """The `serve:` section's ranges (read by `predict serve` only, checked for every task)."""
    serve, errors = task.serve, []
    minimums = {"max_batch_size": 1, "max_queue_delay_microseconds": 0, "max_queue_size": 1}
    minimums |= {"max_request_bytes": 1, "decoding_threads": 1, "replicas": 1}
    for key, minimum in minimums.items():
        value = getattr(serve, key)
        if value is not None and value < minimum:
            errors.append(f"serve.{key} must be >= {minimum} (got {value})")
    if serve.request_timeout_seconds <= 0:
        errors.append(f"serve.request_timeout_seconds must be > 0 (got {serve.request_timeout_seconds:g})")
    if serve.model_name is not None and not _MODEL_NAME.fullmatch(serve.model_name):
        errors.append(
            f"serve.model_name must be letters, digits, '_', '-' or '.', starting with a letter or digit "
            f"(got {serve.model_name!r}): it is part of URLs"
        )
    return errors


def _check_model(task: TaskConfig) -> list[str]:
    """The model file, the backend and engine that run it, and the options that load it."""
    if not task.model.is_file():
        return [f"model file not found: {task.model}", *_check_model_options(task)]
    errors = []
    if task.runtime.backend is not Backend.TORCH and task.model.suffix.lower() not in MODEL_SUFFIXES:
        errors.append(f"model must be one of {', '.join(MODEL_SUFFIXES)} (got '{task.model.name}')")
    errors.extend(check_runtime(task))  # backend and model file, runtime.input_spec, runtime.engine
    return errors + _check_model_options(task)


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


def _check_data(task: TaskConfig, spec: ProblemSpec) -> list[str]:
    """The data folder, the input and label columns named, and the dataframe that must hold them."""
    data, errors = task.data, []
    if data.data_folder is not None and not data.data_folder.is_dir():
        errors.append(f"data.data_folder is not a folder: {data.data_folder}")
    errors.extend(
        f"data.{key} is missing (needed for {task.problem_type})"
        for key in spec.input_keys
        if getattr(data, key) is None
    )
    if not data.label_columns and data.inputs is None:  # seed-style files name their labels themselves
        errors.append("data.label_columns is missing: name the label column(s) the model predicts")
    elif len(set(data.label_columns)) != len(data.label_columns):
        errors.append(f"data.label_columns has duplicates: {list(data.label_columns)}")
    if data.dataframe is None:
        return errors
    if not data.dataframe.is_file():
        return [*errors, f"data.dataframe file not found: {data.dataframe}"]
    if data.dataframe.suffix.lower() not in DATAFRAME_SUFFIXES:
        suffixes = ", ".join(DATAFRAME_SUFFIXES)
        return [*errors, f"data.dataframe must be one of {suffixes} (got '{data.dataframe.name}')"]
    try:
        columns = read_columns(data.dataframe)
    except Exception as error:  # any reader failure is a bad file; say which and why
        return [*errors, f"data.dataframe {data.dataframe} cannot be read: {one_line(error)}"]
    return errors + _check_columns(task, spec, columns)


def _check_columns(task: TaskConfig, spec: ProblemSpec, columns: list[str]) -> list[str]:
    """Every column the config names is in the dataframe; labels as the split needs them."""
    data, errors = task.data, []
    named = [(f"data.{key}", getattr(data, key)) for key in (*spec.input_keys, "id_column")]
    named += [(key, name) for key, names in feature_column_lists(data.feature_columns) for name in names]
    errors.extend(
        missing_column(key, name, columns, data.dataframe) for key, name in named if name and name not in columns
    )
    present = [name for name in data.label_columns if name in columns]
    if data.split is Split.VALIDATION or present:
        # A validation split needs every label; a test split may have none, but not half of them.
        hint = " (a test split may leave every label column out: data.split: test)"
        errors.extend(
            missing_column("data.label_columns", name, columns, data.dataframe) + hint
            for name in data.label_columns
            if name not in columns
        )
    return errors
