"""View of image semantic segmentation predictions: predicted and true masks over each image.

Reads the CSV the semantic segmentation head writes (FORMATS.md "Semantic segmentation"): each image
once per class, with `{class_name_column}` (or `class_id` without labels), the true `{rle_mask_column}`
when labelled, and `pred_{rle_mask_column}` (or `pred_mask`). Masks are RLE strings at the image's own
size, decoded with the head's decoder in the run's `head.rle_order`.

Rows of the table and of `--worst` are images (image i = CSV rows i*C .. i*C+C-1 for C classes).
Table: classes with a true mask, classes with a predicted mask, and the image's IoU pooled over its
classes (predicted and true pixels of every class; 1 when both are empty). Worst: lowest IoU.
Plots: IoU and Dice per class from the run's metrics, and the per-image IoU histogram; predicted
pixel share per class without labels. Samples: predicted masks filled in their class colour, true
masks outlined in the same colour.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from predict.errors import InputError
from predict.heads._masks import decode_rle
from predict.view import _dense, _plots, _samples
from predict.view._columns import require_columns
from predict.view.base import Plot, SampleLabel, View
from predict.view.run import RunSplit


class SemanticSegmentationView(View):
    """Per image and class: predicted and true RLE masks, and their overlap.

    Attributes:
        classes: `head.class_names`, in the CSV's order within an image.
        images: N image column values.
        predicted: N lists of C predicted RLE strings.
        actual: N lists of C true RLE strings, or None without labels.
        intersections: int64[N, C] pixels in both masks (None without labels).
        unions: int64[N, C] pixels in either mask (None without labels).
        predicted_pixels: int64[N, C].
    """

    worst_meaning = "lowest IoU of the image (pooled over its classes)"
    number_formats: ClassVar[dict[str, str]] = {"IoU": ".3f"}
    sample_layout = "large"

    def __init__(self, run: RunSplit) -> None:
        super().__init__(run)
        source = run.run_dir / f"{run.split}_predictions.csv"
        frame = run.predictions
        self.classes = _dense.class_names(run)
        class_count = len(self.classes)
        label_columns = list(run.label_columns)
        class_column = label_columns[0] if label_columns and label_columns[0] in frame.columns else "class_id"
        mask_column = label_columns[1] if len(label_columns) > 1 else None
        prediction_column = (
            f"pred_{mask_column}" if mask_column and f"pred_{mask_column}" in frame.columns else "pred_mask"
        )
        require_columns(frame, [run.input_column, class_column, prediction_column], source=source)
        if len(frame) % class_count:
            raise InputError(
                f"{source}: {len(frame)} rows is not a whole number of images of {class_count} classes "
                f"({', '.join(self.classes)})"
            )
        images = len(frame) // class_count
        expected = self.classes * images
        differs = np.flatnonzero(frame[class_column].astype(str).to_numpy() != np.array(expected, dtype=object))
        if differs.size:
            row = int(differs[0])
            raise InputError(
                f"{source.name}: row {row}, column '{class_column}': expected class {expected[row]!r} "
                f"(each image once per class of head.class_names), got {frame[class_column].iloc[row]!r}"
            )
        self.images = frame[run.input_column].astype(str).to_numpy()[::class_count].tolist()
        self.predicted = frame[prediction_column].astype(str).to_numpy().reshape(images, class_count).tolist()
        self.actual = None
        labelled = mask_column is not None and run.labelled
        if labelled:
            self.actual = frame[mask_column].astype(str).to_numpy().reshape(images, class_count).tolist()
        self.predicted_pixels = np.zeros((images, class_count), dtype=np.int64)
        self.intersections = np.zeros((images, class_count), dtype=np.int64) if labelled else None
        self.unions = np.zeros((images, class_count), dtype=np.int64) if labelled else None
        for image in range(images):
            for index in range(class_count):
                row = image * class_count + index
                predicted = _dense.flat_masks(
                    [self.predicted[image][index]], source=source, row=row, column=prediction_column
                )
                if not labelled:
                    self.predicted_pixels[image, index] = predicted.sum()
                    continue
                true = _dense.flat_masks([self.actual[image][index]], source=source, row=row, column=mask_column)
                length = max(predicted.shape[1], true.shape[1])
                predicted = np.pad(predicted[0], (0, length - predicted.shape[1]))
                true = np.pad(true[0], (0, length - true.shape[1]))
                self.predicted_pixels[image, index] = predicted.sum()
                self.intersections[image, index] = (predicted & true).sum()
                self.unions[image, index] = (predicted | true).sum()

    @property
    def input_values(self) -> pd.Series:
        return pd.Series(self.images, name=self.input_column)

    @property
    def row_count(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return self.actual is not None

    def ious(self) -> np.ndarray:
        """float64[N]: per image, the pixels of all classes in both masks over those in either (1 when none)."""
        union = self.unions.sum(axis=1)
        return np.where(union > 0, self.intersections.sum(axis=1) / np.maximum(union, 1), 1.0)

    def _present(self, masks: list[list[str]], image: int) -> str:
        return ", ".join(name for name, rle in zip(self.classes, masks[image]) if rle.strip()) or "(none)"

    def table(self) -> pd.DataFrame:
        rows = range(len(self.images))
        table: dict[str, list] = {}
        if self.labelled:
            table["actual"] = [self._present(self.actual, image) for image in rows]
        table["predicted"] = [self._present(self.predicted, image) for image in rows]
        if self.labelled:
            table["IoU"] = list(self.ious())
        return pd.DataFrame(table)

    def badness(self) -> np.ndarray:
        return 1.0 - self.ious()

    def sample_label(self, row: int) -> SampleLabel:
        predicted = self._present(self.predicted, row)
        if not self.labelled:
            return SampleLabel(predicted=predicted, actual=None, correct=None)
        iou = self.ious()[row]
        return SampleLabel(
            predicted=predicted,
            actual=f"{self._present(self.actual, row)} (IoU {iou:.3f})",
            correct=bool(iou >= _dense.MATCH_IOU),
        )

    def sample_html(self, row: int) -> str:
        value = self.images[row]
        image, missing = _dense.open_image(self.run.data_folder, value)
        if image is None:
            return _samples.card(
                missing, self.sample_label(row), heading=f"image {row} &middot; {_samples.escape(value)}"
            )
        source = self.run.run_dir / f"{self.run.split}_predictions.csv"
        column_major = _dense.column_major(self.run)
        shape = (image.height, image.width)
        scale = _dense.drawing_scale(image)
        drawn = _dense.upscale(image, scale)
        outlines = []
        for index in range(len(self.classes)):
            colour = _dense.class_colour(index)
            predicted = _decode(
                self.predicted[row][index], shape, column_major, source=source, row=row * len(self.classes) + index
            )
            drawn = _dense.paint(drawn, _dense.grow(predicted, scale), colour, alpha=0.5)
            if self.labelled:
                true = _decode(
                    self.actual[row][index], shape, column_major, source=source, row=row * len(self.classes) + index
                )
                outlines.append((_dense.outline(_dense.grow(true, scale)), colour))
        for edge, colour in outlines:
            # Thickened by one pixel each way so that it reads as a line over a filled prediction.
            thick = edge | np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)
            drawn = _dense.paint(drawn, thick, colour, alpha=1.0)
        heading = f"image {row} &middot; {_samples.escape(value)}"
        return _samples.card(_dense.png_img(drawn, value), self.sample_label(row), heading=heading)

    def plots(self) -> list[Plot]:
        legend = "Samples: predicted masks filled in the class colour, true masks outlined in it."
        colours = [_dense.class_colour(index) for index in range(len(self.classes))]
        positions = np.arange(len(self.classes))
        if not self.labelled:
            figure = _plots.new_figure(5.6, 3.8)
            axes = figure.subplots()
            total = self.predicted_pixels.sum(axis=0)
            axes.bar(positions, total / max(int(total.sum()), 1), color=colours)
            axes.set_xticks(positions, self.classes)
            axes.set_ylabel("share of predicted pixels")
            return [
                Plot(
                    title="Predicted pixels per class",
                    png=_plots.to_png(figure),
                    caption=f"No labels in this split. {legend}",
                )
            ]
        # One figure of two panels: two plots with their captions do not fit one line of the page.
        figure = _plots.new_figure(11.0, 3.8)
        per_class, per_image = figure.subplots(1, 2)
        width = 0.38
        iou = [self.run.metrics.get(f"IoU_{name}", np.nan) for name in self.classes]
        dice = [self.run.metrics.get(f"Dice_{name}", np.nan) for name in self.classes]
        per_class.bar(positions - width / 2, iou, width, label="IoU", color=colours)
        per_class.bar(positions + width / 2, dice, width, label="Dice", color=colours, alpha=0.45)
        for position, value in zip(positions, iou):
            if np.isfinite(value):
                per_class.text(
                    position - width / 2, value + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize="small"
                )
        per_class.set_xticks(positions, self.classes)
        per_class.set_ylim(0, 1.08)
        per_class.set_ylabel("pooled over the split")
        per_class.set_title("IoU (solid) and Dice (light) per class")
        per_class.legend(fontsize="small", loc="lower right")
        per_image.hist(self.ious(), bins=20, range=(0.0, 1.0), color="#4c72b0")
        per_image.set_xlabel("IoU of the image (pooled over its classes)")
        per_image.set_ylabel("images")
        per_image.set_title("IoU per image")
        caption = (
            "Left: the run's metrics; a class in neither labels nor predictions has no bar. Right: images with nothing "
            f"to find and nothing predicted count as 1. {legend}"
        )
        return [Plot(title="IoU per class and per image", png=_plots.to_png(figure), caption=caption)]


def _decode(text: str, shape: tuple[int, int], column_major: bool, *, source, row: int) -> np.ndarray:
    try:
        return decode_rle(text, shape, column_major=column_major)
    except ValueError as error:
        raise InputError(
            f"{source.name}: row {row}: RLE does not fit the {shape[0]}x{shape[1]} image: {error}"
        ) from None
