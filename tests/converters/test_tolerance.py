"""The parity tolerance: np.allclose semantics, abs/rel/argmax figures, and real conversion bugs caught."""

from __future__ import annotations

import numpy as np
import pytest

from converters.keras_to_onnx import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    _check_parity,
    compare_output,
    convert_keras_to_onnx,
    format_report,
)
from predict.errors import ConversionError

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("tensorflow")


def test_compare_output_is_np_allclose_element_wise():
    expected = np.array([[0.0, 10.0, -200.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    # Each element's allowance is atol + rtol * |expected|: 1e-3, 1.1e-2, 0.201 at atol = rtol = 1e-3.
    within = expected + np.array([[9e-4, 1.0e-2, -0.2], [0, 0, 0]], dtype=np.float32)
    parity = compare_output("x", expected, within, atol=1e-3, rtol=1e-3)
    assert parity.failing_elements == 0
    assert np.allclose(within, expected, rtol=1e-3, atol=1e-3)
    beyond = expected + np.array([[2e-3, 0, 0], [0, 0, 0]], dtype=np.float32)  # at an element near zero
    parity = compare_output("x", expected, beyond, atol=1e-3, rtol=1e-3)
    assert parity.failing_elements == 1
    assert parity.max_abs_diff == pytest.approx(2e-3, rel=1e-3)
    assert parity.max_rel_diff == pytest.approx(2e-3 / 200, rel=1e-3)  # relative to the output's scale
    assert parity.argmax_agreement == 1.0


def test_compare_output_counts_argmax_agreement_and_nan():
    expected = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 5.0], [2.0, 1.0]])
    got = np.array([[1.0, 2.0], [1.0, 3.0], [0.0, 5.0], [2.0, 1.0]])
    assert compare_output("x", expected, got).argmax_agreement == 0.75
    assert compare_output("x", expected[:, :1], got[:, :1]).argmax_agreement is None  # one value per row
    nan = np.array([[np.nan, 1.0]])
    assert compare_output("x", nan, nan).failing_elements == 0
    assert compare_output("x", np.array([[0.0, 1.0]]), nan).failing_elements == 1


def _session(proto):
    return onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sensitive_cnn(tmp_path_factory):
    """A CNN whose logits depend on every pixel's place (Flatten, no pooling), with inputs and Keras logits.

    A bug must move outputs by more than float32 noise to be caught, so the model's outputs must vary
    with the input: the session's small trained CNN gives near-uniform probabilities (about 0.33 each,
    varying by 3e-3 across images), on which even a constant would pass any useful tolerance.
    """
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    image = keras.Input((12, 12, 3), name="image")
    hidden = layers.Conv2D(8, 3, activation="relu")(image)
    hidden = layers.Conv2D(8, 3, activation="relu")(hidden)
    model = keras.Model(image, layers.Dense(4, name="logits")(layers.Flatten()(hidden)))
    path = tmp_path_factory.mktemp("sensitive") / "cnn.h5"
    model.save(path)
    inputs = {"image": np.random.default_rng(0).random((6, 12, 12, 3), dtype=np.float32)}
    return path, inputs, {"logits": model.predict(inputs["image"], verbose=0)}


@pytest.fixture(scope="module")
def converted_cnn(sensitive_cnn, tmp_path_factory):
    report = convert_keras_to_onnx(sensitive_cnn[0], tmp_path_factory.mktemp("tolerance") / "cnn.onnx")
    return report, onnx.load(report.onnx_path)


def test_float32_noise_passes_and_the_report_shows_every_figure(converted_cnn, sensitive_cnn):
    report, proto = converted_cnn
    _, inputs, expected = sensitive_cnn
    assert (report.atol, report.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL)
    _check_parity(_session(proto), inputs, expected, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, h5_path="cnn.h5")
    text = format_report(report)
    assert f"|onnx - keras| <= {DEFAULT_ATOL:g} + {DEFAULT_RTOL:g} * |keras|" in text
    assert "max abs diff" in text and "max rel diff" in text and "argmax agreement" in text


def _swap_height_and_width(proto) -> None:
    """A layout bug: the NHWC -> NCHW transpose of the input made NWHC -> NCWH (same shape on a square image)."""
    graph_input = proto.graph.input[0].name
    transpose = next(node for node in proto.graph.node if node.op_type == "Transpose" and graph_input in node.input)
    perm = next(attribute for attribute in transpose.attribute if attribute.name == "perm")
    assert list(perm.ints) == [0, 3, 1, 2]
    perm.ints[:] = [0, 3, 2, 1]


def _drop_first_relu(proto) -> None:
    """A dropped layer: the first Relu's consumers read its input instead."""
    relu = next(node for node in proto.graph.node if node.op_type == "Relu")
    for node in proto.graph.node:
        node.input[:] = [relu.input[0] if name == relu.output[0] else name for name in node.input]
    proto.graph.node.remove(relu)


@pytest.mark.parametrize("corrupt", [_swap_height_and_width, _drop_first_relu], ids=["layout", "dropped_layer"])
def test_a_real_conversion_bug_fails_the_default_tolerance(converted_cnn, sensitive_cnn, corrupt):
    _, proto = converted_cnn
    _, inputs, expected = sensitive_cnn
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    corrupt(broken)
    onnx.checker.check_model(broken)
    with pytest.raises(
        ConversionError, match=r"cnn\.h5: ONNX output differs from Keras by more than atol=.* \* \|keras\|: 'logits'"
    ):
        _check_parity(_session(broken), inputs, expected, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, h5_path="cnn.h5")
