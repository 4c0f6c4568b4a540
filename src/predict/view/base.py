"""What every problem type's view provides to `predict show` and `predict report`.

A view reads one split of a run folder (`RunSplit`) and gives: a table of actual vs predicted per
row, the order of rows from worst to best, the plots of the HTML page, and the caption of a sample
input. Adding a problem type is one module with a `View` subclass, registered in `predict.view.VIEWS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from predict.errors import InputError
from predict.view.run import RunSplit


@dataclass(frozen=True, kw_only=True)
class Plot:
    """One picture of the report.

    Attributes:
        title: the heading above it.
        png: the PNG file's bytes.
        caption: one line under it (how to read it, what was left out).
    """

    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True, kw_only=True)
class SampleLabel:
    """The caption of one input on the page: predicted and true values, and whether they agree.

    Attributes:
        predicted: e.g. `square 0.98` or `0.213`.
        actual: e.g. `square`, or None when the split has no labels.
        correct: True/False for a classification with labels; None where it does not apply.
    """

    predicted: str
    actual: str | None
    correct: bool | None


class View(ABC):
    """Reads one split's predictions for one problem type.

    Attributes:
        run: the split of the run folder.
        worst_meaning: what "worst" sorts by, for headings (e.g. "largest absolute error").
    """

    worst_meaning: ClassVar[str]
    # Format specs of table columns that need other than 4 significant digits (e.g. probabilities).
    number_formats: ClassVar[dict[str, str]] = {}
    # How the page lays out sample cards: "grid" of small cards (thumbnails, short texts), "wide", one
    # card per line (sentences with tags, contexts, side-by-side texts), "strips" (neighbour strips, two a line)
    # or "large" (images with boxes or masks drawn over them, about 300 pixels wide).
    sample_layout: ClassVar[str] = "grid"

    def __init__(self, run: RunSplit) -> None:
        self.run = run

    @property
    def input_column(self) -> str | None:
        """The column shown as the input of each row (`image_path`, `review`, ...), None when there is none."""
        return self.run.input_column

    @property
    def labelled(self) -> bool:
        """Whether actual values are known; views whose CSV replaces the labels by predictions override it."""
        return self.run.labelled

    @property
    def row_count(self) -> int:
        """How many rows the view has (images for semantic segmentation, whose CSV has one row per class)."""
        return len(self.run.predictions)

    @property
    def input_values(self) -> pd.Series | None:
        """The input column's value of each view row, None when the CSV has no such column."""
        column = self.input_column
        return self.run.predictions[column] if column in self.run.predictions.columns else None

    @property
    def sample_noun(self) -> str:
        """What a sample is, for the page's heading: `images`, `clips` or `texts`."""
        return {"image": "images", "audio": "clips", "array": "rows"}.get(self.run.problem_type.modality, "texts")

    def sample_html(self, row: int) -> str:
        """The HTML card of row `row` on the page: the input (image or audio thumbnail, text snippet)
        and `sample_label`'s predicted and actual values. Views with richer samples override it."""
        from predict.view import _samples

        value = str(self.run.predictions[self.input_column].iloc[row])
        modality = self.run.problem_type.modality
        if modality == "image":
            body = _samples.image_thumbnail(self.run.data_folder, value)
        elif modality == "audio":
            body = _samples.audio_thumbnail(self.run.data_folder, value)
        else:
            return _samples.card(_samples.text_snippet(value), self.sample_label(row), heading=f"row {row}")
        return _samples.card(body, self.sample_label(row), heading=f"row {row} &middot; {_samples.escape(value)}")

    def format_cell(self, column: str, value: object) -> str:
        """A table cell as text: numbers with the column's format (default 4 significant digits)."""
        if isinstance(value, (float, np.floating)):
            return format(value, self.number_formats.get(column, ".4g"))
        return str(value)

    @abstractmethod
    def table(self) -> pd.DataFrame:
        """Actual, predicted and confidence or error per row: one row per input row, in input order.

        Numbers stay numbers (the callers format them); missing actual values are absent columns.
        """

    @abstractmethod
    def badness(self) -> np.ndarray:
        """float64[N]: how wrong each row is, larger is worse; only called when the split has labels."""

    @abstractmethod
    def plots(self) -> list[Plot]:
        """The problem type's pictures, with labels (metrics plots) or without (distributions)."""

    @abstractmethod
    def sample_label(self, row: int) -> SampleLabel:
        """Predicted and true values of row `row` (0-based, input order), for a sample's caption."""

    def worst_first(self) -> np.ndarray:
        """int64[N] row positions, worst first; ties keep input order.

        Raises:
            InputError: the split has no labels, so there are no errors to sort by.
        """
        if not self.labelled:
            columns = ", ".join(self.run.label_columns) or "none configured"
            raise InputError(
                f"--worst needs actual values, but {self.run.run_dir / (self.run.split + '_predictions.csv')} "
                f"has no label column(s) ({columns}); score a labelled dataframe to rank errors"
            )
        return np.argsort(-self.badness(), kind="stable")
