"""View of image object detection predictions: boxes drawn over each image, matched to the true boxes.

Reads the CSV the detection head writes (FORMATS.md "Object detection"): per image, `x_min, y_min,
x_max, y_max, confidence, {class_name_column}` as JSON lists of the boxes above
`head.probability_threshold`, in original-image pixels. The CSV holds these in place of the label
columns, so the true boxes are read from the scored dataframe the report names (see
`predict.view._dense.truth_frame`); without it the split is viewed without actual values.

Table: predicted and true box counts, `best IoU` (the mean over true boxes of their best IoU with a predicted box
of the same class), and the predicted boxes as `class confidence`. Worst: lowest mean best IoU (an image
without true boxes scores 1 when nothing was predicted, else 0). Plots: boxes per class (true,
predicted, true boxes found at IoU >= 0.5) and the best IoU of every true box; predicted boxes per
class and confidences without labels. Samples: predicted boxes solid in their class colour with
`class confidence`, true boxes dashed green.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from PIL import ImageDraw

from predict.errors import InputError
from predict.view import _dense, _plots, _samples
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit

_BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


class ObjectDetectionView(View):
    """Predicted and true boxes of one split.

    Attributes:
        classes: `head.class_names`.
        boxes: per image, float64[P, 4] predicted xyxy boxes in image pixels.
        confidences: per image, float64[P].
        predicted_classes: per image, P class indices.
        true_boxes: per image, float64[T, 4], or None without labels.
        true_classes: per image, T class indices, or None.
        best: per image, float64[T] best same-class IoU of each true box, or None.
        unlabelled_reason: why there are no actual values ("" when there are).
    """

    worst_meaning = "lowest mean IoU of the true boxes with their best predicted box"
    number_formats: ClassVar[dict[str, str]] = {"best IoU": ".3f"}
    sample_layout = "large"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        self.classes = _dense.class_names(run)
        class_column = run.label_columns[0] if run.label_columns else "class_name"
        self.boxes, self.confidences, self.predicted_classes = [], [], []
        for row in range(len(run.predictions)):
            boxes, classes, confidences = _read_boxes(
                run.predictions, row, class_column, self.classes, source=source, with_confidence=True
            )
            self.boxes.append(boxes)
            self.predicted_classes.append(classes)
            self.confidences.append(confidences)
        self.true_boxes = self.true_classes = self.best = None
        truth, self.unlabelled_reason = _dense.truth_frame(run, [*_BOX_COLUMNS, class_column])
        if truth is not None:
            dataframe = _dense.task_section(run, "data").get("dataframe")
            self.true_boxes, self.true_classes = [], []
            for row in range(len(truth)):
                boxes, classes, _ = _read_boxes(
                    truth, row, class_column, self.classes, source=Path(str(dataframe)), with_confidence=False
                )
                self.true_boxes.append(boxes)
                self.true_classes.append(classes)
            self.best = [
                _dense.best_ious(_dense.box_iou(true, predicted), true_classes, predicted_classes)
                for true, predicted, true_classes, predicted_classes in zip(
                    self.true_boxes, self.boxes, self.true_classes, self.predicted_classes
                )
            ]

    @property
    def labelled(self) -> bool:
        return self.best is not None

    def scores(self) -> np.ndarray:
        """float64[N]: each image's mean best IoU of its true boxes (see the module docstring)."""
        return np.array(
            [_dense.image_score(best, len(boxes)) for best, boxes in zip(self.best, self.boxes)], dtype=np.float64
        )

    def table(self) -> pd.DataFrame:
        table: dict[str, list] = {"boxes": [len(boxes) for boxes in self.boxes]}
        if self.labelled:
            table["true boxes"] = [len(boxes) for boxes in self.true_boxes]
            table["best IoU"] = list(self.scores())
        table["predicted"] = [self._summary(row) for row in range(len(self.boxes))]
        return pd.DataFrame(table)

    def _summary(self, row: int) -> str:
        return (
            ", ".join(
                f"{self.classes[index]} {confidence:.2f}"
                for index, confidence in zip(self.predicted_classes[row], self.confidences[row])
            )
            or "(none)"
        )

    def badness(self) -> np.ndarray:
        return 1.0 - self.scores()

    def sample_label(self, row: int) -> SampleLabel:
        predicted = f"{len(self.boxes[row])} box(es): {self._summary(row)}"
        if not self.labelled:
            return SampleLabel(predicted=predicted, actual=None, correct=None)
        true = self.true_boxes[row]
        names = ", ".join(self.classes[index] for index in self.true_classes[row]) or "(none)"
        best = self.best[row]
        found = int((best >= _dense.MATCH_IOU).sum())
        actual = f"{len(true)} box(es): {names}; {found} found at IoU >= {_dense.MATCH_IOU}"
        # Right: every true box found and no box too many.
        return SampleLabel(predicted=predicted, actual=actual, correct=bool(found == len(true) == len(self.boxes[row])))

    def sample_html(self, row: int) -> str:
        value = str(self.run.predictions[self.input_column].iloc[row])
        image, missing = _dense.open_image(self.run.data_folder, value)
        if image is None:
            body = missing
        else:
            scale = _dense.drawing_scale(image)
            image = _dense.upscale(image, scale)
            draw = ImageDraw.Draw(image)
            if self.labelled:
                for box in self.true_boxes[row]:
                    _dense.dashed_rectangle(draw, tuple(box * scale), colour=_dense.TRUTH_COLOUR)
            for box, index, confidence in zip(self.boxes[row], self.predicted_classes[row], self.confidences[row]):
                colour = _dense.class_colour(index)
                draw.rectangle(tuple(box * scale), outline=colour, width=2)
                _dense.draw_label(
                    draw, (box[0] * scale, box[1] * scale), f"{self.classes[index]} {confidence:.2f}", colour=colour
                )
            body = _dense.png_img(image, value)
        heading = f"row {row} &middot; {_samples.escape(value)}"
        if self.labelled:
            heading += f" &middot; mean best IoU {self.scores()[row]:.3f}"
        return _samples.card(body, self.sample_label(row), heading=heading)

    def plots(self) -> list[Plot]:
        positions = np.arange(len(self.classes))
        predicted = np.bincount(_dense.concatenate_classes(self.predicted_classes), minlength=len(self.classes))
        confidences = np.concatenate(self.confidences) if self.confidences else np.zeros(0)
        # One figure of two panels: two plots with their captions do not fit one line of the page.
        figure = _plots.new_figure(11.0, 3.8)
        counts, spread = figure.subplots(1, 2)
        legend = "Samples: predicted boxes solid in their class colour, true boxes dashed green."
        if not self.labelled:
            counts.bar(positions, predicted, color=[_dense.class_colour(index) for index in positions])
            counts.set_ylabel("predicted boxes")
            spread.hist(confidences, bins=20, range=(0.0, 1.0), color="#4c72b0")
            spread.set_xlabel("confidence of the listed boxes")
            spread.set_ylabel("boxes")
            caption = (
                f"No actual values: {self.unlabelled_reason}. "
                f"Boxes above head.probability_threshold, as the CSV lists them. {legend}"
            )
            counts.set_xticks(positions, self.classes)
            return [Plot(title="Predicted boxes per class and confidence", png=_plots.to_png(figure), caption=caption)]
        true_classes = _dense.concatenate_classes(self.true_classes)
        best = np.concatenate(self.best) if self.best else np.zeros(0)
        width = 0.27
        counts.bar(
            positions - width,
            np.bincount(true_classes, minlength=len(self.classes)),
            width,
            label="true",
            color="#8c8c8c",
        )
        counts.bar(positions, predicted, width, label="predicted", color="#4c72b0")
        found = np.bincount(true_classes[best >= _dense.MATCH_IOU], minlength=len(self.classes))
        counts.bar(positions + width, found, width, label=f"true found (IoU >= {_dense.MATCH_IOU})", color="#55a868")
        counts.set_xticks(positions, self.classes)
        counts.set_ylabel("boxes")
        counts.set_title("boxes per class")
        counts.legend(fontsize="small")
        spread.hist(
            [best[true_classes == index] for index in positions],
            bins=20,
            range=(0.0, 1.0),
            stacked=True,
            color=[_dense.class_colour(index) for index in positions],
            label=self.classes,
        )
        spread.axvline(_dense.MATCH_IOU, color="grey", ls="--", lw=1)
        spread.set_xlabel("best IoU with a predicted box of the same class")
        spread.set_ylabel("true boxes")
        spread.set_title("best IoU of each true box")
        spread.legend(fontsize="small")
        caption = (
            "Left: recall per class is green over grey; blue above green is boxes too many. Right: 0 is a missed box "
            f"(no box of its class overlaps it), right of the dashed line a found one. {legend}"
        )
        return [Plot(title="Boxes per class and best IoU", png=_plots.to_png(figure), caption=caption)]


def _read_boxes(frame: pd.DataFrame, row: int, class_column: str, classes: list[str], *, source, with_confidence: bool):
    """One row's boxes float64[K, 4], class indices list[int] and confidences float64[K] (empty without).

    Raises:
        InputError: a cell is not a list of numbers, the lists differ in length, or a class is not in
            `head.class_names`, naming the row and column.
    """
    columns = [*_BOX_COLUMNS, class_column] + (["confidence"] if with_confidence else [])
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}")
    cells = {
        column: _dense.json_list(frame[column].iloc[row], row=row, column=column, source=source) for column in columns
    }
    lengths = {len(cell) for cell in cells.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{column}: {len(cell)}" for column, cell in cells.items())
        raise InputError(f"{source.name}: row {row}: the box lists differ in length ({detail})")
    try:
        boxes = np.array([cells[column] for column in _BOX_COLUMNS], dtype=np.float64).T.reshape(-1, 4)
        confidences = np.array(cells["confidence"], dtype=np.float64) if with_confidence else np.zeros(0)
    except (TypeError, ValueError):
        raise InputError(f"{source.name}: row {row}: box coordinates and confidences must be numbers") from None
    indices = []
    for name in cells[class_column]:
        if str(name) not in classes:
            raise InputError(
                f"{source.name}: row {row}, column '{class_column}': "
                f"class {name!r} is not in head.class_names ({', '.join(classes)})"
            )
        indices.append(classes.index(str(name)))
    return boxes, indices, confidences
