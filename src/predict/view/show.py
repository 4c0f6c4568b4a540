"""`predict show RUN_DIR`: a terminal table of actual vs predicted per row, then the metrics (rich)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from predict.view._samples import shorten
from predict.view.base import View
from predict.view.run import RunSplit, find_splits, load_run
from predict.view.select import view_for


def choose_split(run_dir: Path, split: str | None) -> str:
    """`split` when given, else the run folder's only split, or validation when it has both.

    Raises:
        InputError: `run_dir` is not a run folder.
    """
    splits = find_splits(run_dir)
    return split if split is not None else splits[0]


def show(
    run_dir: Path, *, split: str | None = None, rows: int = 20, worst: bool = False, console: Console | None = None
) -> None:
    """Print the predictions table and the metrics of one split of a run folder.

    Args:
        run_dir: the folder a run wrote.
        split: `validation` or `test`; default: see `choose_split`.
        rows: how many rows to print; 0 prints all.
        worst: sort worst first (see the view's `worst_meaning`) instead of input order.
        console: where to print (default: stdout).

    Raises:
        InputError: the folder, its files or its problem type cannot be shown, or `worst` on a split
            without labels.
    """
    console = console or Console()
    run = load_run(run_dir, choose_split(run_dir, split))
    view = view_for(run)
    order = view.worst_first() if worst else np.arange(view.row_count)
    if rows:
        order = order[:rows]
    total = view.row_count
    console.print(Text(f"{run.problem_type.value}, {run.split} split: {total} rows in {run.run_dir}", style="bold"))
    console.print(
        _table(run, view.table(), order, view, caption=_caption(len(order), total, worst, view.worst_meaning))
    )
    if run.metrics:
        console.print(
            Text("metrics: ", style="bold")
            + Text("  ".join(f"{name} {value:.4f}" for name, value in run.metrics.items()))
        )
    elif not view.labelled:
        console.print(Text("no metrics: this split has no label columns", style="dim"))
    rate = run.report.get("rows_per_second")
    if rate is not None:
        console.print(Text(f"throughput: {rate} rows/s on {run.report.get('provider', '?')}", style="dim"))


def _caption(shown: int, total: int, worst: bool, worst_meaning: str) -> str:
    if worst:
        return f"{shown} worst of {total} rows: {worst_meaning} first"
    return f"rows 0..{shown - 1} of {total}, in input order" if shown else "no rows"


def _table(run: RunSplit, values: pd.DataFrame, order: np.ndarray, view: View, *, caption: str) -> Table:
    table = Table(caption=caption, caption_justify="left")
    # The position in the CSV; "#" when the input column itself is called `row` (array tasks).
    table.add_column("#" if view.input_column == "row" else "row", justify="right", style="dim", no_wrap=True)
    # Paths can be long: folded onto several lines rather than cut with an ellipsis.
    table.add_column(view.input_column or "input", overflow="fold")
    for name in values.columns:
        numeric = pd.api.types.is_numeric_dtype(values[name])
        table.add_column(name, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    inputs = view.input_values
    for row in order:
        row = int(row)
        cells = [str(row), "" if inputs is None else shorten(str(inputs.iloc[row]))]
        cells.extend(view.format_cell(name, values[name].iloc[row]) for name in values.columns)
        correct = view.sample_label(row).correct
        table.add_row(*cells, style="red" if correct is False else None)
    return table
