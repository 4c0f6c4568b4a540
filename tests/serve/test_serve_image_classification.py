"""`predict serve` on configs/image_classification.yaml, called with the real Triton client and plain HTTP.

One server for the module (started in a subprocess on 127.0.0.1); every answer is compared with
the batch job's pkl for the same rows, to 1e-5. The raw model is compared with onnxruntime run
here on the batch loader's tensors.
"""

from __future__ import annotations

import base64
import json
import random
import re
import signal
import threading
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from predict.plan import batches_in_process
from predict.runners.ort import OrtRunner
from predict.task import load_config
from tests.serve.helpers import CONFIGS, batch_job, get, post, start_server, wait_for_queue_depth
from tests.serve.helpers import status as status_of

CONFIG = CONFIGS / "image_classification.yaml"
NAME = "image_classification"
MAX_REQUEST_BYTES = 1_000_000  # a request of 6 rows of JSON pixels fits; a larger body gets 413


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict:
    """The batch job's pkl, each row's image bytes, and its CSV."""
    output_dir = tmp_path_factory.mktemp("serve_image_classification")
    raw, csv = batch_job(CONFIG, output_dir)
    folder = CONFIGS / "data" / "shapes" / "images"
    images = [(folder / name).read_bytes() for name in raw["image_path"]]
    return {"output_dir": output_dir, "raw": raw, "csv": csv, "images": images}


@pytest.fixture(scope="module")
def server(expected):
    server = start_server(CONFIG, expected["output_dir"], f"serve.max_request_bytes={MAX_REQUEST_BYTES}")
    yield server
    server.stop()


@pytest.fixture
def client(server):
    with triton.InferenceServerClient(server.address) as client:
        yield client


def image_input(images: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image_path", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def assert_rows(client: triton.InferenceServerClient, expected: dict, rows: list[int], *, binary: bool = True) -> None:
    """The task model's answer for these rows equals the batch job's."""
    images = [expected["images"][row] for row in rows]
    outputs = [triton.InferRequestedOutput("predictions", binary_data=binary)]
    result = client.infer(NAME, [image_input(images)], outputs=outputs)
    np.testing.assert_allclose(result.as_numpy("predictions"), expected["raw"]["predictions"][rows], rtol=0, atol=1e-5)


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(NAME) and client.is_model_ready(NAME + "_raw")
    assert not client.is_model_ready("no_such_model")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "predict" and "binary_tensor_data" in metadata["extensions"]


def test_model_metadata(client):
    task = client.get_model_metadata(NAME)
    assert task["inputs"] == [{"name": "image_path", "datatype": "BYTES", "shape": [-1]}]
    assert task["outputs"] == [{"name": "predictions", "datatype": "FP32", "shape": [-1, 3]}]
    assert task["parameters"]["labels"] == ["circle", "square", "triangle"]  # the pkl's `labels`, once
    raw = client.get_model_metadata(NAME + "_raw")
    assert raw["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 32, 32, 3]}]
    assert raw["outputs"][0]["shape"] == [-1, 3]
    config = client.get_model_config(NAME)
    assert config["max_batch_size"] == 32 and "max_queue_delay_microseconds" in config["dynamic_batching"]


def test_binary_and_json_outputs_equal_the_batch_job(client, expected):
    assert_rows(client, expected, [0, 1, 2, 3, 4])
    assert_rows(client, expected, [7], binary=False)
    result = client.infer(NAME, [image_input(expected["images"][:2])])  # no outputs named: all, in binary
    np.testing.assert_allclose(result.as_numpy("predictions"), expected["raw"]["predictions"][:2], atol=1e-5)


def test_raw_model_equals_onnxruntime_on_the_loaders_tensors(client, expected):
    task = load_config(CONFIG, [f"output.dir={expected['output_dir']}", "runtime.batch_size=6"])
    model = next(Path(expected["output_dir"], "onnx_cache").rglob("*.onnx"))
    batch = next(iter(batches_in_process(task, expected["csv"].iloc[:6], OrtRunner(model))))
    pixels = batch.inputs["image"]
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"image": pixels})[0]
    for binary in (True, False):
        tensor = triton.InferInput("image", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        result = client.infer(NAME + "_raw", [tensor])
        np.testing.assert_allclose(result.as_numpy("output_0"), reference, rtol=0, atol=1e-5)


def test_predict_route_answers_the_csv_columns(server, expected):
    rows = [{"id": f"row-{row}", "image_path": base64.b64encode(expected["images"][row]).decode()} for row in (3, 9)]
    status, body = post(server.url + "/predict", json.dumps({"rows": rows}).encode())
    assert status == 200, body
    answer = json.loads(body)["rows"]
    csv = expected["csv"]
    for (row, sent), got in zip(((3, rows[0]), (9, rows[1])), answer):
        assert got["id"] == sent["id"] and "image_path" not in got  # the encoded file is not sent back
        assert got["pred_shape"] == csv["pred_shape"][row]
        for j, name in enumerate(["circle", "square", "triangle"]):
            assert got[f"pred_shape_{name}"] == pytest.approx(float(expected["raw"]["predictions"][row, j]), abs=1e-5)


def test_32_concurrent_clients_each_get_their_own_rows(server, expected):
    count = len(expected["images"])
    rows = [row % count for row in range(256)]
    random.Random(16).shuffle(rows)
    failures: list[str] = []

    def client_thread(number: int, own: list[int]) -> None:
        sizes = random.Random(number)
        try:
            with triton.InferenceServerClient(server.address) as client:
                start = 0
                while start < len(own):  # requests of 1 to 4 rows, binary or JSON outputs
                    size = sizes.randint(1, 4)
                    assert_rows(client, expected, own[start : start + size], binary=number % 2 == 0)
                    start += size
        except Exception as error:  # reported below, with the client's number
            failures.append(f"client {number}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=client_thread, args=(n, rows[n * 8 : n * 8 + 8])) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    metrics = get(server.url + "/metrics")[1].decode()
    buckets = dict(re.findall(r'predict_batch_size_bucket\{le="([^"]+)"\} (\S+)', metrics))
    assert float(buckets["32.0"]) == float(buckets["+Inf"]) > 0  # no model run ever had more than 32 rows


def bad_requests(server, expected) -> list[tuple[str, int, str, object]]:
    """(what, expected status, words of the message, the call): every kind of bad input."""
    url = server.url + f"/v2/models/{NAME}/infer"
    raw = NAME + "_raw"
    image = expected["images"][0]

    def infer(model: str, tensor: triton.InferInput):
        def call():
            with triton.InferenceServerClient(server.address) as client:
                client.infer(model, [tensor])

        return call

    def tensor(shape: tuple[int, ...], dtype: type, datatype: str, name: str = "image") -> triton.InferInput:
        tensor = triton.InferInput(name, list(shape), datatype)
        tensor.set_data_from_numpy(np.zeros(shape, dtype))
        return tensor

    def send(path: str, body: bytes, header_length: str | None = None):
        headers = {"Inference-Header-Content-Length": header_length} if header_length else {}
        return lambda: post(server.url + path, body, headers)

    header = {"inputs": [{"name": "image_path", "datatype": "BYTES", "shape": [1]}]}
    header["inputs"][0]["parameters"] = {"binary_data_size": 500}
    header = json.dumps(header).encode()
    truncated = header + len(image).to_bytes(4, "little") + image[:100]
    unknown = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [0]}]}
    infer_path = f"/v2/models/{NAME}/infer"
    return [
        ("undecodable image", 400, "not a readable image", infer(NAME, image_input([b"\x89PNG\r\n\x1a\n broken"]))),
        ("wrong dtype", 400, "expected BYTES", infer(NAME, tensor((1,), np.float32, "FP32", "image_path"))),
        ("wrong raw dtype", 400, "expected FP32", infer(raw, tensor((1, 32, 32, 3), np.int64, "INT64"))),
        ("wrong shape", 400, "does not fit [-1, 32, 32, 3]", infer(raw, tensor((1, 16, 16, 3), np.float32, "FP32"))),
        ("unknown model", 404, "unknown model 'no_such_model'", infer("no_such_model", image_input([image]))),
        ("malformed JSON", 400, "not valid JSON", send(infer_path, b'{"inputs": [')),
        ("truncated binary body", 400, "truncated body", send(infer_path, truncated, str(len(header)))),
        ("header length past the body", 400, "truncated body", send(infer_path, header, "9999")),
        ("unknown input", 400, "unknown input 'pixels'", send(f"/v2/models/{raw}/infer", json.dumps(unknown).encode())),
        ("no inputs", 400, "no 'inputs' list", send(infer_path, b"{}")),
        ("too many rows", 400, "serve.max_batch_size is 32", infer(NAME, image_input([image] * 33))),
        ("body too large", 413, "serve.max_request_bytes", lambda: post(url, b"x" * (MAX_REQUEST_BYTES + 1))),
        ("/predict not base64", 400, "not valid base64", send("/predict", b'{"rows": [{"image_path": "%%%"}]}')),
        ("/predict no rows", 400, "at least one row", send("/predict", b'{"rows": []}')),
        ("/predict a path", 400, "not valid base64", send("/predict", b'{"rows": [{"image_path": "../a.png"}]}')),
        ("no such route", 404, "Not Found", lambda: get(server.url + "/v2/nothing")),
    ]


def test_bad_input_between_good_requests(server, expected, client):
    for what, wanted_status, words, call in bad_requests(server, expected):
        try:
            result = call()
        except InferenceServerException as error:
            status, message = int(error.status()), error.message()
        else:
            status, body = result if result else (200, b"{}")
            message = json.loads(body).get("error", "")
        assert (status, words in message) == (wanted_status, True), f"{what}: {status} {message}"
        assert_rows(client, expected, [5, 6])  # the next request is served normally


def test_metrics_and_request_log(server, client, expected):
    assert_rows(client, expected, [1])
    assert post(server.url + f"/v2/models/{NAME}/infer", b"not json")[0] == 400
    status, body = get(server.url + "/metrics")
    text = body.decode()
    assert status == 200
    assert re.search(rf'predict_requests_total\{{model="{NAME}",status="200"\}} [1-9]', text)
    assert re.search(rf'predict_request_errors_total\{{model="{NAME}",status="400"\}} [1-9]', text)
    for name in ("predict_request_duration_seconds", "predict_batch_size", "predict_queue_wait_seconds"):
        assert f"{name}_bucket" in text and f"{name}_count" in text
    assert "predict_queue_depth " in text and "predict_model_busy_seconds_total " in text
    assert re.search(rf"POST /v2/models/{NAME}/infer 200 [0-9.]+ ms rows=1", server.log())
    assert re.search(rf"POST /v2/models/{NAME}/infer 400 [0-9.]+ ms", server.log())


def test_sigterm_answers_queued_requests_and_exits_0(expected):
    # A long queue delay and a large batch keep the requests queued when the signal comes.
    server = start_server(
        CONFIG, expected["output_dir"], "serve.max_queue_delay_microseconds=6000000", "serve.max_batch_size=64"
    )
    answers: dict[int, np.ndarray] = {}

    def send(row: int) -> None:
        with triton.InferenceServerClient(server.address) as client:
            answers[row] = client.infer(NAME, [image_input([expected["images"][row]])]).as_numpy("predictions")

    threads = [threading.Thread(target=send, args=(row,)) for row in range(8)]
    for thread in threads:
        thread.start()
    assert wait_for_queue_depth(server, 8) == 8  # all 8 wait in the queue
    assert server.stop() == 0
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == list(range(8))
    for row, answer in answers.items():
        np.testing.assert_allclose(answer[0], expected["raw"]["predictions"][row], rtol=0, atol=1e-5)
    assert status_of(server.url + "/v2/health/live") is None  # nothing listens any more
    assert "stopped: every accepted request was answered" in server.log()


def test_ctrl_c_stops_as_sigterm_does(expected):
    server = start_server(CONFIG, expected["output_dir"])
    assert server.stop(signal.SIGINT) == 0
    assert "stopped: every accepted request was answered" in server.log()
