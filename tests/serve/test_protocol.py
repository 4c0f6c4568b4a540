"""The wire format: requests as tritonclient builds them, responses as tritonclient reads them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http._utils import _get_inference_request

from predict.serve.protocol import (
    InferRequest,
    RequestError,
    TensorInfo,
    datatype_of,
    encode_infer_response,
    parse_infer_request,
)

INPUTS = {
    "image_path": TensorInfo("image_path", "BYTES", (-1,)),
    "pixels": TensorInfo("pixels", "FP32", (-1, 2, 3)),
}
OUTPUTS = {"scores": TensorInfo("scores", "FP32", (-1, 3)), "classes": TensorInfo("classes", "BYTES", (-1, 2))}


def client_request(inputs: list[triton.InferInput], outputs=None) -> tuple[bytes, str | None]:
    """The body and Inference-Header-Content-Length tritonclient sends."""
    body, header_length = _get_inference_request(
        inputs=inputs,
        request_id="7",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=None,
    )
    return body if isinstance(body, bytes) else body.encode(), None if header_length is None else str(header_length)


def make_inputs(rows: int, *, binary: bool) -> tuple[list[triton.InferInput], np.ndarray, np.ndarray]:
    files = np.array([bytes([row]) * (row + 1) for row in range(rows)], dtype=object)
    pixels = np.arange(rows * 6, dtype=np.float32).reshape(rows, 2, 3)
    image = triton.InferInput("image_path", [rows, 1], "BYTES")  # (n, 1), as Triton clients often send it
    image.set_data_from_numpy(files.reshape(rows, 1), binary_data=binary)
    tensor = triton.InferInput("pixels", [rows, 2, 3], "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    return [image, tensor], files, pixels


def parse(body: bytes, header_length: str | None) -> InferRequest:
    return parse_infer_request(body, header_length, model_name="m", inputs=INPUTS, outputs=OUTPUTS)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_requests_as_tritonclient_sends_them(binary):
    inputs, files, pixels = make_inputs(3, binary=binary)
    if not binary:  # JSON BYTES are UTF-8 strings
        inputs[0].set_data_from_numpy(np.array([["a"], ["bc"], ["é"]], dtype=object), binary_data=False)
        files = np.array([b"a", b"bc", "é".encode()], dtype=object)
    request = parse(*client_request(inputs))
    assert request.rows == 3 and request.id == "7"
    assert list(request.inputs["image_path"]) == list(files)
    np.testing.assert_array_equal(request.inputs["pixels"], pixels)
    assert request.outputs is None and request.binary_output is True  # no outputs named: all, in binary


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_responses_as_tritonclient_reads_them(binary):
    inputs, _, _ = make_inputs(2, binary=True)
    outputs = [
        triton.InferRequestedOutput("classes", binary_data=binary),
        triton.InferRequestedOutput("scores", binary),
    ]
    request = parse(*client_request(inputs, outputs))
    scores = np.array([[0.5, 0.25, np.float32(1e-7)], [1, 2, 3]], dtype=np.float32)
    classes = np.array([["cat", ""], ["dög", "fox"]], dtype=object)
    body, headers = encode_infer_response("m", request, {"scores": scores, "classes": classes}, OUTPUTS)
    length = headers.get("Inference-Header-Content-Length")
    result = triton.InferResult.from_response_body(body, header_length=None if length is None else int(length))
    np.testing.assert_array_equal(result.as_numpy("scores"), scores)
    got = result.as_numpy("classes")
    assert [value.decode() if isinstance(value, bytes) else value for value in got.ravel()] == list(classes.ravel())
    assert [output["name"] for output in result.get_response()["outputs"]] == ["classes", "scores"]  # as asked


def header(**entries) -> bytes:
    return json.dumps({"inputs": [entries]}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{", None, "not valid JSON"),
        (b"[]", None, "must be a JSON object"),
        (b'{"inputs": []}', None, "no 'inputs' list; model m takes image_path (BYTES [-1])"),
        (header(name="x", datatype="FP32", shape=[1], data=[1]), None, "unknown input 'x': model m takes"),
        (header(name="pixels", datatype="FP64", shape=[1, 2, 3], data=[0] * 6), None, "datatype 'FP64', expected FP32"),
        (header(name="pixels", datatype="FP32", shape=[1, 3, 2], data=[0] * 6), None, "shape [1, 3, 2] does not fit"),
        (
            header(name="pixels", datatype="FP32", shape=[1, 2, 3], data=[0] * 5),
            None,
            "data has 5 value(s), its shape 6",
        ),
        (header(name="pixels", datatype="FP32", shape=[1, 2, 3], data=["a"] * 6), None, "data must be FP32 values"),
        (
            header(name="pixels", datatype="FP32", shape=[1, 2, 3]),
            None,
            "neither 'data' nor parameters.binary_data_size",
        ),
        (header(name="image_path", datatype="BYTES", shape=[1], data=[3]), None, "BYTES data in JSON must be strings"),
        (b'{"inputs": []}', "x", "Inference-Header-Content-Length must be an integer"),
        (b'{"inputs": []}', "99", "truncated body"),
    ],
)
def test_malformed_requests_name_what_is_wrong(body, header_length, message):
    with pytest.raises(RequestError) as raised:
        parse(body, header_length)
    assert raised.value.status == 400 and message in raised.value.message, raised.value.message


def test_binary_data_is_checked_against_the_shape():
    pixels = json.dumps(
        {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 2, 3], "parameters": {"binary_data_size": 20}}]}
    ).encode()
    with pytest.raises(RequestError, match="binary_data_size 20 but its shape holds 6 FP32 value"):
        parse(pixels + bytes(20), str(len(pixels)))
    with pytest.raises(RequestError, match="only 3 byte"):
        parse(pixels + bytes(3), str(len(pixels)))
    files = json.dumps(
        {"inputs": [{"name": "image_path", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 9}}]}
    ).encode()
    with pytest.raises(RequestError, match="binary data ends before element 1 of 2"):
        parse(files + (5).to_bytes(4, "little") + b"hello", str(len(files)))
    with pytest.raises(RequestError, match="element 0 declares 200 bytes but 5 are left"):
        parse(files + (200).to_bytes(4, "little") + b"hello", str(len(files)))


def test_inputs_must_share_their_rows_and_outputs_must_exist():
    inputs, _, _ = make_inputs(2, binary=True)
    other, _, _ = make_inputs(3, binary=True)
    with pytest.raises(RequestError, match="must share their first"):
        parse(*client_request([inputs[0], other[1]]))
    with pytest.raises(RequestError, match="missing input"):
        parse(*client_request([inputs[0]]))
    with pytest.raises(RequestError, match="unknown output 'nope': model m gives scores"):
        parse(*client_request(inputs, [triton.InferRequestedOutput("nope")]))


def test_datatype_names():
    assert [datatype_of(np.dtype(name)) for name in ("float32", "float16", "int64", "bool", "uint8")] == [
        "FP32",
        "FP16",
        "INT64",
        "BOOL",
        "UINT8",
    ]
    assert datatype_of(np.dtype(object)) == datatype_of(np.dtype("<U3")) == "BYTES"
    with pytest.raises(ValueError, match="complex"):
        datatype_of(np.dtype(np.complex64))
