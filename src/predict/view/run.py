"""Reading a run folder back: `{split}_report.json`, `{split}_predictions.csv`, `{split}_metrics.json`.

Views read the CSV, which holds the input columns (labels included) next to the `pred_*` columns,
and the report, which names the input and label columns. The `.pkl` is read only on request,
through `read_raw_predictions`, because unpickling runs code from the file.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from predict.enums import ProblemType, Split
from predict.errors import InputError

logger = logging.getLogger(__name__)

# Keys of `{split}_report.json` a view needs; `pipeline._report` writes them.
_REPORT_KEYS = ("problem_type", "split", "input_column", "label_columns", "data_folder")


@dataclass(frozen=True, kw_only=True)
class RunSplit:
    """One split of a run folder: its report, predictions and metrics.

    Attributes:
        run_dir: the run folder.
        split: `validation` or `test`.
        problem_type: from the report.
        report: `{split}_report.json` as written by the pipeline.
        predictions: `{split}_predictions.csv`, every cell as text, in row order.
        metrics: `{split}_metrics.json`, empty when the split had no labels.
    """

    run_dir: Path
    split: str
    problem_type: ProblemType
    report: dict[str, Any]
    predictions: pd.DataFrame
    metrics: dict[str, float]

    @property
    def input_column(self) -> str:
        """The dataframe column the model read (`image_path`, ...)."""
        return self.report["input_column"]

    @property
    def label_columns(self) -> tuple[str, ...]:
        """The configured label columns; they are in the CSV only when the dataframe had labels."""
        return tuple(self.report["label_columns"])

    @property
    def labelled(self) -> bool:
        """Whether the CSV holds every label column, so actual values can be shown."""
        return bool(self.label_columns) and all(column in self.predictions.columns for column in self.label_columns)

    @property
    def data_folder(self) -> Path:
        """Where relative paths of the input column resolve."""
        return Path(self.report["data_folder"])


def find_splits(run_dir: Path) -> list[str]:
    """The splits with a `{split}_report.json` in `run_dir`, validation first.

    Raises:
        InputError: `run_dir` is not a folder, or holds no report of any split.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder not found: {run_dir}")
    splits = [split.value for split in Split if (run_dir / f"{split.value}_report.json").is_file()]
    if not splits:
        expected = " or ".join(f"{split.value}_report.json" for split in Split)
        raise InputError(f"{run_dir}: not a run folder: it holds no {expected}; run `predict --config task.yaml` first")
    return splits


def load_run(run_dir: Path, split: str) -> RunSplit:
    """Read one split of a run folder.

    Args:
        run_dir: the folder a run wrote (`output.dir`).
        split: `validation` or `test`.

    Raises:
        InputError: a file is missing or unreadable, or the report lacks a key, naming the file.
    """
    run_dir = Path(run_dir)
    report_path = run_dir / f"{split}_report.json"
    csv_path = run_dir / f"{split}_predictions.csv"
    if not report_path.is_file():
        present = ", ".join(find_splits(run_dir))
        raise InputError(f"{run_dir}: no {split} split here (it has: {present}); pick one with --split")
    report = _read_json(report_path)
    missing = [key for key in _REPORT_KEYS if key not in report]
    if missing:
        raise InputError(
            f"{report_path}: missing key(s) {', '.join(missing)}: written by an older version of predict; "
            "run the task again to view it"
        )
    try:
        problem_type = ProblemType(report["problem_type"])
    except ValueError:
        raise InputError(f"{report_path}: unknown problem_type {report['problem_type']!r}") from None
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: not found; the run folder is incomplete, run the task again")
    try:
        predictions = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{csv_path}: cannot be read: {' '.join(str(error).split())}") from None
    metrics_path = run_dir / f"{split}_metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
    return RunSplit(
        run_dir=run_dir,
        split=split,
        problem_type=problem_type,
        report=report,
        predictions=predictions,
        metrics=metrics,
    )


def read_raw_predictions(path: Path) -> dict[str, Any]:
    """Unpickle a `{split}_raw_predictions.pkl`, with a warning: pickle runs code from the file.

    Views that can work from the CSV do; this is for arrays the CSV does not hold (masks, embeddings).

    Raises:
        InputError: the file is missing or is not a pickled dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found")
    logger.warning("reading %s with pickle: unpickling can run arbitrary code, only open .pkl files you trust", path)
    try:
        with path.open("rb") as handle:
            raw = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise InputError(f"{path}: not a readable pickle: {' '.join(str(error).split())}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a pickled dict of arrays (got {type(raw).__name__})")
    return raw


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot be read as JSON: {' '.join(str(error).split())}") from None
    if not isinstance(payload, dict):
        raise InputError(f"{path}: expected a JSON object (got {type(payload).__name__})")
    return payload
