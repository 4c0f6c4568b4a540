"""`predict serve --engine ray`: configs/image_classification.yaml on Ray Serve, 2 replicas on a local Ray.

The server is a subprocess on 127.0.0.1 (its own local Ray instance); the real Triton client gets
the batch job's answers (1e-5) whichever replica answers, the requests are spread over both
replicas, and SIGTERM drains a replica: its queued requests are answered and the command exits 0.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import tritonclient.http as triton

from tests.serve.helpers import CONFIGS, batch_job, start_server, wait_for_log, wait_for_queue_depth
from tests.serve.test_serve_image_classification import assert_rows, image_input

pytest.importorskip("ray.serve", reason="serve --engine ray needs ray[serve] (pip install 'predict[ray-serve]')")

CONFIG = CONFIGS / "image_classification.yaml"
NAME = "image_classification"
# The driver's line once Ray Serve reports every replica running.
SERVING = r"serving image_classification on Ray Serve at \S+ with 2 replica\(s\)"
# A replica's request line, as Ray forwards it to the driver: "(ServeReplica:... pid=123) ... POST .../infer 200".
ANSWERED = r"pid=(\d+)\)\S*\s+\S+ \S+ INFO predict\.serve: \S+ POST /v2/models/image_classification/infer 200"


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict:
    output_dir = tmp_path_factory.mktemp("serve_ray")
    raw, _ = batch_job(CONFIG, output_dir)
    images = [(CONFIGS / "data" / "shapes" / "images" / name).read_bytes() for name in raw["image_path"]]
    return {"output_dir": output_dir, "raw": raw, "images": images}


def test_two_replicas_answer_as_the_batch_job(expected):
    server = start_server(CONFIG, expected["output_dir"], "serve.replicas=2", engine="ray")
    wait_for_log(server, SERVING)
    try:
        with triton.InferenceServerClient(server.address) as client:
            assert client.is_server_ready() and client.is_model_ready(NAME) and client.is_model_ready(NAME + "_raw")
            assert client.get_model_metadata(NAME)["outputs"] == [
                {"name": "predictions", "datatype": "FP32", "shape": [-1, 3]}
            ]
        count = len(expected["images"])
        failures: list[str] = []

        def client_thread(number: int) -> None:
            rows = random.Random(number)
            try:
                with triton.InferenceServerClient(server.address) as client:
                    for _ in range(8):
                        chosen = rows.sample(range(count), rows.randint(1, 3))
                        assert_rows(client, expected, chosen, binary=number % 2 == 0)
            except Exception as error:  # reported below, with the thread's number
                failures.append(f"client {number}: {type(error).__name__}: {error}")

        threads = [threading.Thread(target=client_thread, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        # 64 requests from 8 clients: Ray's router gives both replicas some (each logs its own lines).
        replicas = {match.group(1) for match in wait_for_log(server, ANSWERED, count=64)}
        assert len(replicas) == 2, replicas
    finally:
        assert server.stop(timeout=120) == 0


def test_sigterm_answers_the_queued_requests_and_exits_0(expected):
    # One replica: Ray's router sends /metrics to the least busy replica, so only with one does /metrics show
    # the queue that holds the requests. A long queue delay keeps them queued when the signal comes.
    overrides = ["serve.replicas=1", "serve.max_queue_delay_microseconds=15000000", "serve.max_batch_size=64"]
    server = start_server(CONFIG, expected["output_dir"], *overrides, engine="ray")
    wait_for_log(server, SERVING.replace("2 replica", "1 replica"))
    answers: dict[int, np.ndarray] = {}

    def send(row: int) -> None:
        with triton.InferenceServerClient(server.address, network_timeout=120) as client:
            answers[row] = client.infer(NAME, [image_input([expected["images"][row]])]).as_numpy("predictions")

    threads = [threading.Thread(target=send, args=(row,)) for row in range(8)]
    for thread in threads:
        thread.start()
    assert wait_for_queue_depth(server, 8) == 8  # all 8 wait in the queue
    assert server.stop(timeout=120) == 0
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(answers) == list(range(8))
    for row, answer in answers.items():
        np.testing.assert_allclose(answer[0], expected["raw"]["predictions"][row], rtol=0, atol=1e-5)
    assert "stopped: every accepted request was answered" in server.log()
