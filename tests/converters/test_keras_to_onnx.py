"""converters.keras_to_onnx on real Keras models: parity, dynamic batch, names, report, CLI, errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from numpy.testing import assert_allclose

from converters.keras_to_onnx import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ConversionReport,
    convert_keras_to_onnx,
    format_report,
    main,
)
from predict.errors import ConversionError
from tests.converters.conftest import ROWS, SavedModel, model_config, subprocess_env

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

# fixture name -> (ONNX input names, ONNX output names) the converter must produce
EXPECTED_NAMES = {
    "keras_cnn": (("image",), ("output_0",)),
    "keras_mlp": (("x",), ("output_0",)),
    "keras_two_outputs": (("features",), ("cls", "reg")),
    "keras_text_lstm": (("tokens",), ("labels",)),
    "keras_two_inputs": (("features", "tokens"), ("score",)),
    "keras_2_text": (("tokens",), ("topic",)),
    "keras_2_fallback": (("features", "ids"), ("value",)),
}


@dataclass(frozen=True)
class Converted:
    fixture: str
    saved: SavedModel
    report: ConversionReport


@pytest.fixture(scope="session", params=list(EXPECTED_NAMES))
def converted(request, tmp_path_factory) -> Converted:
    """Each test model converted once with the default settings."""
    saved = request.getfixturevalue(request.param)
    onnx_path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    return Converted(request.param, saved, convert_keras_to_onnx(saved.h5_path, onnx_path))


def _session(path: Path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- conversion results ------------------------------------------------------------------------


def test_onnx_matches_keras_on_fresh_inputs_at_two_batch_sizes(converted):
    session = _session(converted.report.onnx_path)
    for rows in (ROWS, 1):
        feeds = {name: array[:rows] for name, array in converted.saved.inputs.items()}
        outputs = session.run(None, feeds)
        assert len(outputs) == len(converted.saved.expected)
        for (name, expected), got in zip(converted.saved.expected.items(), outputs, strict=True):
            assert got.shape == expected[:rows].shape, name
            assert_allclose(got, expected[:rows], rtol=1e-4, atol=1e-5, err_msg=f"{converted.fixture}:{name}")


def test_onnx_keeps_names_and_has_symbolic_batch_dimension(converted):
    input_names, output_names = EXPECTED_NAMES[converted.fixture]
    graph = onnx.load(converted.report.onnx_path).graph
    assert tuple(value.name for value in graph.input) == input_names
    assert tuple(value.name for value in graph.output) == output_names
    for value in list(graph.input) + list(graph.output):
        batch = value.type.tensor_type.shape.dim[0]
        assert not batch.HasField("dim_value"), f"{value.name} has a fixed batch size {batch.dim_value}"
        assert batch.dim_param == "batch"


def test_report_fields(converted):
    report, saved = converted.report, converted.saved
    input_names, output_names = EXPECTED_NAMES[converted.fixture]
    assert report.keras_version.split(".")[0] == saved.keras_version_major
    assert report.input_names == input_names
    assert report.output_names == output_names
    assert tuple(output.name for output in report.parity) == output_names
    assert (report.atol, report.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL)
    assert 0 < report.seconds < 120
    assert report.onnx_path.is_file()
    assert not list(report.onnx_path.parent.glob(".*.tmp")), "temp file left behind"
    for output in report.parity:
        assert output.failing_elements == 0
        assert 0 <= output.max_abs_diff <= report.atol + report.rtol * output.max_abs_reference
        assert output.max_abs_reference > 0.01, "trivial output: parity would prove nothing"
        assert output.max_rel_diff == pytest.approx(output.max_abs_diff / output.max_abs_reference)
    assert report.max_abs_diff == max(output.max_abs_diff for output in report.parity)


def test_format_report_lists_every_output(converted):
    text = format_report(converted.report)
    assert str(converted.report.onnx_path) in text
    assert f"<= {DEFAULT_ATOL:g} + {DEFAULT_RTOL:g} * |keras|" in text
    assert f"Keras {converted.report.keras_version}" in text
    for output in converted.report.parity:
        assert f"{output.name}  max abs diff {output.max_abs_diff:.3g}" in text


def test_same_seed_gives_same_report(keras_mlp, tmp_path):
    first = convert_keras_to_onnx(keras_mlp.h5_path, tmp_path / "a.onnx", seed=7, parity_batch_size=3)
    second = convert_keras_to_onnx(keras_mlp.h5_path, tmp_path / "b.onnx", seed=7, parity_batch_size=3)
    assert first.parity == second.parity
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


# --- Keras 2 files -----------------------------------------------------------------------------


def test_keras_2_rnn_config_is_patched_in_a_copy_only(keras_2_text, tmp_path):
    before = _sha256(keras_2_text.h5_path)
    assert '"time_major": false' in str(model_config(keras_2_text.h5_path)).replace("False", "false").replace("'", '"')
    convert_keras_to_onnx(keras_2_text.h5_path, tmp_path / "k2.onnx")
    assert _sha256(keras_2_text.h5_path) == before


def test_keras_2_fallback_file_really_needs_tf_keras(keras_2_fallback):
    import keras

    with pytest.raises(ValueError, match="ThresholdedReLU"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 warns about the Keras 2 `input_dim` argument
        keras.models.load_model(keras_2_fallback.h5_path, compile=False)


# --- command line ------------------------------------------------------------------------------


def test_main_prints_report_and_defaults_output_next_to_input(keras_mlp, tmp_path, capsys):
    h5_path = tmp_path / "regressor.h5"
    h5_path.write_bytes(keras_mlp.h5_path.read_bytes())
    assert main([str(h5_path), "--atol", "1e-3", "--opset", "15"]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "regressor.onnx").is_file()
    assert onnx.load(tmp_path / "regressor.onnx").opset_import[0].version == 15
    assert "output_0  max abs diff" in captured.out
    assert "<= 0.001 + 0.001 * |keras|" in captured.out
    assert captured.err == ""


def test_main_prints_one_error_line_and_returns_2(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    assert main([str(missing), "-o", str(tmp_path / "out.onnx")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {missing}: file not found\n"


def test_main_debug_prints_the_traceback_first(tmp_path, capsys):
    assert main([str(tmp_path / "missing.h5"), "--debug"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("Traceback")
    assert lines[-1].startswith("error: ") and lines[-1].endswith("file not found")


def _run_cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom converters.keras_to_onnx import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=subprocess_env(), capture_output=True, text=True, timeout=120
    )


def test_import_is_cheap():
    heavy = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "h5py")
    code = f"import sys, converters.keras_to_onnx\nprint([m for m in {heavy!r} if m in sys.modules])"
    completed = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_cli_in_a_subprocess_writes_only_the_error_line(unsupported_op_h5, tmp_path):
    """The inference core relays stderr: TensorFlow's import noise must not reach it."""
    completed = subprocess.run(
        [sys.executable, "-m", "converters.keras_to_onnx", str(unsupported_op_h5), "-o", str(tmp_path / "x.onnx")],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    # The custom layer is registered in this test process only, not in the child.
    assert lines[0].startswith(f"error: {unsupported_op_h5}: Keras ")
    assert "BesselI0e" in lines[0]
    assert not (tmp_path / "x.onnx").exists()


def test_missing_tensorflow_names_the_install_command(keras_mlp, tmp_path):
    completed = _run_cli(
        str(keras_mlp.h5_path), "-o", str(tmp_path / "x.onnx"), prelude="import sys; sys.modules['tensorflow'] = None"
    )
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        "error: TensorFlow and tf2onnx are needed to convert Keras models (tensorflow is not installed): "
        "pip install 'predict[convert]'"
    ]


# --- errors ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def unsupported_op_h5(tmp_path_factory) -> Path:
    """A model whose registered custom layer calls tf.math.bessel_i0e, which tf2onnx 1.17 cannot convert."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="predict_tests")
    class BesselI0e(keras.layers.Layer):
        def call(self, inputs):
            return tf.math.bessel_i0e(inputs)

    features = keras.Input((4,), name="x")
    model = keras.Model(features, keras.layers.Dense(1)(BesselI0e()(keras.layers.Dense(4)(features))))
    path = tmp_path_factory.mktemp("unsupported") / "bessel.h5"
    model.save(path)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(ConversionError, match=r"nope\.h5: file not found"):
        convert_keras_to_onnx(tmp_path / "nope.h5", tmp_path / "out.onnx")


def test_text_file_named_h5(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("this is not a model\n")
    with pytest.raises(ConversionError, match=r"model\.h5: not an HDF5 file; expected a Keras model saved with"):
        convert_keras_to_onnx(path, tmp_path / "out.onnx")


def test_truncated_h5(keras_cnn, tmp_path):
    content = keras_cnn.h5_path.read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(ConversionError, match=r"cut\.h5: cannot read the HDF5 file, it is truncated or corrupt \("):
        convert_keras_to_onnx(path, tmp_path / "out.onnx")


def test_weights_only_h5(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    with pytest.raises(ConversionError, match=r"holds weights only, no model config.*model\.save\('model\.h5'\)"):
        convert_keras_to_onnx(path, tmp_path / "out.onnx")


def test_keras_3_archive_named_h5(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "model.keras")
    path = tmp_path / "model.h5"
    (tmp_path / "model.keras").rename(path)
    with pytest.raises(ConversionError, match=r"is a zip archive \(a Keras 3 '\.keras' file\?\), not HDF5"):
        convert_keras_to_onnx(path, tmp_path / "out.onnx")


def test_parity_failure_names_output_and_leaves_no_file(keras_cnn, tmp_path):
    reference = convert_keras_to_onnx(keras_cnn.h5_path, tmp_path / "ok.onnx")
    assert reference.max_abs_diff > 0, "need a model whose ONNX graph differs from Keras in the last bits"
    target = tmp_path / "strict.onnx"
    with pytest.raises(
        ConversionError,
        match=r"cnn\.h5: ONNX output differs from Keras by more than atol=1e-15 \+ rtol=0 \* \|keras\|: "
        r"'output_0' max abs diff .* element\(s\) out of tolerance",
    ):
        convert_keras_to_onnx(keras_cnn.h5_path, target, atol=1e-15, rtol=0.0)
    assert not target.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ok.onnx"]


def test_op_without_onnx_equivalent(unsupported_op_h5, tmp_path):
    target = tmp_path / "out.onnx"
    with pytest.raises(ConversionError, match=r"tf2onnx cannot convert TensorFlow op\(s\) BesselI0e to ONNX opset 17"):
        convert_keras_to_onnx(unsupported_op_h5, target)
    assert not target.exists()


def test_lambda_layer_is_refused(tmp_path):
    import keras

    features = keras.Input((3,), name="x")
    model = keras.Model(features, keras.layers.Lambda(lambda tensor: tensor * 2.0)(features))
    path = tmp_path / "lambda.h5"
    model.save(path)
    with pytest.raises(ConversionError, match=r"Lambda layer holding Python bytecode.*--allow-unsafe-deserialization"):
        convert_keras_to_onnx(path, tmp_path / "out.onnx")


def test_output_folder_must_exist(keras_mlp, tmp_path):
    with pytest.raises(ConversionError, match=r"output folder .*no_such_folder does not exist"):
        convert_keras_to_onnx(keras_mlp.h5_path, tmp_path / "no_such_folder" / "out.onnx")


def test_output_must_not_overwrite_the_input(keras_mlp, tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(keras_mlp.h5_path.read_bytes())
    with pytest.raises(ConversionError, match=r"output path is the input \.h5 file"):
        convert_keras_to_onnx(path, path)


def test_bad_arguments_are_reported_together(keras_mlp, tmp_path):
    with pytest.raises(
        ConversionError, match=r"atol must be a finite number >= 0 \(got -1\.0\); parity_batch_size must be >= 2"
    ):
        convert_keras_to_onnx(keras_mlp.h5_path, tmp_path / "out.onnx", atol=-1.0, parity_batch_size=1)


def test_opset_out_of_range(keras_mlp, tmp_path):
    with pytest.raises(ConversionError, match=r"opset must be between 7 and \d+ for tf2onnx .* \(got 99\)"):
        convert_keras_to_onnx(keras_mlp.h5_path, tmp_path / "out.onnx", opset=99)
