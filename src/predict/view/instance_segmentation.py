"""View of image instance segmentation predictions: each instance in its own colour over the image.

Reads the CSV the instance segmentation head writes (FORMATS.md "Instance segmentation"): per image,
`{class_name_column}`, `instance_rle` and `confidence` as JSON lists, one entry per predicted instance,
RLE at the image's own size in the run's `head.rle_order`. The class column there holds the
predictions, so the true instances (`[class column, RLE column]`) are read from the scored dataframe
the report names (see `predict.view._dense.truth_frame`); without it the split has no actual values.

Table: predicted and true instance counts, `best IoU` (the mean over true instances of their best mask IoU with a
predicted instance of the same class), and the predicted instances as `class confidence`. Worst:
lowest mean best IoU (an image without true instances scores 1 when nothing was predicted, else 0).
Plots: instances per class (true, predicted, found at IoU >= 0.5) and the confidence histogram,
split into instances that match a true one and those that do not. Samples: every predicted instance
filled in a colour of its own and tagged with its class and confidence; true instances outlined green.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from PIL import ImageDraw

from predict.errors import InputError
from predict.heads._masks import decode_rle
from predict.view import _dense, _plots, _samples
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit

# Distinct instance colours: matplotlib's tab20, so neighbouring instances of one class differ.
_INSTANCE_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


class InstanceSegmentationView(View):
    """Predicted and true instances of one split.

    Attributes:
        classes: `head.class_names`.
        rles: per image, the predicted instances' RLE strings.
        predicted_classes: per image, their class indices.
        confidences: per image, float64[P].
        true_rles, true_classes: per image, the true instances (None without labels).
        best: per image, float64[T] best same-class mask IoU of each true instance (None without labels).
        matched: per image, bool[P]: the prediction is some same-class true instance's match at IoU >= 0.5.
        unlabelled_reason: why there are no actual values ("" when there are).
    """

    worst_meaning = "lowest mean IoU of the true instances with their best predicted instance"
    number_formats: ClassVar[dict[str, str]] = {"best IoU": ".3f"}
    sample_layout = "large"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        self.classes = _dense.class_names(run)
        label_columns = list(run.label_columns)
        class_column = label_columns[0] if label_columns else "class_name"
        self.rles, self.predicted_classes, self.confidences = [], [], []
        for row in range(len(run.predictions)):
            rles, classes, confidences = _read_instances(
                run.predictions, row, [class_column, "instance_rle", "confidence"], self.classes, source=source
            )
            self.rles.append(rles)
            self.predicted_classes.append(classes)
            self.confidences.append(confidences)
        self.true_rles = self.true_classes = self.best = self.matched = None
        truth, self.unlabelled_reason = (None, "no label columns configured")
        if len(label_columns) == 2:
            truth, self.unlabelled_reason = _dense.truth_frame(run, label_columns)
        if truth is not None:
            dataframe = Path(str(_dense.task_section(run, "data")["dataframe"]))
            self.true_rles, self.true_classes, self.best, self.matched = [], [], [], []
            for row in range(len(truth)):
                rles, classes, _ = _read_instances(truth, row, label_columns, self.classes, source=dataframe)
                masks = _dense.flat_masks([*rles, *self.rles[row]], source=dataframe, row=row, column=label_columns[1])
                iou = _dense.mask_iou(masks[: len(rles)], masks[len(rles) :]) if len(masks) else np.zeros((0, 0))
                iou = iou.reshape(len(rles), len(self.rles[row]))
                same = (
                    np.asarray(classes)[:, None] == np.asarray(self.predicted_classes[row], dtype=np.int64)[None, :]
                    if iou.size
                    else np.zeros(iou.shape, dtype=bool)
                )
                self.true_rles.append(rles)
                self.true_classes.append(classes)
                self.best.append(_dense.best_ious(iou, classes, self.predicted_classes[row]))
                self.matched.append(
                    (np.where(same, iou, 0.0) >= _dense.MATCH_IOU).any(axis=0)
                    if iou.shape[0]
                    else np.zeros(iou.shape[1], dtype=bool)
                )

    @property
    def labelled(self) -> bool:
        return self.best is not None

    def scores(self) -> np.ndarray:
        """float64[N]: each image's mean best IoU of its true instances (see the module docstring)."""
        return np.array(
            [_dense.image_score(best, len(rles)) for best, rles in zip(self.best, self.rles)], dtype=np.float64
        )

    def _summary(self, row: int) -> str:
        return (
            ", ".join(
                f"{self.classes[index]} {confidence:.2f}"
                for index, confidence in zip(self.predicted_classes[row], self.confidences[row])
            )
            or "(none)"
        )

    def table(self) -> pd.DataFrame:
        table: dict[str, list] = {"instances": [len(rles) for rles in self.rles]}
        if self.labelled:
            table["true instances"] = [len(rles) for rles in self.true_rles]
            table["best IoU"] = list(self.scores())
        table["predicted"] = [self._summary(row) for row in range(len(self.rles))]
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        return 1.0 - self.scores()

    def sample_label(self, row: int) -> SampleLabel:
        predicted = f"{len(self.rles[row])} instance(s): {self._summary(row)}"
        if not self.labelled:
            return SampleLabel(predicted=predicted, actual=None, correct=None)
        names = ", ".join(self.classes[index] for index in self.true_classes[row]) or "(none)"
        found = int((self.best[row] >= _dense.MATCH_IOU).sum())
        true = len(self.true_rles[row])
        actual = f"{true} instance(s): {names}; {found} found at IoU >= {_dense.MATCH_IOU}"
        return SampleLabel(predicted=predicted, actual=actual, correct=bool(found == true == len(self.rles[row])))

    def sample_html(self, row: int) -> str:
        value = str(self.run.predictions[self.input_column].iloc[row])
        heading = f"row {row} &middot; {_samples.escape(value)}"
        if self.labelled:
            heading += f" &middot; mean best IoU {self.scores()[row]:.3f}"
        image, missing = _dense.open_image(self.run.data_folder, value)
        if image is None:
            return _samples.card(missing, self.sample_label(row), heading=heading)
        source = self.run.run_dir / f"{self.run.split}_predictions.csv"
        column_major = _dense.column_major(self.run)
        shape = (image.height, image.width)
        scale = _dense.drawing_scale(image)
        drawn = _dense.upscale(image, scale)
        tags = []
        for number, (rle, index, confidence) in enumerate(
            zip(self.rles[row], self.predicted_classes[row], self.confidences[row])
        ):
            mask = _dense.grow(_decode(rle, shape, column_major, source=source, row=row), scale)
            colour = _INSTANCE_COLOURS[number % len(_INSTANCE_COLOURS)]
            drawn = _dense.paint(drawn, mask, colour, alpha=0.55)
            drawn = _dense.paint(drawn, _dense.outline(mask), colour, alpha=1.0)
            ys, xs = np.nonzero(mask)
            if xs.size:
                tags.append(((float(xs.min()), float(ys.min())), f"{self.classes[index]} {confidence:.2f}", colour))
        if self.labelled:
            dataframe = Path(str(_dense.task_section(self.run, "data")["dataframe"]))
            for rle in self.true_rles[row]:
                edge = _dense.outline(_dense.grow(_decode(rle, shape, column_major, source=dataframe, row=row), scale))
                drawn = _dense.paint(
                    drawn, edge | np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1), _dense.TRUTH_COLOUR, alpha=1.0
                )
        draw = ImageDraw.Draw(drawn)
        for corner, text, colour in tags:
            _dense.draw_label(draw, corner, text, colour=colour)
        return _samples.card(_dense.png_img(drawn, value), self.sample_label(row), heading=heading)

    def plots(self) -> list[Plot]:
        positions = np.arange(len(self.classes))
        predicted = np.bincount(_dense.concatenate_classes(self.predicted_classes), minlength=len(self.classes))
        confidences = np.concatenate(self.confidences) if self.confidences else np.zeros(0)
        legend = (
            "Samples: each predicted instance filled in its own colour with class and confidence; "
            "true instances outlined green."
        )
        # One figure of two panels: two plots with their captions do not fit one line of the page.
        figure = _plots.new_figure(11.0, 3.8)
        counts, spread = figure.subplots(1, 2)
        if self.labelled:
            true_classes = _dense.concatenate_classes(self.true_classes)
            found = np.bincount(
                true_classes[np.concatenate(self.best) >= _dense.MATCH_IOU], minlength=len(self.classes)
            )
            width = 0.27
            counts.bar(
                positions - width,
                np.bincount(true_classes, minlength=len(self.classes)),
                width,
                label="true",
                color="#8c8c8c",
            )
            counts.bar(positions, predicted, width, label="predicted", color="#4c72b0")
            counts.bar(
                positions + width, found, width, label=f"true found (IoU >= {_dense.MATCH_IOU})", color="#55a868"
            )
            counts.legend(fontsize="small")
            matched = np.concatenate(self.matched) if self.matched else np.zeros(0, dtype=bool)
            spread.hist(
                [confidences[matched], confidences[~matched]],
                bins=20,
                range=(0.0, 1.0),
                stacked=True,
                color=["#55a868", "#c44e52"],
                label=[f"matches a true instance ({int(matched.sum())})", f"no match ({int((~matched).sum())})"],
            )
            spread.legend(fontsize="small", loc="upper left")
            caption = (
                "Left: recall per class is green over grey; blue above green is instances too many. Right: red at high "
                f"confidence is confident instances that are not there (or of another class or shape). {legend}"
            )
        else:
            counts.bar(positions, predicted, color=[_dense.class_colour(index) for index in positions])
            spread.hist(confidences, bins=20, range=(0.0, 1.0), color="#4c72b0")
            caption = (
                f"No actual values: {self.unlabelled_reason}. "
                f"Confidence: the mean class probability over the instance. {legend}"
            )
        counts.set_xticks(positions, self.classes)
        counts.set_ylabel("instances")
        counts.set_title("instances per class")
        spread.set_xlabel("confidence")
        spread.set_ylabel("predicted instances")
        spread.set_title("confidence")
        return [Plot(title="Instances per class and confidence", png=_plots.to_png(figure), caption=caption)]


def _read_instances(frame: pd.DataFrame, row: int, columns: list[str], classes: list[str], *, source: Path):
    """One row's instances: RLE strings, class indices and confidences float64[K] (empty without a third column).

    Args:
        columns: [class column, RLE column] or [class column, RLE column, confidence column].

    Raises:
        InputError: a cell is not a list, the lists differ in length, a class is not in
            `head.class_names` or a confidence is not a number, naming the row and column.
    """
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}")
    cells = [_dense.json_list(frame[column].iloc[row], row=row, column=column, source=source) for column in columns]
    if len({len(cell) for cell in cells}) > 1:
        detail = ", ".join(f"{column}: {len(cell)}" for column, cell in zip(columns, cells))
        raise InputError(f"{source.name}: row {row}: the instance lists differ in length ({detail})")
    indices = []
    for name in cells[0]:
        if str(name) not in classes:
            raise InputError(
                f"{source.name}: row {row}, column '{columns[0]}': "
                f"class {name!r} is not in head.class_names ({', '.join(classes)})"
            )
        indices.append(classes.index(str(name)))
    try:
        confidences = np.array(cells[2], dtype=np.float64) if len(cells) > 2 else np.zeros(0)
    except (TypeError, ValueError):
        raise InputError(f"{source.name}: row {row}, column '{columns[2]}': confidences must be numbers") from None
    return [str(rle) for rle in cells[1]], indices, confidences


def _decode(text: str, shape: tuple[int, int], column_major: bool, *, source: Path, row: int) -> np.ndarray:
    try:
        return decode_rle(text, shape, column_major=column_major)
    except ValueError as error:
        raise InputError(
            f"{source.name}: row {row}: RLE does not fit the {shape[0]}x{shape[1]} image: {error}"
        ) from None
