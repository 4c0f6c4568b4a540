"""The two models one task config serves: `{name}`, the whole task through the batch job's plan, and `{name}_raw`.

`{name}` takes what a dataframe row holds, one input per column the model reads (`data.image_column`,
`data.text_column`, span prediction's question and context columns): encoded image or audio files
as BYTES, UTF-8 text as BYTES; the array problem types take the model's own input arrays. A
request's rows become a small dataframe whose cells hold those bytes, texts or arrays, and go through
the plan the batch job builds: its loader (`with_rows`: the same decoding code, which reads an
encoded file from a cell's bytes as it reads a path), the model (batched with other requests) and
its head (`postprocess`, then `row_predictions`). No problem type's pre- or post-processing is
written twice.

Its outputs are the pkl's per-row keys (FORMATS.md), named as there: numeric arrays as tensors of
their own dtype (`predictions`, `boxes`, `masks`, `embeddings`, ...), strings as BYTES of the same
shape (`classes`, `rle_predictions`, span `predictions`), and values that are lists or ragged per
row (token tags and probabilities, top-k answers, instance confidences) as BYTES with one JSON
document per row (NaN written as null). Keys that describe the model, not a row (class names), are
in the model metadata's `parameters`. Split-level steps (metric learning's neighbours) need every
row of a split and are not run: metric learning answers its embeddings.

`{name}_raw` is the model alone, as Triton's ONNX backend serves it: its inputs and outputs by their
graph names, pre-processed tensors in, raw outputs out.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from predict.data.collate import Batch, BatchDataset, average_chunks
from predict.errors import ConfigError, InputError
from predict.heads.base import TableByBlock
from predict.plan import Plan
from predict.runners.base import Runner, TensorSpec
from predict.serve.protocol import (
    DATATYPES,
    InferRequest,
    RequestError,
    TensorInfo,
    datatype_of,
    encode_infer_response,
    parse_infer_request,
)

Arrays = dict[str, np.ndarray]
# Rows the task model warms up on (the config's first rows): two, so that per-row shapes show.
WARM_UP_ROWS = 2


class OutputKind(StrEnum):
    """How a per-row pkl value travels (see the module docstring)."""

    TENSOR = "tensor"
    STRINGS = "strings"
    JSON = "json"


@dataclass(frozen=True)
class Output:
    """One output of the task model: how it is declared, and how its values travel."""

    info: TensorInfo
    kind: OutputKind


@dataclass(frozen=True)
class Prepared:
    """A request read, checked and decoded: the model's inputs and what is needed to answer it.

    Attributes:
        inputs: model input name to array (first axis: the request's pieces: rows, audio chunks or text windows).
        rows: the request's rows (what counts toward `serve.max_batch_size`).
        request: the inference request, for the protocol's answer (None for `POST /predict`).
        batch: the task model's decoded batch (None for the raw model).
        frame: the task model's rows as the loader read them; `shown`: as the client sent them (`/predict`).
    """

    inputs: Arrays
    rows: int
    request: InferRequest | None = None
    batch: Batch | None = None
    frame: pd.DataFrame | None = None
    shown: pd.DataFrame | None = None


class TaskModel:
    """`{name}`: a task's rows in, its head's per-row results out (see the module docstring)."""

    def __init__(self, plan: Plan, *, name: str, max_batch_size: int) -> None:
        self.plan = plan
        self.name = name
        # Every request (at most max_batch_size rows) is one item of its loader.
        runtime = dataclasses.replace(plan.task.runtime, batch_size=max_batch_size)
        self.task = dataclasses.replace(plan.task, runtime=runtime)
        self.head = plan.head.unlabelled()
        self.modality = plan.spec.modality.name
        self.inputs = _task_inputs(plan)
        self.input_keys = {*self.inputs, plan.task.input_column}  # pkl keys that echo the inputs
        self.outputs: dict[str, Output] = {}
        self.facts: dict[str, Any] = {}
        self._local = threading.local()  # one loader per decoding thread: tokenizers are not shared

    def warm_up(self, run: Callable[[Arrays], Arrays]) -> None:
        """Score the config's first rows through loader, model and head; the outputs' names, types and shapes
        come from that answer.

        Raises:
            InputError: those rows cannot be read.
        """
        frame = self.plan.dataframe.iloc[:WARM_UP_ROWS].reset_index(drop=True)
        if frame.empty:
            raise ConfigError(f"{self.task.data.rows_file.name} has no rows to warm the model up with")
        batch = self.plan.spec.build_dataset(self.task, frame, self.plan.runner.inputs)[0]
        if batch.errors:
            raise InputError(f"warm-up on the first rows of {self.task.data.rows_file.name}: {batch.errors[0][1]}")
        predictions = self.head.postprocess(average_chunks(run(batch.inputs), batch), batch)
        values = self._row_values(predictions, frame)
        self.outputs = {key: _output_of(key, value) for key, value in values.items()}
        if self.head.model_keys:
            raw = self.head.raw_predictions(predictions, frame)
            self.facts = {key: to_jsonable(raw[key]) for key in self.head.model_keys}

    def metadata(self) -> dict[str, Any]:
        """The model metadata object (`GET /v2/models/{name}`)."""
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "predict",
            "inputs": [info.metadata() for info in self.inputs.values()],
            "outputs": [output.info.metadata() for output in self.outputs.values()],
            "parameters": {"problem_type": str(self.task.problem_type), **self.facts},
        }

    def output_infos(self) -> dict[str, TensorInfo]:
        return {key: output.info for key, output in self.outputs.items()}

    def prepare(self, body: bytes, header_length: str | None) -> Prepared:
        """Read an inference request and decode its rows (on a decoding thread).

        Raises:
            RequestError: 400 a malformed request or a row the loader cannot read, naming input, row and why.
        """
        request = parse_infer_request(
            body, header_length, model_name=self.name, inputs=self.inputs, outputs=self.output_infos()
        )
        _check_rows(request.rows)
        columns = {name: self._cells(name, request.inputs[name]) for name in self.inputs}
        frame = pd.DataFrame(columns)
        batch = self._decode(frame)
        return Prepared(inputs=batch.inputs, rows=request.rows, request=request, batch=batch, frame=frame)

    def prepare_rows(self, body: bytes) -> Prepared:
        """Read `POST /predict`'s `{"rows": [{column: value, ...}, ...]}` and decode its rows.

        Raises:
            RequestError: 400 malformed JSON, a missing column, a value that is not base64, text or numbers.
        """
        rows = _json_rows(body)
        shown = pd.DataFrame(rows)
        frame = shown.copy()
        for name in self.inputs:
            frame[name] = pd.Series([self._cell_from_json(name, row, value) for row, value in enumerate(shown[name])])
        batch = self._decode(frame)
        return Prepared(inputs=batch.inputs, rows=len(frame), batch=batch, frame=frame, shown=shown)

    def respond(self, prepared: Prepared, outputs: Arrays) -> tuple[bytes, dict[str, str]]:
        """The inference response of a request: its rows through the head, as the outputs asked for."""
        predictions = self.head.postprocess(average_chunks(outputs, prepared.batch), prepared.batch)
        values = self._row_values(predictions, prepared.frame)
        tensors = {key: _as_tensor(key, self.outputs[key].kind, value, prepared.rows) for key, value in values.items()}
        return encode_infer_response(self.name, prepared.request, tensors, self.output_infos())

    def csv_rows(self, prepared: Prepared, outputs: Arrays) -> list[dict[str, Any]]:
        """`POST /predict`'s answer: the CSV's rows (the request's columns, then the head's `pred_*` columns)."""
        predictions = self.head.postprocess(average_chunks(outputs, prepared.batch), prepared.batch)
        # Encoded files and arrays are not sent back; text is, as the CSV keeps it.
        hidden = [] if self.modality == "text" else list(self.inputs)
        if self.head.split_level:  # no CSV columns without the whole split: the per-row pkl values instead
            table = prepared.shown.drop(columns=hidden)
            columns = self._row_values(predictions, prepared.frame)
        else:
            rows = prepared.rows
            table, columns, _ = self.head.csv_table(prepared.shown, predictions, valid=np.ones(rows, dtype=bool))
            if isinstance(table, TableByBlock):  # a request's few rows: whole
                table = table.block(0, len(table))
            table = table.reset_index(drop=True).drop(columns=hidden, errors="ignore")
        records = table.astype(object).to_dict(orient="records")
        for name, values in columns.items():
            for record, value in zip(records, values):
                record[name] = value
        return [{key: to_jsonable(value) for key, value in record.items()} for record in records]

    def _row_values(self, predictions: Arrays, frame: pd.DataFrame) -> dict[str, Any]:
        """The head's per-row pkl values, without the keys that echo the inputs."""
        values = self.head.row_predictions(predictions, frame)
        return {key: value for key, value in values.items() if key not in self.input_keys}

    def _decode(self, frame: pd.DataFrame) -> Batch:
        """The rows through this thread's loader; a row it cannot read refuses the request."""
        loader: BatchDataset | None = getattr(self._local, "loader", None)
        if loader is None:
            empty = self.plan.dataframe.iloc[:0]
            loader = self._local.loader = self.plan.spec.build_dataset(self.task, empty, self.plan.runner.inputs)
        batch = loader.with_rows(frame)[0]
        if batch.errors:
            raise RequestError(400, "; ".join(message for _, message in batch.errors))
        return batch

    def _cells(self, name: str, values: np.ndarray) -> list[Any]:
        """An input's elements as dataframe cells: bytes of encoded files, texts, or each row's array."""
        if self.modality == "text":
            return [_utf8(name, row, value) for row, value in enumerate(values)]
        return list(values)

    def _cell_from_json(self, name: str, row: int, value: Any) -> Any:
        """A `/predict` value as a cell: base64 to bytes (image, audio), text as is, lists to the input's array."""
        info = self.inputs[name]
        if self.modality == "text":
            if not isinstance(value, str):
                raise RequestError(400, f"row {row}, {name}: expected text, got {_shown(value)}")
            return value
        if self.modality != "array":
            if not isinstance(value, str):
                raise RequestError(400, f"row {row}, {name}: expected the file's bytes in base64, got {_shown(value)}")
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as error:
                raise RequestError(400, f"row {row}, {name}: not valid base64: {error}") from None
        try:
            array = np.asarray(value, dtype=DATATYPES[info.datatype])
        except (TypeError, ValueError):
            raise RequestError(
                400, f"row {row}, {name}: expected {info.datatype} numbers, got {_shown(value)}"
            ) from None
        if len(array.shape) != len(info.shape) - 1 or any(
            want not in (-1, dim) for dim, want in zip(array.shape, info.shape[1:])
        ):
            raise RequestError(
                400, f"row {row}, {name}: shape {list(array.shape)} does not fit {list(info.shape[1:])} (-1: any size)"
            )
        return array


class RawModel:
    """`{name}_raw`: the model alone, pre-processed tensors in, raw outputs out."""

    def __init__(self, runner: Runner, *, name: str) -> None:
        self.name = name
        self.inputs = {spec.name: tensor_info(spec) for spec in runner.inputs}
        self.outputs = {spec.name: tensor_info(spec) for spec in runner.outputs}

    def metadata(self) -> dict[str, Any]:
        """The model metadata object (`GET /v2/models/{name}`)."""
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [info.metadata() for info in self.inputs.values()],
            "outputs": [info.metadata() for info in self.outputs.values()],
        }

    def output_infos(self) -> dict[str, TensorInfo]:
        return self.outputs

    def prepare(self, body: bytes, header_length: str | None) -> Prepared:
        """Read an inference request: the model's own tensors, by name, in their own dtype.

        Raises:
            RequestError: 400 naming the input and what was expected.
        """
        request = parse_infer_request(
            body, header_length, model_name=self.name, inputs=self.inputs, outputs=self.outputs
        )
        _check_rows(request.rows)
        return Prepared(inputs=request.inputs, rows=request.rows, request=request)

    def respond(self, prepared: Prepared, outputs: Arrays) -> tuple[bytes, dict[str, str]]:
        """The inference response: the model's outputs for the request's rows."""
        return encode_infer_response(self.name, prepared.request, outputs, self.outputs)


def tensor_info(spec: TensorSpec) -> TensorInfo:
    """A model tensor as metadata states it: -1 for the batch axis and every dynamic one."""
    dims = tuple(-1 if dim is None else int(dim) for dim in spec.shape[1:])
    return TensorInfo(spec.name, datatype_of(spec.dtype), (-1, *dims))


def _task_inputs(plan: Plan) -> dict[str, TensorInfo]:
    """The task model's inputs: the columns the model reads (BYTES), or an array task's model inputs."""
    if plan.spec.modality.name == "array":
        return {spec.name: tensor_info(spec) for spec in plan.runner.inputs}
    columns = [getattr(plan.task.data, key) for key in plan.spec.input_keys]
    return {column: TensorInfo(column, "BYTES", (-1,)) for column in columns}


def _check_rows(rows: int) -> None:
    if rows == 0:
        raise RequestError(400, "the request has no rows (its inputs' first axis is 0)")


def _json_rows(body: bytes) -> list[dict[str, Any]]:
    """`{"rows": [{...}, ...]}`'s rows.

    Raises:
        RequestError: 400 the body is not that.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, f"the body is not valid JSON: {error}") from None
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise RequestError(400, 'expected {"rows": [{column: value, ...}, ...]} with at least one row')
    return rows


def _utf8(name: str, row: int, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"row {row}, {name}: text must be UTF-8 ({error})") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _output_of(key: str, value: Any) -> Output:
    """How a per-row pkl value travels, from the warm-up's answer."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        return Output(TensorInfo(key, datatype_of(value.dtype), (-1, *value.shape[1:])), OutputKind.TENSOR)
    if isinstance(value, np.ndarray) and all(isinstance(item, str) for item in value.flat):
        return Output(TensorInfo(key, "BYTES", (-1, *value.shape[1:])), OutputKind.STRINGS)
    return Output(TensorInfo(key, "BYTES", (-1,)), OutputKind.JSON)


def _as_tensor(key: str, kind: OutputKind, value: Any, rows: int) -> np.ndarray:
    """A per-row pkl value as the response tensor its kind says.

    Raises:
        RequestError: 400 rows whose values differ in shape (instance maps of images of different sizes).
    """
    if kind is OutputKind.JSON:
        documents = np.empty(rows, dtype=object)
        documents[:] = [json.dumps(to_jsonable(item)) for item in value]
        return documents
    array = np.asarray(value)
    if kind is OutputKind.TENSOR and array.dtype == object:
        raise RequestError(
            400, f"output '{key}' differs in shape between this request's rows: send such rows in separate requests"
        )
    return array


def to_jsonable(value: Any) -> Any:
    """A value as JSON can hold it: arrays as (nested) lists, NumPy scalars as Python ones, NaN and inf as null."""
    if isinstance(value, np.ndarray):
        return [to_jsonable(item) for item in value.tolist()] if value.ndim else to_jsonable(value.item())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    return value
