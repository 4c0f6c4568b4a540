"""The exported graph's inputs and the pre-processing between them and the model, one front end per modality.

- image: `image` uint8 (N, H, W, C) at the model's input size (the caller resizes or letterboxes);
  the graph casts, applies `preprocessing.mean`/`std` as the loader does ((pixel - mean) * (1 / std)
  in float32) and transposes to NCHW when the model takes it so (`predict.data.image`).
- array: `inputs` (several inputs keep the model's names), in the model's dtype; nothing to do.
- text: `input_ids` int64 (N, T) and, when the model takes them, `attention_mask` and
  `token_type_ids` int64 (N, T); the graph casts them to the model's dtypes. Tokenisation stays
  outside (`predict.data.text`, `predict.data.tokenizer`).

Each front end also gives, for parity checks, the graph's feeds of one batch of the task's own
loader: the same decoded rows the pipeline feeds the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.image import LETTERBOX_FILL, ImageInput, image_input_from
from predict.data.text import TextInputs, text_inputs_from
from predict.enums import ResizeMode
from predict.export.graph import GraphBuilder, element_type
from predict.runners.base import TensorSpec, single_input

IMAGE_INPUT = "image"
ARRAY_INPUT = "inputs"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class FrontEnd:
    """What every front end gives beyond `add`, `feeds`, `metadata` and `outside`."""

    def after_model(self, builder: GraphBuilder) -> None:
        """Nodes between the model and the head's post-processing; none by default."""


@dataclass(frozen=True)
class ImageFrontEnd(FrontEnd):
    """uint8 NHWC images in; the model's float layout out."""

    image: ImageInput
    task: TaskConfig

    @classmethod
    def for_task(cls, task: TaskConfig, model_inputs: tuple[TensorSpec, ...]) -> ImageFrontEnd:
        spec = single_input(model_inputs, kind="image", model_name=task.model.name)
        return cls(image_input_from(spec, task.preprocessing, model_name=task.model.name), task)

    def add(self, builder: GraphBuilder) -> None:
        image = self.image
        pixels = builder.input(IMAGE_INPUT, np.uint8, ["batch", image.height, image.width, image.channels])
        preprocessing = self.task.preprocessing
        values = builder.op("Cast", pixels, to=element_type(np.float32))
        values = builder.op("Sub", values, builder.const(np.asarray(preprocessing.mean, dtype=np.float32)))
        scale = 1.0 / np.asarray(preprocessing.std, dtype=np.float32)  # the loader's own constant
        values = builder.op("Mul", values, builder.const(scale.astype(np.float32)))
        if image.channels_first:
            values = builder.op("Transpose", values, perm=[0, 3, 1, 2])
        if image.dtype != np.float32:
            values = builder.op("Cast", values, to=element_type(image.dtype))
        builder.feed_model_input(image.name, values)

    def feeds(self, dataset, index: int) -> tuple[Batch, dict[str, np.ndarray]]:
        """The pipeline's batch `index` and the graph's feeds: the same pixels before normalisation."""
        batch = dataset[index]
        _, pixels, _, context = dataset.pixels(index)
        return batch, {IMAGE_INPUT: pixels, "original_sizes": context.original_sizes.astype(np.int64)}

    def metadata(self) -> dict[str, str]:
        preprocessing = self.task.preprocessing
        image = self.image
        facts = {
            "image_size": f"[{image.height}, {image.width}]",
            "image_channels": str(image.channels),
            "resize_mode": str(preprocessing.resize_mode),
            "interpolation": str(preprocessing.interpolation),
            "mean": str(list(preprocessing.mean)),
            "std": str(list(preprocessing.std)),
        }
        if preprocessing.resize_mode is ResizeMode.LETTERBOX:
            facts["letterbox_fill"] = str(LETTERBOX_FILL)
        return facts

    def outside(self) -> list[str]:
        preprocessing = self.task.preprocessing
        how = (
            f"letterboxed (aspect kept, centred, padded with {LETTERBOX_FILL})"
            if preprocessing.resize_mode is ResizeMode.LETTERBOX
            else "resized"
        )
        return [
            f"decoding each image to RGB uint8 and {how} to {self.image.height}x{self.image.width} "
            f"({preprocessing.interpolation} interpolation)"
        ]


@dataclass(frozen=True)
class ArrayFrontEnd(FrontEnd):
    """The model's numeric inputs, as they are: `inputs` for a one-input model."""

    specs: tuple[TensorSpec, ...]

    @classmethod
    def for_task(cls, task: TaskConfig, model_inputs: tuple[TensorSpec, ...]) -> ArrayFrontEnd:
        return cls(model_inputs)

    def input_name(self, spec: TensorSpec) -> str:
        return ARRAY_INPUT if len(self.specs) == 1 else spec.name

    def add(self, builder: GraphBuilder) -> None:
        for spec in self.specs:
            rest = [dim if dim is not None else f"{spec.name}_{axis}" for axis, dim in enumerate(spec.shape[1:], 1)]
            shape = ["batch", *rest]
            name = builder.input(self.input_name(spec), spec.dtype, shape)
            builder.feed_model_input(spec.name, name)

    def feeds(self, dataset, index: int) -> tuple[Batch, dict[str, np.ndarray]]:
        batch = dataset[index]
        return batch, {self.input_name(spec): batch.inputs[spec.name] for spec in self.specs}

    def metadata(self) -> dict[str, str]:
        return {}

    def outside(self) -> list[str]:
        return []


@dataclass(frozen=True)
class TextFrontEnd(FrontEnd):
    """Token ids (and attention mask, segment ids) in, as int64; cast to what the model takes."""

    text: TextInputs
    task: TaskConfig

    @classmethod
    def for_task(cls, task: TaskConfig, model_inputs: tuple[TensorSpec, ...]) -> TextFrontEnd:
        inputs = text_inputs_from(model_inputs, max_length=task.preprocessing.max_length, model_name=task.model.name)
        return cls(inputs, task)

    def _pairs(self) -> list[tuple[str, str]]:
        """(graph input, model input) for ids, mask and segment ids, those the model has."""
        text = self.text
        pairs = zip(TEXT_INPUTS, (text.ids, text.mask, text.token_types))
        return [(graph_name, model_name) for graph_name, model_name in pairs if model_name is not None]

    def add(self, builder: GraphBuilder) -> None:
        length = self.text.max_length if self.text.pad_to_max_length else "sequence"
        for graph_name, model_name in self._pairs():
            value = builder.input(graph_name, np.int64, ["batch", length])
            dtype = self.text.dtypes[model_name]
            if dtype != np.int64:
                value = builder.op("Cast", value, to=element_type(dtype))
            builder.feed_model_input(model_name, value)

    def feeds(self, dataset, index: int) -> tuple[Batch, dict[str, np.ndarray]]:
        batch = dataset[index]
        return batch, {graph: batch.inputs[model].astype(np.int64) for graph, model in self._pairs()}

    def metadata(self) -> dict[str, str]:
        preprocessing = self.task.preprocessing
        return {
            "max_length": str(self.text.max_length),
            "padding_side": str(preprocessing.padding_side),
            "truncation_side": str(preprocessing.truncation_side),
            "tokenizer": preprocessing.tokenizer.name,
        }

    def outside(self) -> list[str]:
        return [f"tokenisation with {self.task.preprocessing.tokenizer.name} (ids, padding, truncation)"]
