"""The Open Inference Protocol (KServe v2) REST wire format as Triton speaks it, with its binary tensor data extension.

A request body is a JSON header; with the `Inference-Header-Content-Length` HTTP header (the header's
length in bytes) it is followed by the raw bytes of every input that declares
`parameters.binary_data_size`, in input order. A response carries the outputs asked for in binary
(an output's `parameters.binary_data`, or the request's `parameters.binary_data_output` for all of
them) after its JSON header the same way. Numbers travel as little-endian bytes or JSON numbers;
`BYTES` elements in binary are a 4-byte little-endian length, then the bytes. Nothing is pickled.

Everything a client can get wrong is a `RequestError` naming the input and what was expected.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix


class RequestError(Exception):
    """A request the server refuses: the HTTP status and a message saying what was wrong and what was expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def datatype_of(dtype: np.dtype) -> str:
    """The protocol's name of a NumPy dtype (`FP32`, `INT64`, `BYTES` for strings and objects).

    Raises:
        ValueError: a dtype the protocol has no name for (complex numbers, datetimes).
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "OUS":
        return "BYTES"
    if dtype.newbyteorder("=") in _NAMES:
        return _NAMES[dtype.newbyteorder("=")]
    raise ValueError(f"no Open Inference Protocol datatype for {dtype}")


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output as metadata states it: name, datatype, shape (-1 for an open axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        """The `{name, datatype, shape}` object of model metadata."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class InferRequest:
    """A parsed inference request.

    Attributes:
        id: the request's `id`, echoed in the response.
        inputs: input name to array, first axis = the request's rows; `BYTES` as an object array of bytes.
        rows: the first axis, shared by every input.
        outputs: the outputs asked for by name, each with whether it goes in binary; None for all of them.
        binary_output: whether outputs not asked for by name go in binary (`binary_data_output`).
    """

    id: str | None
    inputs: dict[str, np.ndarray]
    rows: int
    outputs: tuple[tuple[str, bool], ...] | None
    binary_output: bool


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    *,
    model_name: str,
    inputs: dict[str, TensorInfo],
    outputs: dict[str, TensorInfo],
) -> InferRequest:
    """Read an inference request's JSON header and binary tensors, checked against the model's inputs and outputs.

    Raises:
        RequestError: 400 naming what is malformed, unknown, missing, mistyped, misshaped or truncated.
    """
    header, binary = _split_body(body, header_length)
    entries = header.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise RequestError(400, f"the request has no 'inputs' list; model {model_name} takes {_names(inputs)}")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for entry in entries:
        name, array, offset = _parse_input(entry, binary, offset, model_name=model_name, inputs=inputs)
        if name in arrays:
            raise RequestError(400, f"input '{name}' is given twice")
        arrays[name] = array
    if offset != len(binary):
        raise RequestError(
            400, f"the binary body has {len(binary) - offset} byte(s) after the last input's binary_data_size"
        )
    missing = [name for name in inputs if name not in arrays]
    if missing:
        raise RequestError(400, f"missing input(s) {', '.join(missing)}: model {model_name} takes {_names(inputs)}")
    rows = {len(array) for array in arrays.values()}
    if len(rows) != 1:
        counts = ", ".join(f"'{name}' {len(array)}" for name, array in arrays.items())
        raise RequestError(400, f"inputs must share their first (batch) axis; got {counts}")
    request_id = header.get("id")
    return InferRequest(
        id=None if request_id is None else str(request_id),
        inputs=arrays,
        rows=rows.pop(),
        outputs=_requested_outputs(header, model_name=model_name, outputs=outputs),
        binary_output=_parameter(header, "binary_data_output", bool, default=False, where="the request"),
    )


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header as a mapping, and the binary part after it (empty without the extension)."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise RequestError(
                400, f"Inference-Header-Content-Length must be an integer (got {header_length!r})"
            ) from None
        if not 0 < size <= len(body):
            raise RequestError(
                400, f"Inference-Header-Content-Length is {size} but the body has {len(body)} byte(s): truncated body?"
            )
    try:
        header = json.loads(bytes(body[:size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, f"the request header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise RequestError(400, f"the request header must be a JSON object (got {type(header).__name__})")
    return header, memoryview(body)[size:]


def _parse_input(
    entry: Any, binary: memoryview, offset: int, *, model_name: str, inputs: dict[str, TensorInfo]
) -> tuple[str, np.ndarray, int]:
    """One input: its name, its array and where the next input's binary data starts."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise RequestError(400, "each input must be an object with a 'name', 'datatype' and 'shape'")
    name = entry["name"]
    if name not in inputs:
        raise RequestError(400, f"unknown input '{name}': model {model_name} takes {_names(inputs)}")
    info = inputs[name]
    if entry.get("datatype") != info.datatype:
        raise RequestError(400, f"input '{name}': datatype {entry.get('datatype')!r}, expected {info.datatype}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(dim, int) and dim >= 0 for dim in shape):
        raise RequestError(400, f"input '{name}': shape must be a list of non-negative integers (got {shape!r})")
    if not _fits(shape, info.shape):
        raise RequestError(400, f"input '{name}': shape {shape} does not fit {list(info.shape)} (-1: any size)")
    count = math.prod(shape)
    size = _parameter(entry, "binary_data_size", int, default=None, where=f"input '{name}'")
    if size is None:
        if "data" not in entry:
            raise RequestError(400, f"input '{name}' has neither 'data' nor parameters.binary_data_size")
        array = _json_tensor(name, entry["data"], info.datatype, count)
    else:
        if size < 0 or offset + size > len(binary):
            raise RequestError(
                400,
                f"input '{name}': binary_data_size {size} but only {len(binary) - offset} byte(s) of binary data "
                "are left: truncated body?",
            )
        array = _binary_tensor(name, binary[offset : offset + size], info.datatype, count)
        offset += size
    return name, array.reshape(_batch_shape(shape, info.shape)), offset


def _fits(shape: list[int], declared: tuple[int, ...]) -> bool:
    """Whether a request shape fits the declared one; one value per row, declared (-1,), may come as (n, 1)."""
    if len(declared) == 1 and len(shape) == 2 and shape[1] == 1:
        return True
    return len(shape) == len(declared) and all(want in (-1, dim) for dim, want in zip(shape, declared))


def _batch_shape(shape: list[int], declared: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0],) if len(declared) == 1 else tuple(shape)


def _json_tensor(name: str, data: Any, datatype: str, count: int) -> np.ndarray:
    """A flat array from an input's JSON `data` (nested lists are read in row-major order)."""
    try:
        array = np.asarray(data).ravel()
    except ValueError:
        raise RequestError(
            400, f"input '{name}': data is ragged; give it flat or as nested lists of one shape"
        ) from None
    if array.size != count:
        raise RequestError(400, f"input '{name}': data has {array.size} value(s), its shape {count}")
    if datatype == "BYTES":
        if array.size and array.dtype.kind != "U":
            raise RequestError(400, f"input '{name}': BYTES data in JSON must be strings (got {array.dtype.name})")
        values = np.empty(array.size, dtype=object)
        values[:] = [text.encode("utf-8") for text in array.tolist()]
        return values
    wanted = DATATYPES[datatype]
    allowed = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}[wanted.kind]
    if array.size and array.dtype.kind not in allowed:
        raise RequestError(400, f"input '{name}': data must be {datatype} values (got {array.dtype.name})")
    if (
        array.size
        and wanted.kind in "iu"
        and (array.min() < np.iinfo(wanted).min or array.max() > np.iinfo(wanted).max)
    ):
        raise RequestError(400, f"input '{name}': data holds values outside the range of {datatype}")
    return array.astype(wanted)


def _binary_tensor(name: str, raw: memoryview, datatype: str, count: int) -> np.ndarray:
    """A flat array from an input's binary data."""
    if datatype == "BYTES":
        return _bytes_elements(name, raw, count)
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise RequestError(
            400,
            f"input '{name}': binary_data_size {len(raw)} but its shape holds {count} {datatype} value(s) = "
            f"{count * dtype.itemsize} bytes",
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def _bytes_elements(name: str, raw: memoryview, count: int) -> np.ndarray:
    """`count` BYTES elements, each a 4-byte little-endian length and its bytes."""
    values = np.empty(count, dtype=object)
    position = 0
    for index in range(count):
        if position + _LENGTH.size > len(raw):
            raise RequestError(400, f"input '{name}': binary data ends before element {index} of {count}")
        (length,) = _LENGTH.unpack_from(raw, position)
        position += _LENGTH.size
        if position + length > len(raw):
            raise RequestError(
                400, f"input '{name}': element {index} declares {length} bytes but {len(raw) - position} are left"
            )
        values[index] = bytes(raw[position : position + length])
        position += length
    if position != len(raw):
        raise RequestError(400, f"input '{name}': {len(raw) - position} byte(s) left after its {count} element(s)")
    return values


def _requested_outputs(
    header: dict[str, Any], *, model_name: str, outputs: dict[str, TensorInfo]
) -> tuple[tuple[str, bool], ...] | None:
    entries = header.get("outputs")
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise RequestError(400, "'outputs' must be a list of objects with a 'name'")
    requested = []
    default = _parameter(header, "binary_data_output", bool, default=False, where="the request")
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in outputs:
            raise RequestError(400, f"unknown output {name!r}: model {model_name} gives {_names(outputs)}")
        requested.append((name, _parameter(entry, "binary_data", bool, default=default, where=f"output '{name}'")))
    return tuple(requested)


def _parameter(entry: dict[str, Any], key: str, kind: type, *, default: Any, where: str) -> Any:
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(400, f"{where}: 'parameters' must be an object")
    value = parameters.get(key, default)
    if value is not default and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise RequestError(400, f"{where}: parameters.{key} must be {kind.__name__} (got {value!r})")
    return value


def _names(infos: dict[str, TensorInfo]) -> str:
    return ", ".join(f"{info.name} ({info.datatype} {list(info.shape)})" for info in infos.values())


def encode_infer_response(
    model_name: str, request: InferRequest, outputs: dict[str, np.ndarray], infos: dict[str, TensorInfo]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its HTTP headers: the outputs asked for (all by default), binary where asked."""
    chosen = request.outputs if request.outputs is not None else [(name, request.binary_output) for name in outputs]
    entries, chunks = [], []
    for name, binary in chosen:
        array = outputs[name]
        datatype = infos[name].datatype
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = _to_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json(array, datatype)
        entries.append(entry)
    header: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": entries}
    if request.id is not None:
        header["id"] = request.id
    text = json.dumps(header).encode("utf-8")
    if not chunks:
        return text, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(text))}
    return b"".join([text, *chunks]), headers


def _to_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for value in array.ravel().tolist():
            data = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype].newbyteorder("<")).tobytes()


def _to_json(array: np.ndarray, datatype: str) -> list[Any]:
    if datatype == "BYTES":
        return [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in array.ravel()]
    return array.ravel().tolist()
