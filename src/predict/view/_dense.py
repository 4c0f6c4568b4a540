"""Shared pieces of the dense vision views (object detection, semantic and instance segmentation).

- The true boxes and instances: the detection and instance segmentation CSVs put the predictions in
  place of the label columns (FORMATS.md), so the truth is read back from the dataframe the run
  scored (`task.data.dataframe` in the report), checked row by row against the CSV.
- IoU of boxes and of RLE masks (decoded with `predict.heads._masks.decode_rle`, the head's own decoder).
- Drawing over the input image with Pillow: the image is scaled up (nearest neighbour) to about
  `DRAW_SIDE` pixels so that outlines and labels stay readable for images of a few dozen pixels.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from predict.data.dataframe import read_dataframe
from predict.errors import InputError
from predict.heads._masks import decode_rle, parse_rle
from predict.view import _samples
from predict.view.run import RunSplit

# A true object counts as found when its best same-class prediction overlaps it this much (COCO's mAP@0.5).
MATCH_IOU = 0.5
# Drawn samples are scaled to about this many pixels on their longer side.
DRAW_SIDE = 288
# Class colours: matplotlib's tab10, so the plots and the drawn samples agree.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# True objects are outlined in this colour, whatever their class.
TRUTH_COLOUR = "#00e676"


def class_colour(index: int) -> str:
    """The colour of class `index` (cycling through `PALETTE`)."""
    return PALETTE[index % len(PALETTE)]


def task_section(run: RunSplit, name: str) -> dict[str, Any]:
    """A section of the task as run (`head`, `data`), from the report; empty when not recorded."""
    task = run.report.get("task") or {}
    section = task.get(name) or {}
    return section if isinstance(section, dict) else {}


def class_names(run: RunSplit) -> list[str]:
    """`head.class_names` of the run.

    Raises:
        InputError: the report does not record them.
    """
    names = task_section(run, "head").get("class_names")
    if not names:
        raise InputError(
            f"{run.run_dir / (run.split + '_report.json')}: task.head.class_names is not recorded; "
            "run the task again to view it"
        )
    return [str(name) for name in names]


def column_major(run: RunSplit) -> bool:
    """Whether the run's RLE numbers pixels down the columns first (`head.rle_order`, default column_major)."""
    return task_section(run, "head").get("rle_order", "column_major") == "column_major"


def truth_frame(run: RunSplit, columns: list[str]) -> tuple[pd.DataFrame | None, str]:
    """The scored dataframe's label columns, for views whose CSV replaced them by the predictions.

    Args:
        run: the split; its report names the dataframe (`task.data.dataframe`).
        columns: the label columns needed.

    Returns:
        The dataframe (row i = CSV row i) and "", or None and why there are no actual values.

    Raises:
        InputError: the dataframe no longer matches the CSV (row count or input column), naming both files.
    """
    dataframe = task_section(run, "data").get("dataframe")
    if not dataframe:
        return None, "the report does not name the scored dataframe"
    path = Path(dataframe)
    if not path.is_file():
        return None, f"the scored dataframe {path} is not there any more"
    frame = read_dataframe(path)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        return None, f"the scored dataframe has no label column(s) {', '.join(missing)}"
    csv_path = run.run_dir / f"{run.split}_predictions.csv"
    if len(frame) != len(run.predictions):
        raise InputError(
            f"{path}: has {len(frame)} rows but {csv_path} has {len(run.predictions)}: the dataframe changed "
            "since the run; run the task again to view it"
        )
    column = run.input_column
    if column in frame.columns and column in run.predictions.columns:
        differs = np.flatnonzero(frame[column].astype(str).to_numpy() != run.predictions[column].astype(str).to_numpy())
        if differs.size:
            row = int(differs[0])
            raise InputError(
                f"{path}: row {row}, column '{column}' is {frame[column].iloc[row]!r} but {csv_path.name} has "
                f"{run.predictions[column].iloc[row]!r}: the dataframe changed since the run; "
                "run the task again to view it"
            )
    return frame.reset_index(drop=True), ""


def json_list(value: Any, *, row: int, column: str, source: Path) -> list:
    """A list-valued cell (JSON list in CSV, empty cell = no objects, or a Parquet list).

    Raises:
        InputError: naming the row and column.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    text = str(value)
    if not text.strip():
        return []
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list):
        raise InputError(f"{source.name}: row {row}, column '{column}': expected a JSON list, got {text[:60]!r}")
    return parsed


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes.

    Args:
        first: float64[A, 4] xyxy.
        second: float64[B, 4] xyxy.

    Returns:
        float64[A, B].
    """
    first = np.asarray(first, dtype=np.float64).reshape(-1, 4)
    second = np.asarray(second, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0.0, None).prod(axis=2)
    area_first = np.clip(first[:, 2:] - first[:, :2], 0.0, None).prod(axis=1)
    area_second = np.clip(second[:, 2:] - second[:, :2], 0.0, None).prod(axis=1)
    union = area_first[:, None] + area_second[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def rle_end(text: str) -> int:
    """The pixel after the last run of an RLE string (0 for an empty mask).

    Raises:
        ValueError: a malformed string.
    """
    runs = parse_rle(text)
    return int((runs[0::2] + runs[1::2] - 1).max()) if runs.size else 0


def flat_masks(texts: list[str], *, source: Path, row: int, column: str) -> np.ndarray:
    """RLE strings of one image as bool[K, L] over a common pixel numbering (L = the last pixel any covers).

    IoU does not depend on the image's shape or the pixel order, only on which numbered pixels two
    masks share, so the image need not be opened to compare masks.

    Raises:
        InputError: a malformed RLE, naming the row and column.
    """
    try:
        length = max((rle_end(str(text)) for text in texts), default=0)
        return (
            np.stack([decode_rle(str(text), (1, length)).ravel() for text in texts])
            if texts
            else np.zeros((0, 0), dtype=bool)
        )
    except ValueError as error:
        raise InputError(f"{source.name}: row {row}, column '{column}': not a valid RLE mask: {error}") from None


def mask_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise IoU of flat masks: bool[A, L] and bool[B, L] to float64[A, B]."""
    first = first.astype(np.float64)
    second = second.astype(np.float64)
    overlap = first @ second.T
    union = first.sum(axis=1)[:, None] + second.sum(axis=1)[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def best_ious(iou: np.ndarray, true_classes: list[int], predicted_classes: list[int]) -> np.ndarray:
    """float64[T]: per true object, its best IoU with a prediction of the same class (0 without one).

    Args:
        iou: float64[T, P] IoU of true objects (rows) and predictions (columns).
        true_classes: T class indices.
        predicted_classes: P class indices.
    """
    same = (
        np.asarray(true_classes)[:, None] == np.asarray(predicted_classes)[None, :]
        if iou.size
        else np.zeros(iou.shape, dtype=bool)
    )
    return np.where(same, iou, 0.0).max(axis=1) if iou.shape[1] else np.zeros(iou.shape[0])


def concatenate_classes(per_image: list[list[int]]) -> np.ndarray:
    """int64[total]: the class indices of every image, one after the other."""
    return np.array([index for indices in per_image for index in indices], dtype=np.int64)


def image_score(best: np.ndarray, predicted: int) -> float:
    """An image's mean best IoU of its true objects; without any: 1.0 when nothing was predicted
    either, 0.0 when every prediction is a false positive."""
    if best.size:
        return float(best.mean())
    return 1.0 if predicted == 0 else 0.0


def open_image(data_folder: Path, value: str) -> tuple[Image.Image | None, str]:
    """The input image scaled up for drawing (RGB), and its note on failure ("" when read)."""
    path = _samples.input_path(data_folder, value)
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        reason = "not found" if isinstance(error, FileNotFoundError) else "not readable"
        return None, f'<div class="missing">image {reason}: {_samples.escape(str(path))}</div>'
    return image, ""


def drawing_scale(image: Image.Image) -> int:
    """The whole-number factor that brings the image's longer side to about `DRAW_SIDE` (at least 1)."""
    return max(1, round(DRAW_SIDE / max(image.size)))


def upscale(image: Image.Image, scale: int) -> Image.Image:
    """The image `scale` times larger, pixels kept square (nearest neighbour)."""
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image.copy()


def font(size: int = 13) -> ImageFont.ImageFont:
    """Pillow's built-in font at `size` pixels."""
    return ImageFont.load_default(size=size)


def draw_label(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, *, colour: str, below: bool = False
) -> None:
    """`text` in white on a `colour` tag whose lower-left corner is at `xy` (upper-left with `below`)."""
    face = font()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    width, height = right - left + 6, bottom - top + 4
    x = max(0.0, xy[0])
    y = xy[1] if below else max(0.0, xy[1] - height)
    draw.rectangle((x, y, x + width, y + height), fill=colour)
    draw.text((x + 3 - left, y + 2 - top), text, fill="white", font=face)


def dashed_rectangle(
    draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], *, colour: str, width: int = 2, dash: int = 6
) -> None:
    """A dashed xyxy rectangle: true boxes are dashed so they read apart from the solid predicted ones."""
    x0, y0, x1, y1 = box
    for start, stop, fixed, horizontal in (
        (x0, x1, y0, True),
        (x0, x1, y1, True),
        (y0, y1, x0, False),
        (y0, y1, x1, False),
    ):
        position = start
        while position < stop:
            end = min(position + dash, stop)
            points = (position, fixed, end, fixed) if horizontal else (fixed, position, fixed, end)
            draw.line(points, fill=colour, width=width)
            position += 2 * dash


def outline(mask: np.ndarray) -> np.ndarray:
    """bool[H, W]: the pixels of `mask` that touch a pixel outside it (4-neighbourhood)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def paint(image: Image.Image, mask: np.ndarray, colour: str, *, alpha: float) -> Image.Image:
    """`image` with `mask` (bool[H, W] at the image's size) blended in `colour` at opacity `alpha`."""
    pixels = np.asarray(image, dtype=np.float32).copy()
    rgb = np.array(Image.new("RGB", (1, 1), colour).getpixel((0, 0)), dtype=np.float32)
    pixels[mask] = (1 - alpha) * pixels[mask] + alpha * rgb
    return Image.fromarray(pixels.round().astype(np.uint8))


def grow(mask: np.ndarray, scale: int) -> np.ndarray:
    """bool[H, W] to bool[H * scale, W * scale], each pixel a `scale` x `scale` block."""
    return np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1) if scale > 1 else mask


def png_img(image: Image.Image, alt: str) -> str:
    """An `<img>` of the drawn image, PNG inlined."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f'<img src="{_samples.png_uri(buffer.getvalue())}" alt="{_samples.escape(alt)}">'
