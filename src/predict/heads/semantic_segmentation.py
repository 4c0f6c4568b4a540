"""Semantic segmentation head (image semantic segmentation).

The model gives (batch, classes, H, W) or (batch, H, W, classes) logits or probabilities
(`head.channels_last`, found from the class count when not set). `head.activation` turns them
into probabilities: `sigmoid` (one mask per class, `prob >= head.threshold`), `softmax` (each pixel
takes its most probable class) or `none` (already probabilities, thresholded). The probabilities
are resized (bilinearly) to each image's own size before thresholding; with letterbox
pre-processing the padding is cut away first.

RLE (see `predict.heads._masks`): Kaggle-style `"start length ..."`, 1-indexed, column-major (top to
bottom, then left to right) at the original image size, or row-major with `head.rle_order`; the
same order is used to read the labels. An empty mask is `""`.

Labels: one row per image; `data.label_columns` = [class name column, RLE column], both lists per
image (JSON lists in CSV), one RLE per class present; a class not listed has an empty mask.

Writes (FORMATS.md "Semantic segmentation"):
- pkl: `masks` float16 (n, classes, H, W) probabilities at model resolution (float16 always, to
  halve the biggest array; the run's notes say so; an array in the pkl however large, see
  `predict.writers.pickle`), `original_image_shapes` int64 (n, 2) (height, width),
  `rle_predictions` (n, classes) strings, `class_names` list, `{image_column}`.
- CSV: each input row repeated once per class, with `{class_name_column}` = the class, the true
  `{rle_mask_column}` of that class (`""` if absent) and `pred_{rle_mask_column}`; without the
  class column (a test dataframe) the class name goes first in `class_id` and no true mask
  column is added. The prediction column is named after the configured mask column
  (`data.label_columns[1]`) on both splits, whether or not the dataframe has it; H2O's `pred_mask`
  (a training dataframe without mask column) cannot occur, as the config always names one.
Metrics: `IoU` and `Dice`, pooled over all pixels of the split per class (`IoU_{class}`,
`Dice_{class}`), and their mean over the classes that occur in the labels or predictions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.context import ImageContext
from predict.data.lists import list_cell, list_columns
from predict.enums import ResizeMode
from predict.errors import ConfigError, InputError
from predict.heads import _ops
from predict.heads._masks import (
    common_pixels,
    edge_pixels,
    edges_to_rles,
    mask_edges,
    parse_rle,
    rle_edges,
    to_float16,
    to_original_sizes,
)
from predict.heads.base import Head, RowsByBlock, TableByBlock, column_values, context_of, select_output
from predict.runners.base import TensorSpec
from predict.writers.checkpoint import RowArrays


class MaskActivation(StrEnum):
    """What turns the model's maps into probabilities."""

    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"
    NONE = "none"  # already probabilities


class RleOrder(StrEnum):
    """How RLE numbers pixels: down the columns first (Kaggle, pycocotools) or along the rows."""

    COLUMN_MAJOR = "column_major"
    ROW_MAJOR = "row_major"


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of semantic segmentation."""

    class_names: tuple[str, ...]  # channel i of the model is class_names[i]
    activation: MaskActivation = MaskActivation.SIGMOID
    threshold: float = 0.5  # sigmoid / none: a pixel is in a class's mask when its probability >= threshold
    channels_last: bool | None = None  # (batch, H, W, classes); default: found from the class count
    rle_order: RleOrder = RleOrder.COLUMN_MAJOR
    output_name: str | None = None  # which model output, when it has several

    def check(self) -> list[str]:
        """Ranges of the keys above."""
        errors = []
        if not self.class_names:
            errors.append("head.class_names must list the model's classes, in channel order")
        elif len(set(self.class_names)) != len(self.class_names):
            errors.append(f"head.class_names has duplicates: {list(self.class_names)}")
        if not 0.0 <= self.threshold <= 1.0:
            errors.append(f"head.threshold must be in [0, 1] (got {self.threshold})")
        return errors


def channel_axis(spec: TensorSpec, classes: int, channels_last: bool | None, *, model_name: str) -> bool:
    """Whether a 4-D map output is channels-last, from the config or the class count.

    Raises:
        ConfigError: the output is not 4-D, or no axis matches the class count.
    """
    if len(spec.shape) != 4:
        raise ConfigError(
            f"model {model_name}: output '{spec.name}' has {len(spec.shape)} axes; segmentation needs "
            "(batch, classes, height, width) or (batch, height, width, classes)"
        )
    if channels_last is not None:
        found = spec.shape[3] if channels_last else spec.shape[1]
        if found is not None and found != classes:
            raise ConfigError(
                f"head.class_names has {classes} classes but model {model_name} output '{spec.name}' has {found} "
                "channels"
            )
        return channels_last
    if spec.shape[1] == classes:
        return False
    if spec.shape[3] == classes:
        return True
    raise ConfigError(
        f"head.class_names has {classes} classes but model {model_name} output '{spec.name}' has shape "
        f"({', '.join('?' if dim is None else str(dim) for dim in spec.shape)}); set head.channels_last if its "
        "channel axis is dynamic"
    )


class SemanticSegmentationHead(Head):
    """Per-class masks at each image's size, as RLE, and IoU / Dice."""

    Config = Config
    model_keys = ("class_names",)
    context_type = ImageContext

    def __init__(
        self,
        *,
        config: Config,
        output: str,
        channels_last: bool,
        resize_mode: ResizeMode,
        class_column: str,
        mask_column: str,
        input_column: str,
        labels: pd.DataFrame | None,
        source_name: str,
    ) -> None:
        self.config = config
        self.output = output
        self.channels_last = channels_last
        self.resize_mode = resize_mode
        self.class_column = class_column
        self.mask_column = mask_column
        self.input_column = input_column
        self.labels = labels  # [class column, mask column] as read, JSON lists or Parquet lists
        self.source_name = source_name
        self.notes: list[str] = ["masks are float16 in the pkl (half the size of float32, about 3 significant digits)"]

    @classmethod
    def build(
        cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame
    ) -> SemanticSegmentationHead:
        config: Config = task.head
        spec = select_output(outputs, config.output_name, model_name=task.model.name)
        channels_last = channel_axis(spec, len(config.class_names), config.channels_last, model_name=task.model.name)
        class_column, mask_column = _label_columns(task)
        labels = None
        if class_column in dataframe.columns:
            for _ in read_mask_labels(
                dataframe, (class_column, mask_column), config.class_names, source=task.data.dataframe, unique=True
            ):
                pass  # checked now, read again a batch at a time when used: never all parsed at once (issue 18)
            labels = dataframe[[class_column, mask_column]]
        return cls(
            config=config,
            output=spec.name,
            channels_last=channels_last,
            resize_mode=task.preprocessing.resize_mode,
            class_column=class_column,
            mask_column=mask_column,
            input_column=task.input_column,
            labels=labels,
            source_name=task.data.dataframe.name,
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """Maps to probabilities, masks at original size, RLEs and per-class pixel counts; reads the `ImageContext`."""
        probabilities = activate(channels_first(outputs[self.output], self.channels_last), self.config.activation)
        classes = len(self.config.class_names)
        rows = len(batch.row_ids)
        sizes = context_of(batch, ImageContext, head=self).original_sizes
        counts = {
            name: np.zeros((rows, classes), dtype=np.int64)
            for name in ("intersections", "predicted_pixels", "true_pixels")
        }
        runs = [np.zeros((0, 3), dtype=np.int32)] * rows
        restored = to_original_sizes(probabilities, sizes, resize_mode=self.resize_mode)
        true_rles = self._true_rles(batch.row_ids) if self.labels is not None else None
        for slot, row in enumerate(batch.row_ids):
            size = (int(sizes[slot][0]), int(sizes[slot][1]))
            if restored[slot] is None:  # a row that could not be read
                continue
            # Masks as the starts and stops of their runs: the RLE strings and every pixel count come from
            # those, the label masks are never painted (issue 18: post-processing of 2,048 rows at 256x256,
            # 2.5 -> 1.9 s CPU).
            edges = mask_edges(self._binary_masks(restored[slot]), column_major=self._column_major)
            runs[slot] = edges_to_runs(edges, size[0] * size[1])
            if true_rles is not None:
                truth = self._true_edges(int(row), size, true_rles[slot])
                counts["intersections"][slot] = [common_pixels(mask, true) for mask, true in zip(edges, truth)]
                counts["predicted_pixels"][slot] = [edge_pixels(mask) for mask in edges]
                counts["true_pixels"][slot] = [edge_pixels(true) for true in truth]
        return {
            "masks": to_float16(probabilities),
            "original_image_shapes": sizes.astype(np.int64),
            "mask_runs": _views_of_one_array(runs),
            **counts,
        }

    @property
    def _column_major(self) -> bool:
        return self.config.rle_order is RleOrder.COLUMN_MAJOR

    def _binary_masks(self, probabilities: np.ndarray) -> np.ndarray:
        """float32[C, h, w] probabilities to bool[C, h, w] masks."""
        if self.config.activation is MaskActivation.SOFTMAX:
            return probabilities.argmax(axis=0)[None] == np.arange(len(probabilities))[:, None, None]
        return probabilities >= self.config.threshold

    def _true_edges(self, row: int, size: tuple[int, int], true_rles: dict[str, str]) -> list[np.ndarray]:
        """Per class, the starts and stops of one row's label mask (see `predict.heads._masks.mask_edges`).

        Raises:
            InputError: an RLE runs past the image, naming the row and class.
        """
        truth = []
        for name in self.config.class_names:
            text = true_rles.get(name, "")
            try:
                truth.append(rle_edges(text, size))
            except ValueError as error:
                raise InputError(
                    f"{self.source_name}: row {row}, column '{self.mask_column}', class {name!r}: RLE {error}"
                ) from None
        return truth

    def _true_rles(self, rows: Sequence[int]) -> list[dict[str, str]]:
        """Per row of `rows`, class name to RLE of its labels (checked in `build`); the cells taken at once (a
        row at a time was 34 us a row of pandas indexing, 1.5 s of 10,000 rows)."""
        rows = np.asarray(rows, dtype=np.int64)
        cells = self.labels.iloc[rows]
        source = Path(self.source_name)
        found = []
        for row, names, rles in zip(rows.tolist(), *(cells[column].tolist() for column in cells.columns)):
            names = list_cell(names, row=row, column=self.class_column, source=source)
            rles = list_cell(rles, row=row, column=self.mask_column, source=source)
            found.append({str(name): str(rle) for name, rle in zip(names, rles)})
        return found

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        return {f"pred_{self.mask_column}": _PredictedRles(predictions["mask_runs"], len(self.config.class_names))}

    def csv_table(
        self, dataframe: pd.DataFrame, predictions: dict[str, np.ndarray], *, valid: np.ndarray
    ) -> tuple[TableByBlock, dict[str, Any], np.ndarray]:
        """Each input row once per class, with that class's name and true RLE (FORMATS.md), a block at a time."""
        classes = len(self.config.class_names)
        return _ClassRows(dataframe, self), self.prediction_columns(predictions), np.repeat(~valid, classes)

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        return {
            "masks": predictions["masks"],
            "original_image_shapes": predictions["original_image_shapes"],
            "rle_predictions": RlesByRow(predictions["mask_runs"], len(self.config.class_names)),
            "class_names": list(self.config.class_names),
            self.input_column: column_values(dataframe, self.input_column),
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        intersection = predictions["intersections"].sum(axis=0).astype(np.float64)
        predicted = predictions["predicted_pixels"].sum(axis=0).astype(np.float64)
        true = predictions["true_pixels"].sum(axis=0).astype(np.float64)
        present = predicted + true > 0
        iou = np.divide(intersection, predicted + true - intersection, out=np.zeros_like(intersection), where=present)
        dice = np.divide(2 * intersection, predicted + true, out=np.zeros_like(intersection), where=present)
        if not present.any():
            self.notes.append("no IoU/Dice: neither the labels nor the predictions have any mask pixel")
            return {}
        metrics = {"IoU": float(iou[present].mean()), "Dice": float(dice[present].mean())}
        for index, name in enumerate(self.config.class_names):
            if present[index]:
                metrics[f"IoU_{name}"] = float(iou[index])
                metrics[f"Dice_{name}"] = float(dice[index])
        return metrics


class _ClassRows(TableByBlock):
    """The CSV's input part: each input row once per class, with the class's name and, with labels, its true RLE
    (`""` if absent) in the label columns; without labels the class name goes first, in `class_id`. Made a block
    at a time: the whole table repeated the dataframe and held every true RLE twice (issue 18)."""

    def __init__(self, dataframe: pd.DataFrame, head: SemanticSegmentationHead) -> None:
        self.dataframe = dataframe
        self.head = head
        self.classes = len(head.config.class_names)
        labelled = head.labels is not None
        self.columns = list(dataframe.columns) if labelled else ["class_id", *dataframe.columns]

    def __len__(self) -> int:
        return len(self.dataframe) * self.classes

    def block(self, start: int, stop: int) -> pd.DataFrame:
        first, last, cut = _input_rows(start, stop, self.classes)
        part = self.dataframe.iloc[first:last]
        table = part.iloc[np.repeat(np.arange(len(part)), self.classes)[cut]].reset_index(drop=True)
        class_names = self.head.config.class_names
        names = (list(class_names) * len(part))[cut]
        if self.head.labels is None:
            table.insert(0, "class_id", names)
            return table
        true_rles = self.head._true_rles(range(first, last))
        table[self.head.class_column] = names
        table[self.head.mask_column] = [rles.get(name, "") for rles in true_rles for name in class_names][cut]
        return table


def edges_to_runs(edges: list[np.ndarray], pixels: int) -> np.ndarray:
    """Per class, `mask_edges`' starts and stops, as one image's runs: int32[K, 3] (class, start, stop), by class
    (int64 for an image of 2**31 pixels or more).

    What a row's predicted masks are kept as until the files are written: on disk with the checkpoint's chunks
    (one array per row). Every row's RLE strings were held in memory until the end before: scoring grew by
    237 MB more at 100,000 rows of two 256x256 masks than at 10,000 (issue 18).
    """
    dtype = np.int32 if pixels < 2**31 else np.int64
    runs = np.empty((sum(len(mask) for mask in edges) // 2, 3), dtype=dtype)
    runs[:, 0] = np.repeat(np.arange(len(edges)), [len(mask) // 2 for mask in edges])
    if len(runs):
        runs[:, 1:] = np.concatenate(edges).reshape(-1, 2)
    return runs


def _views_of_one_array(rows: list[np.ndarray]) -> np.ndarray:
    """Per-row arrays as an object array of views into one array: kept until the checkpoint saves them, a small
    allocation per row between the batches' big temporary ones fragmented the C heap (RSS grew 370 MB per
    4,096 rows of semantic segmentation, for 22 MB of runs)."""
    whole = np.concatenate(rows)
    lengths = [len(row) for row in rows]
    stops = np.cumsum(lengths)
    views = np.empty(len(rows), dtype=object)
    for index, (start, stop) in enumerate(zip(stops - lengths, stops)):
        views[index] = whole[start:stop]
    return views


def runs_to_rles(runs: np.ndarray, classes: int) -> list[str]:
    """An image's runs (`edges_to_runs`) as each class's RLE string."""
    bounds = (2 * np.searchsorted(runs[:, 0], np.arange(classes + 1))).tolist()
    return edges_to_rles(runs[:, 1:].ravel(), bounds)


class RlesByRow(RowsByBlock):
    """The pkl's `rle_predictions` (n, classes): per row, each class's RLE string, made from its runs when read."""

    def __init__(self, runs: Sequence[np.ndarray], classes: int) -> None:
        self.runs = runs  # per row, int32[K, 3] (edges_to_runs)
        self.item_shape = (classes,)

    def __len__(self) -> int:
        return len(self.runs)

    def block(self, start: int, stop: int) -> list:
        # A run's rows are in the checkpoint's files (RowArrays): read a block at a time, never row by row.
        rows = self.runs.block(start, stop) if isinstance(self.runs, RowArrays) else self.runs[start:stop]
        return [runs_to_rles(runs, self.item_shape[0]) for runs in rows]


class _PredictedRles(RowsByBlock):
    """`pred_{mask column}`: per input row, each class's predicted RLE, one CSV row each."""

    def __init__(self, runs: Sequence[np.ndarray], classes: int) -> None:
        self.rows = RlesByRow(runs, classes)
        self.classes = classes

    def __len__(self) -> int:
        return len(self.rows) * self.classes

    def block(self, start: int, stop: int) -> list:
        first, last, cut = _input_rows(start, stop, self.classes)
        return [rle for rles in self.rows.block(first, last) for rle in rles][cut]


def _input_rows(start: int, stop: int, classes: int) -> tuple[int, int, slice]:
    """The input rows `first:last` that CSV rows `start:stop` (one per input row and class) come from, and where
    those CSV rows are among all classes' rows of `first:last`."""
    first, last = start // classes, -(-stop // classes)
    return first, last, slice(start - first * classes, stop - first * classes)


def channels_first(maps: np.ndarray, channels_last: bool) -> np.ndarray:
    """float32[B, C, H, W] maps, C-contiguous, from the model's output in either layout. Contiguous: every
    later step on a transposed view (the float16 copy, each image's slice) took a slow strided path
    (float16 of a batch of 32 maps: 6.5 ms strided, 0.5 ms contiguous; issue 18)."""
    maps = np.asarray(maps, dtype=np.float32)
    return np.ascontiguousarray(maps.transpose(0, 3, 1, 2) if channels_last else maps)


def activate(maps: np.ndarray, activation: MaskActivation) -> np.ndarray:
    """float32[B, C, H, W] maps to probabilities of the same shape."""
    if activation is MaskActivation.SIGMOID:
        return _ops.sigmoid(maps)
    if activation is MaskActivation.SOFTMAX:
        return _ops.softmax(maps, axis=1)
    return maps


def _label_columns(task: TaskConfig) -> tuple[str, str]:
    if len(task.data.label_columns) != 2:
        raise ConfigError(
            f"data.label_columns: {task.problem_type} takes two columns, [class name column, RLE mask column] "
            f"(got {list(task.data.label_columns)})"
        )
    return task.data.label_columns[0], task.data.label_columns[1]


def read_mask_labels(
    dataframe: pd.DataFrame, columns: tuple[str, str], class_names: tuple[str, ...], *, source, unique: bool
) -> Iterator[list[tuple[str, str]]]:
    """Per row, its (class name, RLE) pairs, checked for syntax (the image size is known only once decoded);
    one row at a time.

    Raises:
        InputError: a cell is not a list, the lists differ in length, a class is not in
            `head.class_names` (or repeats, when `unique`), or an RLE is malformed; naming the row.
    """
    known = set(class_names)
    for row, (names, rles) in enumerate(list_columns(dataframe, columns, source=source)):
        pairs = []
        for name, rle in zip(names, rles):
            if str(name) not in known:
                raise InputError(
                    f"{source.name}: row {row}, column '{columns[0]}': class {name!r} is not in head.class_names "
                    f"({', '.join(class_names)})"
                )
            try:
                parse_rle(str(rle))
            except ValueError as error:
                raise InputError(
                    f"{source.name}: row {row}, column '{columns[1]}': RLE {str(rle)[:40]!r} {error}"
                ) from None
            pairs.append((str(name), str(rle)))
        if unique and len({name for name, _ in pairs}) != len(pairs):
            raise InputError(
                f"{source.name}: row {row}, column '{columns[0]}': a class is listed twice ({names}); give one RLE "
                "per class"
            )
        yield pairs
