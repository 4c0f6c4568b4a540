"""`predict serve` on the committed examples of more problem types, each answer against the batch job's pkl.

One server per class (class-scoped: one runs at a time), started in a subprocess on 127.0.0.1 and
called with the real Triton client (binary and JSON tensors) and plain HTTP for `POST /predict`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.serve.helpers import CONFIGS, Server, batch_job, post, start_server

ATOL = 1e-5


@dataclass
class Served:
    """A server of one example config, and the batch job's answers for its rows."""

    server: Server
    raw: dict
    csv: pd.DataFrame
    name: str

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.server.address)


def serve_example(config_name: str, tmp_path_factory, *overrides: str) -> Iterator[Served]:
    output_dir = tmp_path_factory.mktemp(config_name)
    config = CONFIGS / f"{config_name}.yaml"
    raw, csv = batch_job(config, output_dir)
    server = start_server(config, output_dir, *overrides)
    yield Served(server, raw, csv, config_name)
    server.stop()


def files(folder: str, names) -> list[bytes]:
    return [(CONFIGS / "data" / folder / name).read_bytes() for name in names]


def bytes_input(name: str, values: list[bytes], *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return tensor


def infer(served: Served, inputs: list[triton.InferInput], *, binary: bool = True) -> dict[str, np.ndarray]:
    """Every output of the task model, asked for in binary or as JSON."""
    with served.client() as client:
        names = [output["name"] for output in client.get_model_metadata(served.name)["outputs"]]
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in names]
        result = client.infer(served.name, inputs, outputs=outputs)
    return {name: result.as_numpy(name) for name in names}


def texts(values) -> list[str]:
    return [value.decode() if isinstance(value, bytes) else str(value) for value in values]


def predict_rows(served: Served, rows: list[dict]) -> list[dict]:
    status, body = post(served.server.url + "/predict", json.dumps({"rows": rows}).encode())
    assert status == 200, body
    return json.loads(body)["rows"]


def base64_of(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TestObjectDetection:
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("image_object_detection", tmp_path_factory)

    def test_boxes_confidences_and_classes_equal_the_batch_job(self, served):
        rows = [0, 3, 5, 8]
        images = files("dense_shapes/images", served.raw["image_path"][rows])
        with served.client() as client:
            metadata = client.get_model_metadata(served.name)
        assert {output["name"]: output["shape"] for output in metadata["outputs"]} == {
            "boxes": [-1, 100, 4],
            "confidences": [-1, 100],
            "classes": [-1, 100],
        }
        for binary in (True, False):
            got = infer(served, [bytes_input("image_path", images)], binary=binary)
            np.testing.assert_allclose(got["boxes"], served.raw["boxes"][rows], rtol=0, atol=ATOL)
            np.testing.assert_allclose(got["confidences"], served.raw["confidences"][rows], rtol=0, atol=ATOL)
            assert np.array_equal(np.array(texts(got["classes"].ravel())), served.raw["classes"][rows].ravel())
        assert (served.raw["confidences"][rows] > 0.5).any()  # the rows hold boxes worth comparing

    def test_predict_route_lists_the_boxes_as_the_csv_does(self, served):
        rows = [3, 5]
        images = files("dense_shapes/images", served.raw["image_path"][rows])
        answer = predict_rows(served, [{"image_path": base64_of(image)} for image in images])
        for row, got in zip(rows, answer):
            for column in ("x_min", "y_min", "x_max", "y_max", "confidence", "class_name"):
                assert got[column] == served.csv[column][row], column


class TestSemanticSegmentation:
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("image_semantic_segmentation", tmp_path_factory)

    def test_masks_and_rles_equal_the_batch_job(self, served):
        rows = [1, 2, 7]
        images = files("dense_shapes/images", served.raw["image_path"][rows])
        got = infer(served, [bytes_input("image_path", images)])
        assert got["masks"].dtype == np.float16
        np.testing.assert_allclose(got["masks"], served.raw["masks"][rows], rtol=0, atol=ATOL)
        assert np.array_equal(got["original_image_shapes"], served.raw["original_image_shapes"][rows])
        rles = np.array(texts(got["rle_predictions"].ravel()), dtype=object).reshape(len(rows), -1)
        assert np.array_equal(rles, served.raw["rle_predictions"][rows])
        assert any(rle for rle in rles.ravel())  # not only empty masks
        with served.client() as client:
            assert client.get_model_metadata(served.name)["parameters"]["class_names"] == ["square", "circle"]

    def test_predict_route_answers_one_csv_row_per_class(self, served):
        images = files("dense_shapes/images", served.raw["image_path"][[2]])
        answer = predict_rows(served, [{"image_path": base64_of(images[0])}])
        expected = served.csv[served.csv["image_path"] == served.raw["image_path"][2]]
        assert [row["class_id"] for row in answer] == ["square", "circle"]
        assert [row["pred_rle_mask"] for row in answer] == list(expected["pred_rle_mask"])


class TestTextClassification:
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("text_classification", tmp_path_factory)

    def test_json_and_binary_text_equal_the_batch_job(self, served):
        rows = [0, 10, 50, 199]
        reviews = [text.encode("utf-8") for text in served.raw["review"][rows]]
        for binary in (False, True):
            got = infer(served, [bytes_input("review", reviews, binary=binary)], binary=binary)
            np.testing.assert_allclose(got["predictions"], served.raw["predictions"][rows], rtol=0, atol=ATOL)

    def test_text_that_is_not_utf8_is_refused_and_the_next_request_served(self, served):
        with pytest.raises(InferenceServerException, match=r"\[400\] row 1, review: text must be UTF-8"):
            infer(served, [bytes_input("review", [b"fine", b"\xff\xfe broken"])])
        got = infer(served, [bytes_input("review", [served.raw["review"][3].encode()])])
        np.testing.assert_allclose(got["predictions"], served.raw["predictions"][[3]], rtol=0, atol=ATOL)

    def test_predict_route_keeps_the_text_and_adds_the_csv_columns(self, served):
        answer = predict_rows(served, [{"review": served.raw["review"][4]}])
        assert answer[0]["review"] == served.raw["review"][4]
        assert answer[0]["pred_sentiment"] == served.csv["pred_sentiment"][4]


class TestTokenClassification:
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("text_token_classification", tmp_path_factory)

    def test_tags_and_probabilities_equal_the_batch_job(self, served):
        rows = [0, 1, 17, 42]
        sentences = [text.encode("utf-8") for text in served.raw["sentence"][rows]]
        got = infer(served, [bytes_input("sentence", sentences, binary=False)])
        for row, tags, probabilities in zip(rows, texts(got["predictions"]), texts(got["probabilities"])):
            assert json.loads(tags) == list(served.raw["predictions"][row])  # one JSON document per row
            values = np.array(json.loads(probabilities), dtype=np.float64)  # null: a word cut off (NaN in the pkl)
            np.testing.assert_allclose(values, served.raw["probabilities"][row], rtol=0, atol=ATOL)

    def test_predict_route_answers_space_separated_tags(self, served):
        answer = predict_rows(served, [{"sentence": served.raw["sentence"][7]}])
        assert answer[0]["pred_tags"] == served.csv["pred_tags"][7]


class TestAudioClassification:
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("audio_classification", tmp_path_factory)

    def test_wav_flac_and_ogg_files_equal_the_batch_job(self, served):
        names = served.raw["audio_path"]
        rows = list(range(len(names)))
        assert {Path(name).suffix for name in names} >= {".wav", ".flac", ".ogg"}
        clips = files("sounds/clips", names)
        for start in range(0, len(rows), 6):  # serve.max_batch_size is runtime.batch_size, 8
            got = infer(served, [bytes_input("audio_path", clips[start : start + 6])])
            expected = served.raw["predictions"][rows[start : start + 6]]
            np.testing.assert_allclose(got["predictions"], expected, rtol=0, atol=ATOL)

    def test_a_file_that_is_not_audio_is_refused(self, served):
        with pytest.raises(
            InferenceServerException, match=r"\[400\] row 0, audio_path <9 bytes>: not a readable audio"
        ):
            infer(served, [bytes_input("audio_path", [b"not sound"])])


class TestSpanPrediction:
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("text_span_prediction", tmp_path_factory)

    def test_question_and_context_inputs_give_the_batch_jobs_answers(self, served):
        rows = [0, 5, 33]
        questions = [text.encode() for text in served.raw["question"][rows]]
        contexts = [text.encode() for text in served.raw["context"][rows]]
        got = infer(served, [bytes_input("question", questions), bytes_input("context", contexts)])
        assert texts(got["predictions"]) == list(served.raw["predictions"][rows])
        top_k = [json.loads(document) for document in texts(got["predicted_answer_top_k"])]
        assert top_k == [list(answers) for answers in served.raw["predicted_answer_top_k"][rows]]


class TestMetricLearning:
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("image_metric_learning", tmp_path_factory)

    def test_embeddings_equal_the_batch_job_and_no_neighbours_are_answered(self, served):
        rows = [0, 4, 9]
        images = files("shapes/images", served.raw["image_path"][rows])
        got = infer(served, [bytes_input("image_path", images)])
        assert list(got) == ["embeddings"]  # neighbours need the whole split
        np.testing.assert_allclose(got["embeddings"], served.raw["embeddings"][rows], rtol=0, atol=ATOL)
        answer = predict_rows(served, [{"image_path": base64_of(images[1])}])
        np.testing.assert_allclose(answer[0]["embeddings"], served.raw["embeddings"][4], rtol=0, atol=ATOL)


class TestSequenceToSequence:
    """The generation loop runs two batches at once on the CPU: requests sent together still get their own rows."""

    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        yield from serve_example("text_sequence_to_sequence", tmp_path_factory, "serve.max_batch_size=4")

    def test_requests_sent_together_get_the_batch_jobs_translations(self, served):
        from concurrent.futures import ThreadPoolExecutor

        groups = [list(range(start, start + 3)) for start in range(0, 48, 3)]  # 16 requests of 3 rows

        def translate(rows: list[int]) -> list[str]:
            answer = predict_rows(served, [{"english": served.csv["english"][row]} for row in rows])
            return [row["pred_fictish"] for row in answer]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(translate, groups))
        for rows, answer in zip(groups, answers):
            assert answer == [served.csv["pred_fictish"][row] for row in rows]
