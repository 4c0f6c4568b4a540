"""Exported graphs of image classification, regression, metric learning and array classification equal the
pipeline's pkl values on the same rows (1e-5), with their metadata."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from numpy.testing import assert_allclose

import predict
from predict.cli import main
from tests.export.helpers import CONFIGS, export, graph_outputs, metadata, op_domains, run_pipeline

CLASSIFICATION_CASES = {
    # categorical label column, logits: the head applies softmax
    "categorical_logits": ("logits3", ["label"], {}),
    # one-hot columns, model ends in softmax: used as probabilities
    "columns_softmax": ("softmax3", ["is_cat", "is_dog", "is_fox"], {}),
    # multi-label: sigmoid applied by the head
    "columns_sigmoid": ("logits3", ["is_cat", "is_dog", "is_fox"], {"activation": "sigmoid"}),
    # binary, two-way softmax: the probability of class 1 is kept
    "binary_softmax2": ("softmax2", ["is_bright"], {}),
    # binary, one logit: sigmoid
    "binary_logit": ("logit1", ["is_bright"], {}),
}


@pytest.mark.parametrize("case", CLASSIFICATION_CASES, ids=list(CLASSIFICATION_CASES))
def test_image_classification_graph_equals_the_pkl(case, torch_models, make_task, tmp_path):
    model_name, label_columns, head = CLASSIFICATION_CASES[case]
    config = make_task(torch_models[model_name][1], label_columns=label_columns, head=head)
    out = tmp_path / "out"
    pkl = run_pipeline(config, out)
    graph = export(config, out, tmp_path / "model.onnx")
    outputs = graph_outputs(config, out, graph)
    assert_allclose(outputs["predictions"], pkl["predictions"], rtol=0, atol=1e-5)
    if "class_ids" in outputs:
        assert np.array_equal(outputs["class_ids"], pkl["predictions"].argmax(axis=1))
        assert list(outputs["classes"]) == [pkl["labels"][i] for i in pkl["predictions"].argmax(axis=1)]
    else:
        assert case.startswith(("binary", "columns_sigmoid"))  # no single class to name
    assert op_domains(graph) == {""}  # plain ONNX ops, no custom-op library


def test_metadata_names_what_a_caller_needs(torch_models, make_task, tmp_path):
    model_path = torch_models["logits3"][1]
    config = make_task(model_path, label_columns=["label"])
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    props = metadata(graph)
    assert props["problem_type"] == "image_classification"
    assert json.loads(props["class_names"]) == ["cat", "dog", "fox"]
    assert json.loads(props["label_columns"]) == ["label"]
    assert props["image_size"] == "[16, 16]" and props["resize_mode"] == "resize"
    assert props["source_model_sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert props["predict_version"] == predict.__version__
    assert json.loads(props["inputs"]) == {"image": "uint8[batch, 16, 16, 3]"}
    assert set(json.loads(props["outputs"])) == {"predictions", "class_ids", "classes"}
    assert json.loads(props["parity"])["rows"] == 20
    assert any("resized to 16x16" in item for item in json.loads(props["outside_graph"]))
    opset = next(entry.version for entry in onnx.load(str(graph)).opset_import if entry.domain == "")
    assert opset >= 17


def test_image_regression_example(tmp_path):
    config = CONFIGS / "image_regression.yaml"
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    assert_allclose(
        graph_outputs(config, tmp_path / "out", graph)["predictions"], pkl["predictions"], atol=1e-5, rtol=0
    )


def test_image_metric_learning_example_gives_l2_normalised_embeddings(tmp_path):
    config = CONFIGS / "image_metric_learning.yaml"
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    embeddings = graph_outputs(config, tmp_path / "out", graph)["embeddings"]
    assert_allclose(embeddings, pkl["embeddings"], atol=1e-5, rtol=0)
    assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # Neighbours stay outside the graph; a dot product of the exported embeddings finds the pkl's.
    similarities = embeddings @ embeddings.T
    np.fill_diagonal(similarities, -np.inf)
    assert np.array_equal(similarities.argmax(axis=1), pkl["similar_images"][:, 0])


@pytest.mark.slow
def test_array_classification_example_from_a_keras_model(tmp_path):
    config = CONFIGS / "array_classification.yaml"  # digits_mlp.h5: converted once, cached in output.dir
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    outputs = graph_outputs(config, tmp_path / "out", graph)
    assert_allclose(outputs["predictions"], pkl["predictions"], atol=1e-5, rtol=0)
    assert np.array_equal(outputs["class_ids"], pkl["predictions"].argmax(axis=1))
    assert json.loads(metadata(graph)["inputs"]) == {"inputs": "float32[batch, 64]"}


def test_a_graph_that_disagrees_is_not_written(torch_models, make_task, tmp_path, monkeypatch, capsys):
    from predict.export import outputs

    original = outputs.ClassificationExport.add

    def without_activation(self, builder):  # a post-processing that forgets the head's softmax
        add_node = builder.op

        def op(op_type, *inputs, **attributes):
            if op_type == "Softmax":
                return add_node("Identity", *inputs)
            return add_node(op_type, *inputs, **attributes)

        builder.op = op
        return original(self, builder)

    monkeypatch.setattr(outputs.ClassificationExport, "add", without_activation)
    config = make_task(torch_models["logits3"][1], label_columns=["label"])
    target = tmp_path / "model.onnx"
    code = main(["export", "--config", str(config), "-o", str(target)])
    assert code == 2
    assert not target.exists()
    error = capsys.readouterr().err
    assert "error: the exported graph disagrees with the pipeline on 20 rows; nothing was written" in error
    assert "predictions differ by up to" in error


def test_rows_limits_the_comparison(torch_models, make_task, tmp_path):
    config = make_task(torch_models["logits3"][1], label_columns=["label"])
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx", extra=("--rows", "5"))
    assert json.loads(metadata(graph)["parity"])["rows"] == 5


def test_problem_types_without_export_are_named(tmp_path, capsys):
    config = CONFIGS / "text_span_prediction.yaml"
    code = main(["export", "--config", str(config), "-o", str(tmp_path / "x.onnx"), "--set", f"output.dir={tmp_path}"])
    assert code == 2
    error = capsys.readouterr().err
    assert "error: problem_type: text_span_prediction cannot be exported yet (exported: " in error
    assert not (tmp_path / "x.onnx").exists()


def test_a_model_below_opset_17_is_converted_up(torch_models, make_task, tmp_path):
    import torch

    from tests.conftest import IMAGE_SIZE

    module = torch_models["logits3"][0]
    path = tmp_path / "opset13.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),),
        str(path),
        input_names=["image"],
        output_names=["scores"],
        dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    config = make_task(path, label_columns=["label"])
    pkl = run_pipeline(config, tmp_path / "out")
    graph = export(config, tmp_path / "out", tmp_path / "model.onnx")
    assert metadata(graph)["opset"] == "17"
    assert_allclose(graph_outputs(config, tmp_path / "out", graph)["predictions"], pkl["predictions"], atol=1e-5)


def test_a_fixed_batch_model_and_zero_rows_are_refused(torch_models, make_task, tmp_path, capsys):
    config = make_task(torch_models["fixed_batch4"][1], label_columns=["label"])
    assert main(["export", "--config", str(config), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "has a fixed batch size of 4; export needs a dynamic batch axis" in capsys.readouterr().err
    config = make_task(torch_models["logits3"][1], label_columns=["label"])
    assert main(["export", "--config", str(config), "-o", str(tmp_path / "x.onnx"), "--rows", "0"]) == 2
    assert "error: export compares the graph with the pipeline on the task's rows: --rows must be >= 1" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "x.onnx").exists()
