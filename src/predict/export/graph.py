"""Composing one ONNX graph around a model: pre-processing nodes before it, post-processing nodes after it.

The model's own names are prefixed with `model/` (`onnx.compose.add_prefix`, subgraphs included), so
the exported graph's inputs and outputs (`image`, `predictions`, ...) never collide with them; the
nodes added here are named `export/...`. A graph input the model took is then fed by the
pre-processing (`feed_model_input`), and the outputs are whatever the post-processing names
(`set_outputs`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

from predict.errors import ConfigError, one_line

MODEL_PREFIX = "model/"
# STFT and DFT (the audio front end) came in opset 17; older models are converted up to it.
MIN_OPSET = 17

_ELEMENT_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.bool_): TensorProto.BOOL,
    np.dtype(object): TensorProto.STRING,
}


def element_type(dtype: np.dtype | type) -> int:
    """The ONNX element type of a NumPy dtype (object = string)."""
    return _ELEMENT_TYPES[np.dtype(dtype)]


def read_model(path: Path) -> onnx.ModelProto:
    """The model file at opset >= 17.

    Raises:
        ConfigError: the file cannot be read, or its opset cannot be converted up to 17.
    """
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises several untyped errors for a bad file
        raise ConfigError(f"model {path.name}: not a readable ONNX file: {one_line(error)}") from None
    if default_opset(model) < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as error:  # the converter raises RuntimeError or its own adapter errors
            raise ConfigError(
                f"model {path.name}: opset {default_opset(model)} could not be converted to {MIN_OPSET} for export: "
                f"{one_line(error)}; export the model at opset {MIN_OPSET} or later"
            ) from None
    return model


def load_model(path: Path) -> onnx.ModelProto:
    """`read_model`, its names prefixed by `model/`."""
    return prefixed(read_model(path))


def prefixed(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model with every name (nodes, tensors, inputs, outputs, subgraphs) prefixed by `model/`."""
    return onnx.compose.add_prefix(model, MODEL_PREFIX)


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default (`ai.onnx`) domain the model imports."""
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)


class GraphBuilder:
    """Adds nodes and constants around a prefixed model graph, then hands back the composed model.

    Nodes added before `mark_model` run before the model's nodes (pre-processing), the others after
    it (post-processing); both lists keep the order they were added in, which is a topological order
    as long as a node is added after the nodes it reads.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.opset = default_opset(model)
        self.pre_nodes: list[onnx.NodeProto] = []
        self.post_nodes: list[onnx.NodeProto] = []
        self._after_model = False
        self._counter = itertools.count()
        self.inputs: list[onnx.ValueInfoProto] = []
        self._aliases: dict[str, str] = {}

    def _name(self, hint: str) -> str:
        return f"export/{hint}_{next(self._counter)}"

    def mark_model(self) -> None:
        """Nodes added from now on read the model's outputs."""
        self._after_model = True

    def input(self, name: str, dtype: np.dtype | type, shape: list[int | str | None]) -> str:
        """Declare a graph input; returns its name."""
        self.inputs.append(helper.make_tensor_value_info(name, element_type(dtype), shape))
        return name

    def const(self, value: np.ndarray | float | int | list, dtype: np.dtype | type | None = None) -> str:
        """A constant initializer; returns its name."""
        array = np.asarray(value, dtype=dtype)
        name = self._name("const")
        if array.dtype == object:
            tensor = helper.make_tensor(name, TensorProto.STRING, array.shape, [str(v).encode() for v in array.flat])
        else:
            tensor = numpy_helper.from_array(array, name)
        self.model.graph.initializer.append(tensor)
        return name

    def op(
        self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, **attributes
    ) -> str | list[str]:
        """Add one node; returns its output name (a list when `outputs` > 1). `name` names the (first) output."""
        names = [name] if name is not None and outputs == 1 else [self._name(op_type.lower()) for _ in range(outputs)]
        node = helper.make_node(op_type, list(inputs), names, name=self._name(f"node_{op_type.lower()}"), **attributes)
        (self.post_nodes if self._after_model else self.pre_nodes).append(node)
        return names[0] if outputs == 1 else names

    def reduce(self, op_type: str, value: str, axes: list[int], *, keepdims: bool) -> str:
        """ReduceMax/ReduceSum/...: axes as an input from opset 18 (13 for ReduceSum), an attribute before."""
        takes_input = self.opset >= 18 or op_type == "ReduceSum"
        if takes_input:
            return self.op(op_type, value, self.const(np.array(axes, dtype=np.int64)), keepdims=int(keepdims))
        return self.op(op_type, value, axes=axes, keepdims=int(keepdims))

    def model_inputs(self) -> list[onnx.ValueInfoProto]:
        """The model's own graph inputs (initializers excluded), prefixed."""
        initializers = {tensor.name for tensor in self.model.graph.initializer}
        return [value for value in self.model.graph.input if value.name not in initializers]

    def model_output(self, name: str) -> str:
        """The tensor that holds one of the model's outputs (unprefixed `name`) for the post-processing."""
        return self._aliases.get(name, MODEL_PREFIX + name)

    def replace_model_output(self, name: str, tensor: str) -> None:
        """Let the post-processing read `tensor` where it reads model output `name` (audio: averaged over chunks)."""
        self._aliases[name] = tensor

    def model_output_names(self) -> list[str]:
        """The model's output names, unprefixed."""
        return [value.name.removeprefix(MODEL_PREFIX) for value in self.model.graph.output]

    def feed_model_input(self, name: str, produced: str) -> None:
        """Let the pre-processing tensor `produced` be the model input `name` (unprefixed)."""
        self.op("Identity", produced, name=MODEL_PREFIX + name)

    def build(self, outputs: list[tuple[str, str, np.dtype | type, list[int | str | None]]]) -> onnx.ModelProto:
        """The composed model: graph inputs, pre nodes, the model's nodes, post nodes, and `outputs`
        as (output name, tensor name, dtype, shape); a tensor whose name differs is renamed by an Identity.

        Raises:
            ConfigError: the composed graph fails the ONNX checker.
        """
        graph = self.model.graph
        fed = {node.output[0] for node in self.pre_nodes}
        kept_inputs = [value for value in graph.input if value.name not in fed]
        del graph.input[:]
        graph.input.extend([*self.inputs, *kept_inputs])
        for output_name, tensor, _, _ in outputs:
            if tensor != output_name:
                self.op("Identity", tensor, name=output_name)
        model_nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend([*self.pre_nodes, *model_nodes, *self.post_nodes])
        del graph.output[:]
        graph.output.extend(
            helper.make_tensor_value_info(output_name, element_type(dtype), shape)
            for output_name, _, dtype, shape in outputs
        )
        try:
            onnx.checker.check_model(self.model, full_check=True)
        except Exception as error:  # the checker raises ValidationError and shape-inference errors
            raise ConfigError(f"the exported graph is not valid ONNX: {one_line(error)}") from None
        return self.model
