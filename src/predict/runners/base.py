"""What every runner exposes: the model's tensor specs and a `run` from arrays to arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """One model input or output.

    Attributes:
        name: the tensor name in the graph.
        shape: one entry per axis: an int for a fixed size, None for a dynamic one.
        dtype: the NumPy dtype the model takes or gives.
        producer: for outputs, the op that computes it (`Softmax`, `Sigmoid`, `Gemm`, ...), looking
            through Identity-like ops; tells whether an output is already a probability.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    producer: str | None = None

    @property
    def fixed_batch_size(self) -> int | None:
        """The batch size a model exported with a static batch axis insists on, else None."""
        return self.shape[0] if self.shape and isinstance(self.shape[0], int) else None


class Runner(Protocol):
    """A loaded model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    provider: str  # what really ran, e.g. CPUExecutionProvider
    concurrent_batches: int  # batches the engine may run through `run` at once, from as many threads

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: input name to array in, output name to array out (first axis = rows)."""
        ...


def format_shape(shape: tuple[int | None, ...]) -> str:
    """A shape as users read it in messages: `(?, 3, 32, 32)`, `?` for a dynamic axis."""
    return "(" + ", ".join("?" if dim is None else str(dim) for dim in shape) + ")"


def single_input(inputs: tuple[TensorSpec, ...], *, kind: str, model_name: str) -> TensorSpec:
    """The one input of an image or audio model.

    Raises:
        ConfigError: the model takes no input or several.
    """
    from predict.errors import ConfigError

    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs)
        raise ConfigError(f"model {model_name} has {len(inputs)} inputs ({names}); an {kind} model takes one")
    return inputs[0]
