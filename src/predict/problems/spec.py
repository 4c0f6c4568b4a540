"""What makes a problem type: `ProblemSpec`, one per type, registered in predict.problems.PROBLEMS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import BatchDataset
from predict.enums import ProblemType, TextLayout
from predict.heads.base import Head
from predict.problems.modalities import Modality
from predict.runners.backend import load_runner
from predict.runners.base import Runner, TensorSpec
from predict.view.base import View


def no_checks(task: TaskConfig) -> list[str]:
    """A problem type with no keys of its own beyond its modality's and its head's."""
    return []


def plain_runner(task: TaskConfig, model_path: Path, output_dir: Path) -> Runner:
    """One model, run once per batch by the task's backend (predict.runners.backend)."""
    return load_runner(task, model_path)


def head_from_outputs(spec: ProblemSpec, task: TaskConfig, runner: Runner, dataframe: pd.DataFrame) -> Head:
    """The head built from the model's output specs and the labels in the dataframe."""
    return spec.head.build(task, outputs=runner.outputs, dataframe=dataframe)


@dataclass(frozen=True, kw_only=True)
class ProblemSpec:
    """One problem type: what it reads, how its model runs, and who post-processes and shows its predictions.

    Attributes:
        problem_type: the `problem_type:` value.
        modality: images, texts, audio files or arrays (predict.problems.modalities).
        head: post-processes the model's outputs into predictions, CSV columns and metrics; its
            `Config` is the `head:` section and its `context_type` what it reads from each batch.
        view: shows a run's predictions (`predict show`, `predict report`).
        layout: text problem types: how rows become model sequences.
        input_keys: the `data.` keys naming the columns the model reads (required by load_config).
        check: config checks of this problem type beyond its modality's (load_config).
        load_runner: (task, model file, output folder) -> the runner of the model file.
        build_head: (spec, task, runner, dataframe) -> the head, once the model is loaded.
    """

    problem_type: ProblemType
    modality: Modality
    head: type[Head]
    view: type[View]
    layout: TextLayout | None = None
    input_keys: tuple[str, ...] | None = None  # None: the modality's column key
    check: Callable[[TaskConfig], list[str]] = no_checks
    load_runner: Callable[[TaskConfig, Path, Path], Runner] = plain_runner
    build_head: Callable[[ProblemSpec, TaskConfig, Runner, pd.DataFrame], Head] = head_from_outputs

    def __post_init__(self) -> None:
        if self.input_keys is None:
            column_key = self.modality.column_key
            object.__setattr__(self, "input_keys", (column_key,) if column_key else ())

    def build_dataset(
        self, task: TaskConfig, dataframe: pd.DataFrame, model_inputs: tuple[TensorSpec, ...]
    ) -> BatchDataset:
        """The batches of the dataframe's rows, as the model takes them (item i is batch i)."""
        return self.modality.build_dataset(task, dataframe, model_inputs, self.layout)
