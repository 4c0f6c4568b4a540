"""Which view shows a run: the one its problem type's spec names (predict.problems)."""

from __future__ import annotations

from predict.errors import InputError
from predict.problems import PROBLEMS
from predict.view.base import View
from predict.view.run import RunSplit


def view_for(run: RunSplit) -> View:
    """The view of `run`'s problem type, reading its predictions.

    Raises:
        InputError: no view exists for the problem type (listing those that have one), or the
            predictions CSV does not match its report.
    """
    spec = PROBLEMS.get(run.problem_type)
    if spec is None:
        supported = ", ".join(sorted(problem_type.value for problem_type in PROBLEMS))
        raise InputError(
            f"{run.run_dir}: viewing {run.problem_type.value} predictions is not supported yet; "
            f"supported problem types: {supported}"
        )
    return spec.view(run)
