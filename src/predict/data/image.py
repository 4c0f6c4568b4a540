"""Images: decode, resize, normalise and lay out as the model wants, a whole batch per item.

8-bit RGB and RGBA PNGs are decoded by libspng (pyspng), everything else by Pillow: on the same
files libspng took 0.17 ms per 96x96 photo against Pillow's 0.27 ms, with equal pixels
(`scripts/bench_decoders.py`); on two cores decoding shares the CPU with the model.

The layout (NHWC or NCHW), channel count, size and dtype come from the model's input, not the user;
a configured `preprocessing.image_size` that disagrees with a static model size is a config error.

A cell names a file under the data folder, or holds the encoded file itself as bytes (`predict serve`'s
requests, through `ImageBatches.with_rows`): both are decoded by the same code.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyspng
from PIL import Image, UnidentifiedImageError

from predict.config import ImagePreprocessing, TaskConfig
from predict.data.collate import Batch, BatchDataset
from predict.data.context import ImageContext
from predict.data.paths import UnreadableRow, resolve_data_path, shown_cell
from predict.enums import Interpolation, ResizeMode
from predict.errors import ConfigError, one_line
from predict.runners.base import TensorSpec, format_shape, single_input

_RESAMPLE = {
    Interpolation.NEAREST: Image.Resampling.NEAREST,
    Interpolation.BILINEAR: Image.Resampling.BILINEAR,
    Interpolation.BICUBIC: Image.Resampling.BICUBIC,
    Interpolation.BOX: Image.Resampling.BOX,
    Interpolation.LANCZOS: Image.Resampling.LANCZOS,
}
_FLOAT_DTYPES = (np.float32, np.float16, np.float64)
LETTERBOX_FILL = 114  # the gray Ultralytics pads with
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def letterbox_geometry(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
    """Where a letterboxed image lands in the model input: (new_height, new_width, top, left).

    The image is scaled by min(target_height / height, target_width / width), keeping its aspect
    ratio, and centred; the loader pads the rest and heads use the same numbers to map back.
    """
    scale = min(target_height / height, target_width / width)
    new_height = min(target_height, max(1, round(height * scale)))
    new_width = min(target_width, max(1, round(width * scale)))
    return new_height, new_width, (target_height - new_height) // 2, (target_width - new_width) // 2


@dataclass(frozen=True, kw_only=True)
class ImageInput:
    """How one model input takes images.

    Attributes:
        name: the input's name in the graph.
        height, width: pixels after resizing.
        channels: 1 (grayscale) or 3 (RGB).
        channels_first: True for NCHW, False for NHWC.
        dtype: the float dtype the model takes.
    """

    name: str
    height: int
    width: int
    channels: int
    channels_first: bool
    dtype: np.dtype


def image_input_from(spec: TensorSpec, preprocessing: ImagePreprocessing, *, model_name: str) -> ImageInput:
    """Read layout, channels, size and dtype off a model input, and check them against the config.

    Raises:
        ConfigError: the input is not a 4-D float image tensor, or its static size disagrees with
            `preprocessing.image_size`, or neither gives a size.
    """
    if len(spec.shape) != 4:
        raise ConfigError(
            f"model {model_name}: input '{spec.name}' has shape {format_shape(spec.shape)}; "
            "an image model takes 4 axes (batch, height, width, channels) or (batch, channels, height, width)"
        )
    if np.dtype(spec.dtype).type not in _FLOAT_DTYPES:
        raise ConfigError(
            f"model {model_name}: input '{spec.name}' takes {np.dtype(spec.dtype).name}; image models need float"
        )
    _, axis1, axis2, axis3 = spec.shape
    if axis3 in (1, 3):
        channels_first, channels, size = False, axis3, (axis1, axis2)
    elif axis1 in (1, 3):
        channels_first, channels, size = True, axis1, (axis2, axis3)
    else:
        raise ConfigError(
            f"model {model_name}: input '{spec.name}' has shape {format_shape(spec.shape)}; "
            "cannot find a channel axis of size 1 or 3 (first or last after the batch)"
        )
    configured = preprocessing.image_size
    if configured is not None:
        for model_size, wanted in zip(size, configured):
            if model_size is not None and model_size != wanted:
                raise ConfigError(
                    f"preprocessing.image_size is {list(configured)} (height, width) but model {model_name} "
                    f"takes {format_shape(size)}; set image_size: [{size[0]}, {size[1]}]"
                )
        size = configured
    if None in size:
        raise ConfigError(
            f"preprocessing.image_size is missing and model {model_name} has a dynamic image size "
            f"{format_shape(spec.shape)}: set it to the (height, width) the model was trained on"
        )
    for key in ("mean", "std"):
        values = getattr(preprocessing, key)
        if len(values) not in (1, channels):
            raise ConfigError(
                f"preprocessing.{key} has {len(values)} values but model {model_name} takes {channels} channel(s)"
            )
    return ImageInput(
        name=spec.name,
        height=size[0],
        width=size[1],
        channels=channels,
        channels_first=channels_first,
        dtype=np.dtype(spec.dtype),
    )


class ImageBatches:
    """Item i is batch i: consecutive rows, decoded and pre-processed into one array.

    A worker builds a whole batch, so one message crosses processes per batch, not per image.
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        data_folder: Path,
        image_input: ImageInput,
        preprocessing: ImagePreprocessing,
        batch_size: int,
        column: str,
        allow_outside: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.allow_outside = allow_outside
        self.data_folder = data_folder
        self.image_input = image_input
        self.batch_size = batch_size
        self.column = column
        self.resample = _RESAMPLE[preprocessing.interpolation]
        self.letterbox = preprocessing.resize_mode is ResizeMode.LETTERBOX
        self.mean = np.asarray(preprocessing.mean, dtype=np.float32)
        self.scale = 1.0 / np.asarray(preprocessing.std, dtype=np.float32)

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def with_rows(self, dataframe: pd.DataFrame) -> ImageBatches:
        """This loader (size, layout, normalisation) over other rows of its column, whose cells may hold
        encoded files as bytes (a server's requests)."""
        other = copy.copy(self)
        other.paths = dataframe[self.column].tolist()
        return other

    def __getitem__(self, index: int) -> Batch:
        row_ids, pixels, errors, context = self.pixels(index)
        return Batch(row_ids, {self.image_input.name: self._normalise(pixels)}, errors, context)

    def pixels(self, index: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]], ImageContext]:
        """Batch `index` decoded and resized but not normalised: row ids, uint8[B, H, W, C] pixels at the
        model's size, unreadable rows (their pixels are zeros) and the context (what `predict export`'s
        graph is fed: it normalises in the graph)."""
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.paths))
        spec = self.image_input
        pixels = np.zeros((stop - start, spec.height, spec.width, spec.channels), dtype=np.uint8)
        original_sizes = np.zeros((stop - start, 2), dtype=np.int64)
        errors = []
        for slot, row in enumerate(range(start, stop)):
            try:
                pixels[slot], original_sizes[slot] = self._decode(self.paths[row])
            except UnreadableRow as error:
                errors.append((row, f"row {row}, {self.column} {shown_cell(self.paths[row])}: {error}"))
        input_sizes = np.tile(np.array([spec.height, spec.width], dtype=np.int64), (stop - start, 1))
        context = ImageContext(original_sizes=original_sizes, input_sizes=input_sizes)
        return np.arange(start, stop, dtype=np.int64), pixels, errors, context

    def _decode(self, value: str | bytes) -> tuple[np.ndarray, tuple[int, int]]:
        """uint8[H, W, C] pixels at the model's size, and the image's own (height, width), from a path
        under the data folder or the encoded file's bytes."""
        if isinstance(value, bytes):
            path, source, opened = None, value, io.BytesIO(value)
        else:
            path = source = opened = resolve_data_path(self.data_folder, value, allow_outside=self.allow_outside)
        spec = self.image_input
        try:
            pixels = _read_rgb_png(source) if spec.channels == 3 else None
            if pixels is not None and pixels.shape[:2] == (spec.height, spec.width):
                return pixels, (spec.height, spec.width)  # the common case: nothing left for Pillow to do
            with Image.fromarray(pixels) if pixels is not None else Image.open(opened) as image:
                image = image.convert("RGB" if spec.channels == 3 else "L")
                original_size = (image.height, image.width)
                if self.letterbox and image.size != (spec.width, spec.height):
                    image = self._letterbox(image)
                elif image.size != (spec.width, spec.height):
                    image = image.resize((spec.width, spec.height), self.resample)
                array = np.asarray(image)
        except FileNotFoundError:
            raise UnreadableRow(f"file not found: {path}") from None
        except IsADirectoryError:
            raise UnreadableRow(f"not a file but a folder: {path}") from None
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
            # Pillow names a file object by its repr (an address); the bytes have no better name.
            reason = one_line(error).replace(f" {opened!r}", "") if path is None else one_line(error)
            raise UnreadableRow(f"not a readable image: {reason}") from None
        return array.reshape(spec.height, spec.width, spec.channels), original_size

    def _letterbox(self, image: Image.Image) -> Image.Image:
        spec = self.image_input
        new_height, new_width, top, left = letterbox_geometry(image.height, image.width, spec.height, spec.width)
        fill = (LETTERBOX_FILL,) * 3 if image.mode == "RGB" else LETTERBOX_FILL
        canvas = Image.new(image.mode, (spec.width, spec.height), fill)
        canvas.paste(image.resize((new_width, new_height), self.resample), (left, top))
        return canvas

    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        # One float allocation: subtract straight into the model's layout, then scale in place.
        spec = self.image_input
        if spec.channels_first:
            pixels = pixels.transpose(0, 3, 1, 2)
            mean, scale = self.mean[:, None, None], self.scale[:, None, None]
        else:
            mean, scale = self.mean, self.scale
        out = np.empty(pixels.shape, dtype=np.float32)
        np.subtract(pixels, mean, out=out, dtype=np.float32)
        out *= scale
        return out if spec.dtype == np.float32 else out.astype(spec.dtype)


def _read_rgb_png(source: Path | bytes) -> np.ndarray | None:
    """uint8[H, W, 3] from an 8-bit RGB or RGBA PNG (alpha dropped, as Pillow's convert("RGB")), else None.

    Only the 26-byte header is read of any other file (palette, grayscale or 16-bit PNGs, JPEGs,
    ...): Pillow opens those, and also words the error for a PNG libspng refuses. `source` is a file,
    or the encoded file's bytes.
    """
    if isinstance(source, bytes):
        if not _is_rgb_png(source[:26]):
            return None
        data = source
    else:
        with open(source, "rb") as file:
            header = file.read(26)
            if not _is_rgb_png(header):
                return None
            data = header + file.read()
    try:
        return pyspng.load(data, "RGB")
    except (RuntimeError, ValueError):
        return None


def _is_rgb_png(header: bytes) -> bool:
    """Whether a file's first 26 bytes are an 8-bit RGB/RGBA PNG that Pillow would not refuse as a bomb."""
    # IHDR follows the signature: length, type, width, height, bit depth (byte 24), colour type (25).
    if len(header) < 26 or not header.startswith(_PNG_SIGNATURE) or header[24] != 8 or header[25] not in (2, 6):
        return False
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    return not (Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS)


def build_image_dataset(
    task: TaskConfig, dataframe: pd.DataFrame, model_inputs: tuple[TensorSpec, ...]
) -> BatchDataset:
    """Batches of the image column in row order (`predict.data.collate.batch_loader` feeds them to the model).

    Raises:
        ConfigError: the model does not take exactly one image input that fits `preprocessing`.
    """
    model_name = task.model.name
    spec = single_input(model_inputs, kind="image", model_name=model_name)
    dataset = ImageBatches(
        dataframe[task.data.image_column].tolist(),
        data_folder=task.data.data_folder or task.data.dataframe.parent,
        image_input=image_input_from(spec, task.preprocessing, model_name=model_name),
        preprocessing=task.preprocessing,
        batch_size=task.runtime.batch_size,
        column=task.data.image_column,
        allow_outside=task.data.allow_outside_folder,
    )
    return dataset
