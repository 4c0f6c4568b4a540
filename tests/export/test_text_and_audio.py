"""Exported text graphs (token ids in) and audio graphs (waveform chunks in, log-mel in the graph) equal the
pipeline's pkl values on the same rows."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
from numpy.testing import assert_allclose

from predict.config import AudioPreprocessing, parse_section
from predict.data.spectrogram import MelFeatures
from predict.export.audio import log_mel
from predict.export.graph import GraphBuilder, load_model
from tests.export.helpers import CONFIGS, export, graph_batches, graph_outputs, metadata, op_domains, run_pipeline


@pytest.mark.parametrize("example", ["text_regression", "text_metric_learning"])
def test_text_graph_takes_token_ids_and_equals_the_pkl(example, tmp_path):
    config = CONFIGS / f"{example}.yaml"
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    key = "embeddings" if example.endswith("metric_learning") else "predictions"
    assert_allclose(graph_outputs(config, tmp_path / "out", graph)[key], pkl[key], atol=1e-5, rtol=0)
    assert json.loads(metadata(graph)["inputs"]) == {
        "input_ids": "int64[batch, sequence]",
        "attention_mask": "int64[batch, sequence]",
    }
    assert any("tokenisation" in item for item in json.loads(metadata(graph)["outside_graph"]))


@pytest.mark.slow
def test_text_classification_example_from_a_keras_model(tmp_path):
    config = CONFIGS / "text_classification.yaml"  # reviews_sentiment.h5, ids only (no mask input)
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    outputs = graph_outputs(config, tmp_path / "out", graph)
    assert_allclose(outputs["predictions"], pkl["predictions"], atol=1e-5, rtol=0)
    assert list(outputs["classes"]) == [pkl["labels"][i] for i in pkl["predictions"].argmax(axis=1)]
    assert json.loads(metadata(graph)["inputs"]) == {"input_ids": "int64[batch, 32]"}


def test_token_classification_graph_gives_per_token_argmax_and_the_pkl_word_probabilities(tmp_path):
    config = CONFIGS / "text_token_classification.yaml"
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    row = 0
    classes = list(pkl["labels"])
    for batch, outputs in graph_batches(config, tmp_path / "out", graph):
        probabilities = outputs["token_probabilities"]
        assert np.array_equal(outputs["token_class_ids"], probabilities.argmax(axis=2))
        assert_allclose(probabilities.sum(axis=2), 1.0, atol=1e-5)
        word_ids = batch.context.word_ids
        for slot in range(len(word_ids)):
            # Outside the graph: a word takes its first sub-token (the tokenizer's word ids say which).
            expected = pkl["probabilities"][row]
            words = np.full(expected.shape, np.nan, dtype=np.float32)
            for position, word in enumerate(word_ids[slot]):
                if word >= 0 and (position == 0 or word_ids[slot, position - 1] != word):
                    words[word] = probabilities[slot, position]
            assert_allclose(words, expected, atol=1e-5, rtol=0)  # NaN where both are cut off
            tags = [classes[i] if not np.isnan(p[0]) else "O" for i, p in zip(np.nan_to_num(words).argmax(1), words)]
            assert tags == list(pkl["predictions"][row])
            row += 1
    assert row == len(pkl["predictions"])
    assert op_domains(graph) == {""}


def test_audio_waveform_graph_equals_the_pkl(tmp_path):
    config = CONFIGS / "audio_regression.yaml"
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    assert_allclose(graph_outputs(config, tmp_path / "out", graph)["predictions"], pkl["predictions"], atol=1e-5)
    assert json.loads(metadata(graph)["inputs"]) == {
        "waveform": "float32[chunks, 8000]",
        "chunk_rows": "int64[chunks]",
    }


@pytest.mark.slow
def test_audio_classification_graph_computes_the_log_mel_and_averages_chunks(tmp_path):
    config = CONFIGS / "audio_classification.yaml"  # sounds_classifier.h5 on librosa log-mel features
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    found = graph_batches(config, tmp_path / "out", graph)
    assert max(int(batch.context.chunk_counts.max()) for batch, _ in found) > 1  # rows of several chunks
    predictions = np.concatenate([outputs["predictions"] for _, outputs in found])
    assert_allclose(predictions, pkl["predictions"], atol=1e-5, rtol=0)
    assert {"STFT", "MatMul", "Log"} <= {node.op_type for node in onnx.load(str(graph)).graph.node}
    assert op_domains(graph) == {""}


RECIPES = {
    "librosa": {},
    "librosa_top_db_normalized": {"top_db": 60.0, "feature_normalization": "per_example"},
    "torchaudio_reflect": {"feature_recipe": "torchaudio"},
    "edge_padding_magnitude": {"pad_mode": "edge", "spectrum_power": 1},
    "tf_signal": {"feature_recipe": "tf_signal", "window_size": 200},
    "log10_hamming": {"log_scale": "log10", "log_offset": 1e-6, "window": "hamming", "mel_norm": "none"},
}


@pytest.mark.parametrize("recipe", RECIPES, ids=list(RECIPES))
def test_log_mel_in_the_graph_equals_predict_spectrogram(recipe, tmp_path):
    raw = {"sample_rate": 8000, "mel_frequency_bins": 40, "window_size": 256, "hop_size": 128, **RECIPES[recipe]}
    errors: list[str] = []
    preprocessing = parse_section(AudioPreprocessing, raw, key="preprocessing", base_dir=tmp_path, errors=errors)
    assert not errors
    spectrogram = preprocessing.spectrogram_recipe()
    # A graph of the front end alone: waveform in, log-mel out (around a do-nothing model).
    identity = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "identity",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 17)],
    )
    onnx.save(identity, str(tmp_path / "identity.onnx"))
    builder = GraphBuilder(load_model(tmp_path / "identity.onnx"))
    waveform = builder.input("waveform", np.float32, ["chunks", "samples"])
    builder.feed_model_input("x", log_mel(builder, waveform, spectrogram))
    builder.mark_model()
    graph = builder.build([("features", builder.model_output("y"), np.float32, ["chunks", "frames", "mels"])])
    rng = np.random.default_rng(0)
    chunks = (rng.standard_normal((3, 4000)) * np.array([[0.5], [0.01], [0.0]])).astype(np.float32)  # one silent
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (features,) = session.run(None, {"waveform": chunks})
    expected = MelFeatures(spectrogram)(chunks).transpose(0, 2, 1)
    assert features.shape == expected.shape
    assert_allclose(features, expected, atol=1e-4, rtol=1e-5)
