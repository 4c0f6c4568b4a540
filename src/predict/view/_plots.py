"""Matplotlib helpers shared by the views: figures drawn by the Agg canvas, saved as PNG bytes.

Figures are built with `matplotlib.figure.Figure` and an explicit `FigureCanvasAgg`, never through
`pyplot`, so viewing a run neither needs a display nor changes the backend of the caller's process.
Matplotlib is imported when the first figure is made: `predict show` draws none (issue 18).
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
# Beyond this many classes the per-cell counts and per-class ROC legends stop being readable.
MAX_ANNOTATED_CLASSES = 20
MAX_ROC_CURVES = 12


def new_figure(width: float, height: float) -> Figure:
    """A figure of `width` x `height` inches on an Agg canvas, laid out so labels are not clipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def grid(count: int, *, columns: int = 3, cell: float = 3.6) -> tuple[Figure, list]:
    """A figure with `count` axes in rows of at most `columns`, each `cell` inches square; spare axes hidden."""
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    figure = new_figure(cell * columns, cell * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for spare in axes[count:]:
        spare.set_visible(False)
    return figure, list(axes[:count])


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def draw_matrix(axes, counts: np.ndarray, *, row_names: list[str], column_names: list[str], title: str) -> None:
    """Draw an integer matrix as a heatmap with its counts written in the cells.

    Args:
        axes: matplotlib axes to draw on.
        counts: int[R, C], rows = actual, columns = predicted.
        row_names: R tick labels.
        column_names: C tick labels.
        title: the axes title.
    """
    image = axes.imshow(counts, cmap="Blues", vmin=0)
    axes.set_xticks(
        range(len(column_names)),
        column_names,
        rotation=45 if len(column_names) > 4 else 0,
        ha="right" if len(column_names) > 4 else "center",
    )
    axes.set_yticks(range(len(row_names)), row_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    if max(counts.shape) <= MAX_ANNOTATED_CLASSES:
        threshold = counts.max() / 2 if counts.size else 0
        for (i, j), value in np.ndenumerate(counts):
            axes.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    axes.figure.colorbar(image, ax=axes, shrink=0.8)
