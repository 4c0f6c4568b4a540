"""A task's plan: what is done to every row, decode -> model -> head, without files or checkpoints.

The batch job (predict.pipeline) streams a plan's batches through an engine and writes files; anything
else that scores rows the same way builds the same plan, so no problem type's pre- or post-processing
exists twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import BatchDataset, InProcessBatches
from predict.heads.base import Head
from predict.model_file import ResolvedModel
from predict.problems import PROBLEMS, ProblemSpec
from predict.runners.backend import resolve_model
from predict.runners.base import Runner

__all__ = ["Plan", "build_plan", "read_rows", "resolve_model"]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything loaded to score a task's rows.

    Attributes:
        task: the task, as its rows and model complete it (array tasks name their columns from them).
        spec: the problem type's spec.
        dataframe: the rows to score.
        model: the model file the runner loaded (a converted `.h5` is cached under output.dir).
        runner: the loaded model.
        head: post-processes the runner's outputs, with the labels read.
    """

    task: TaskConfig
    spec: ProblemSpec
    dataframe: pd.DataFrame
    model: ResolvedModel
    runner: Runner
    head: Head

    def dataset(self) -> BatchDataset:
        """The rows as the model takes them, in `runtime.batch_size` batches (item i is batch i)."""
        return self.spec.build_dataset(self.task, self.dataframe, self.runner.inputs)


def read_rows(task: TaskConfig) -> tuple[TaskConfig, pd.DataFrame]:
    """The rows to score as a dataframe, and the task as they complete it (array tasks name their id and
    label columns from their files; see predict.data.arrays).

    Raises:
        InputError: a file cannot be read.
    """
    return PROBLEMS[task.problem_type].modality.read_rows(task)


def build_plan(task: TaskConfig, dataframe: pd.DataFrame, model: ResolvedModel, *, output_dir: Path) -> Plan:
    """Load the model file (`resolve_model`) with its problem type's runner, and build its head.

    Raises:
        ConfigError: the model does not fit the config (inputs, outputs, device).
        InputError: a label cell is invalid, naming its row.
    """
    spec = PROBLEMS[task.problem_type]
    runner = spec.load_runner(task, model.path, output_dir)
    task = spec.modality.name_outputs(task, runner.outputs)
    head = spec.build_head(spec, task, runner, dataframe)
    return Plan(task=task, spec=spec, dataframe=dataframe, model=model, runner=runner, head=head)


def batches_in_process(task: TaskConfig, dataframe: pd.DataFrame, runner: Runner) -> InProcessBatches:
    """Every batch of the rows, decoded in this thread: what the raw baselines of the benchmarks feed the model."""
    dataset = PROBLEMS[task.problem_type].build_dataset(task, dataframe, runner.inputs)
    return InProcessBatches(dataset)
