"""View of image metric learning predictions: each image's most similar images of the split.

Reads the CSV the metric learning head writes (FORMATS.md "Metric learning"): the image column,
`top_{k}_similar_image` (the image column value of the k-th most similar other row) and
`top_{k}_cosine_similarity` for k = 1..3 (empty cells where the split has fewer rows), and the
label column when labelled. Neighbours' labels are looked up by their image column value in the
same CSV. The pkl's embeddings are not needed: the CSV's three neighbours are what the page shows.

Table: label, same-label neighbours (of those listed), then the top-1 neighbour, its label and
cosine similarity. Worst: the sum of 1/k over the listed neighbours k whose label differs from the
query's (a wrong top-1 weighs most), ties in input order. Plots: top-1 cosine similarity histogram,
split into same-label and other-label neighbours with labels; all listed similarities without.
Samples: strips of the query image and its neighbours with their similarity; same-label neighbours
framed green, others red.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from predict.errors import InputError
from predict.view import _plots, _samples
from predict.view._columns import require_columns
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit

# The CSV lists at most this many neighbours per row (FORMATS.md: top_1..top_3).
_CSV_NEIGHBOURS = 3
# Neighbour thumbnails are small: a strip of four must fit one line of the page.
_STRIP_SIDE = 96


class MetricLearningView(View):
    """Neighbours, their similarities and labels of one split, read from its predictions CSV.

    Attributes:
        neighbours: per row, the listed neighbours' image column values (up to 3).
        similarities: per row, their cosine similarities, descending.
        labels: per row, the label, or None without labels.
        neighbour_labels: per row, the neighbours' labels ("?" for a value not in the split), or None.
    """

    worst_meaning = "neighbours with another label, weighted 1/rank"
    number_formats: ClassVar[dict[str, str]] = {"top-1 similarity": ".4f"}
    sample_layout = "strips"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        frame = run.predictions
        modality = run.problem_type.modality
        neighbour_columns = [f"top_{k}_similar_{modality}" for k in range(1, _CSV_NEIGHBOURS + 1)]
        similarity_columns = [f"top_{k}_cosine_similarity" for k in range(1, _CSV_NEIGHBOURS + 1)]
        require_columns(frame, [run.input_column, neighbour_columns[0], similarity_columns[0]], source=source)
        present = [
            k
            for k in range(_CSV_NEIGHBOURS)
            if neighbour_columns[k] in frame.columns and similarity_columns[k] in frame.columns
        ]
        self.neighbours: list[list[str]] = []
        self.similarities: list[list[float]] = []
        for row in range(len(frame)):
            names = [str(frame[neighbour_columns[k]].iloc[row]) for k in present]
            cells = [str(frame[similarity_columns[k]].iloc[row]) for k in present]
            listed = [k for k, name in enumerate(names) if name != ""]
            try:
                similarities = [float(cells[k]) for k in listed]
            except ValueError:
                bad = next(k for k in listed if not _is_float(cells[k]))
                raise InputError(
                    f"{source.name}: row {row}, column '{similarity_columns[present[bad]]}': "
                    f"expected a number, got {cells[bad]!r}"
                ) from None
            self.neighbours.append([names[k] for k in listed])
            self.similarities.append(similarities)
        self.labels = frame[run.label_columns[0]].astype(str).tolist() if run.labelled else None
        self.neighbour_labels = None
        if self.labels is not None:
            # First row wins for a value listed twice: the head names neighbours by this value too.
            label_of: dict[str, str] = {}
            for value, label in zip(frame[run.input_column].astype(str), self.labels):
                label_of.setdefault(value, label)
            self.neighbour_labels = [[label_of.get(name, "?") for name in names] for names in self.neighbours]

    def _same(self, row: int) -> list[bool]:
        return [label == self.labels[row] for label in self.neighbour_labels[row]]

    def table(self) -> pd.DataFrame:
        rows = range(len(self.neighbours))
        table: dict[str, list] = {}
        if self.labels is not None:
            table["label"] = self.labels
            table["same label"] = [f"{sum(self._same(row))}/{len(self.neighbours[row])}" for row in rows]
        table["top-1 similar"] = [names[0] if names else "" for names in self.neighbours]
        if self.labels is not None:
            table["its label"] = [labels[0] if labels else "" for labels in self.neighbour_labels]
        table["top-1 similarity"] = [values[0] if values else float("nan") for values in self.similarities]
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        return np.array(
            [
                sum(1.0 / rank for rank, same in enumerate(self._same(row), start=1) if not same)
                for row in range(len(self.neighbours))
            ],
            dtype=np.float64,
        )

    def sample_label(self, row: int) -> SampleLabel:
        names = self.neighbours[row]
        predicted = f"{names[0]} ({self.similarities[row][0]:.3f})" if names else "(no neighbour)"
        if self.labels is None:
            return SampleLabel(predicted=predicted, actual=None, correct=None)
        same = self._same(row)
        return SampleLabel(predicted=predicted, actual=self.labels[row], correct=bool(same and same[0]))

    def sample_html(self, row: int) -> str:
        query = str(self.run.predictions[self.input_column].iloc[row])
        label = f"<br>{_samples.escape(self.labels[row])}" if self.labels is not None else ""
        figures = [f'<figure class="query">{self._thumbnail(query)}<figcaption>query{label}</figcaption></figure>']
        for k, (name, similarity) in enumerate(zip(self.neighbours[row], self.similarities[row])):
            state, neighbour_label = "", ""
            if self.neighbour_labels is not None:
                state = " same" if self._same(row)[k] else " other"
                neighbour_label = f"<br>{_samples.escape(self.neighbour_labels[row][k])}"
            figures.append(
                f'<figure class="neighbour{state}">{self._thumbnail(name)}'
                f"<figcaption>#{k + 1} cos {similarity:.3f}{neighbour_label}</figcaption></figure>"
            )
        heading = f"row {row} &middot; {_samples.escape(query)}"
        if self.labels is not None:
            heading += f" &middot; {sum(self._same(row))} of {len(self.neighbours[row])} neighbours share its label"
        return (
            f'<figure class="sample"><div class="strip">{"".join(figures)}</div>'
            f"<figcaption>{heading}</figcaption></figure>"
        )

    def _thumbnail(self, value: str) -> str:
        """An image thumbnail, or for text metric learning the text itself."""
        if self.run.problem_type.modality == "text":
            return _samples.text_snippet(value)
        return _samples.image_thumbnail(self.run.data_folder, value, side=_STRIP_SIDE)

    def plots(self) -> list[Plot]:
        figure = _plots.new_figure(6.0, 4.0)
        axes = figure.subplots()
        bins = 20
        if self.labels is None:
            values = [value for row in self.similarities for value in row]
            axes.hist(values, bins=bins, color="#4c72b0")
            axes.set_xlabel(f"cosine similarity of the top {_CSV_NEIGHBOURS} neighbours")
            caption = "No labels in this split: how similar each row's nearest neighbours are."
        else:
            top = [(values[0], self._same(row)[0]) for row, values in enumerate(self.similarities) if values]
            same = [value for value, flag in top if flag]
            other = [value for value, flag in top if not flag]
            low = min((value for value, _ in top), default=0.0)
            edges = np.linspace(low, 1.0, bins + 1) if low < 1.0 else bins
            axes.hist(
                [same, other],
                bins=edges,
                stacked=True,
                color=["#55a868", "#c44e52"],
                label=[f"same label ({len(same)})", f"other label ({len(other)})"],
            )
            axes.legend(loc="upper left", fontsize="small")
            axes.set_xlabel("cosine similarity of the nearest neighbour")
            caption = (
                "Red: the nearest other image has another label; "
                "red at high similarity means embeddings that confuse classes."
            )
        axes.set_ylabel("rows")
        return [Plot(title="Nearest-neighbour similarity", png=_plots.to_png(figure), caption=caption)]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
