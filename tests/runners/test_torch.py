"""The torch backend: TorchScript, torch.export and Keras .h5 models against onnxruntime on the same model."""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
import sys

import numpy as np
import pytest
import torch

from predict.config import ProblemType
from predict.errors import ConfigError, ConversionError
from predict.pipeline import run_task
from predict.problems import PROBLEMS
from predict.runners.torch_spec import parse_input_spec
from predict.task import load_config
from tests.conftest import IMAGE_SIZE

# The tests make TorchScript files on purpose; torch 2.13 deprecates tracing and scripting.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

SPEC = f"image: float32[?, 3, {IMAGE_SIZE}, {IMAGE_SIZE}]"


class ScriptableLogits(torch.nn.Module):
    """conftest's TinyCNN without an activation, in a form `torch.jit.script` compiles (no None attribute)."""

    def __init__(self, tiny: torch.nn.Module) -> None:
        super().__init__()
        self.features, self.fc = tiny.features, tiny.fc

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(image)) * 4.0


def save_torch(module: torch.nn.Module, path, how: str, *, batch: int | None = None):
    """TorchScript (`trace`, `script`) or torch.export (`export`) file of `module`."""
    module.eval()
    example = torch.zeros(batch or 2, 3, IMAGE_SIZE, IMAGE_SIZE)
    if how == "trace":
        torch.jit.trace(module, example).save(str(path))
    elif how == "script":
        torch.jit.script(ScriptableLogits(module)).save(str(path))
    else:
        dynamic = None if batch else ({0: torch.export.Dim("batch")},)
        torch.export.save(torch.export.export(module, (example,), dynamic_shapes=dynamic), str(path))
    return path


def predictions(task) -> tuple[dict, object]:
    summary = run_task(task, progress=False, overwrite=True)
    with open(summary.files["pkl"], "rb") as handle:
        return pickle.load(handle), summary


def with_runtime(path, tmp_path, name: str, **runtime):
    """The task at `path` with runtime keys set and its own output folder."""
    overrides = [f"output.dir={tmp_path / name}"] + [f"runtime.{key}={value}" for key, value in runtime.items()]
    return load_config(path, overrides)


@pytest.mark.parametrize(
    ("how", "model_name"),
    [("trace", "softmax3"), ("script", "logits3"), ("export", "sigmoid3"), ("export", "logits3")],
)
def test_torch_matches_onnxruntime(how, model_name, torch_models, make_task, tmp_path):
    module, onnx_path = torch_models[model_name]
    suffix = ".pt2" if how == "export" else ".pt"
    torch_path = save_torch(module, tmp_path / f"{model_name}{suffix}", how)
    config = make_task(onnx_path)
    reference, ort_summary = predictions(with_runtime(config, tmp_path, "ort"))
    runtime = {"backend": "torch"} if how == "export" else {"backend": "torch", "input_spec": f"['{SPEC}']"}
    task = load_config(
        config,
        [f"model={torch_path}", f"output.dir={tmp_path / 'torch'}"] + [f"runtime.{k}={v}" for k, v in runtime.items()],
    )
    got, summary = predictions(task)
    assert summary.provider == "torch-cpu"
    np.testing.assert_allclose(got["predictions"], reference["predictions"], rtol=1e-4, atol=1e-5)
    assert got.keys() == reference.keys()
    # The graph's last op is read the same way on both backends: probabilities used as they are, logits activated.
    decision = [
        next(note for note in run.notes if note.startswith("output ")).split(": ", 1)[1]
        for run in (summary, ort_summary)
    ]
    assert decision[0] == decision[1]


def test_fixed_batch_program_is_cut_and_padded(torch_models, make_task, tmp_path):
    module, onnx_path = torch_models["fixed_batch4"]
    program = save_torch(module, tmp_path / "fixed.pt2", "export", batch=4)
    config = make_task(onnx_path, runtime={"batch_size": 7, "num_workers": 0})
    reference, _ = predictions(with_runtime(config, tmp_path, "ort"))
    got, summary = predictions(
        load_config(config, [f"model={program}", "runtime.backend=torch", f"output.dir={tmp_path / 't'}"])
    )
    assert any("fixed batch size of 4" in note for note in summary.notes)
    np.testing.assert_allclose(got["predictions"], reference["predictions"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_keras_h5_on_torch_matches_onnxruntime(keras_models, make_task, tmp_path):
    """The .h5 is exported by Keras 3 on torch in a child process (no TensorFlow), then run as a .pt2."""
    config = make_task(keras_models["sequential_cnn"])
    reference, _ = predictions(with_runtime(config, tmp_path, "ort"))
    got, summary = predictions(with_runtime(config, tmp_path, "torch", backend="torch"))
    assert summary.provider == "torch-cpu"
    assert summary.model.path.suffix == ".pt2" and summary.model.path.parent.name == "torch_cache"
    assert any("ends in Softmax" in note for note in summary.notes)
    np.testing.assert_allclose(got["predictions"], reference["predictions"], rtol=1e-4, atol=1e-5)


# Errors: wrong files and specs


def test_state_dict_is_refused(torch_models, make_task, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(torch_models["logits3"][0].state_dict(), path)
    task = load_config(make_task(path, runtime={"backend": "torch", "input_spec": [SPEC], "num_workers": 0}))
    with pytest.raises(ConfigError, match=r"weights.pt was written by torch.save \(a state_dict or a pickled module\)"):
        run_task(task, progress=False)


def test_file_that_is_not_an_archive_is_refused(make_task, tmp_path):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"not a model")
    task = load_config(make_task(path, runtime={"backend": "torch", "num_workers": 0}))
    with pytest.raises(ConfigError, match=r"model.pt2 is not a TorchScript or torch.export file \(not a zip archive\)"):
        run_task(task, progress=False)


def test_zip_that_is_not_a_model_is_refused(make_task, tmp_path):
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/readme.txt", "hello")
    task = load_config(make_task(path, runtime={"backend": "torch", "input_spec": [SPEC], "num_workers": 0}))
    with pytest.raises(ConfigError, match=r"model.pt is a zip archive but not a TorchScript or torch.export file"):
        run_task(task, progress=False)


def test_torchscript_needs_input_spec(torch_models, make_task, tmp_path):
    path = save_torch(torch_models["logits3"][0], tmp_path / "m.pt", "trace")
    with pytest.raises(ConfigError, match=r"runtime.input_spec is missing: TorchScript file m.pt does not record"):
        load_config(make_task(path, runtime={"backend": "torch"}))


def test_input_spec_names_must_match_forward(torch_models, make_task, tmp_path):
    path = save_torch(torch_models["logits3"][0], tmp_path / "m.pt", "trace")
    task = load_config(make_task(path, runtime={"backend": "torch", "input_spec": ["pixels: float32[?, 3, 16, 16]"]}))
    with pytest.raises(ConfigError, match=r"runtime.input_spec names pixels but m.pt's forward\(\) takes image"):
        run_task(task, progress=False)


def test_input_spec_shape_the_model_cannot_take(torch_models, make_task, tmp_path):
    path = save_torch(torch_models["logits3"][0], tmp_path / "m.pt", "trace")
    task = load_config(make_task(path, runtime={"backend": "torch", "input_spec": ["image: float32[?, 3, 16, 16, 2]"]}))
    with pytest.raises(
        ConfigError, match=r"model m.pt fails on a zero batch of its inputs \(image float32\[2, 3, 16, 16, 2\]\)"
    ):
        run_task(task, progress=False)


def test_input_spec_must_agree_with_a_program(torch_models, make_task, tmp_path):
    path = save_torch(torch_models["logits3"][0], tmp_path / "m.pt2", "export")
    task = load_config(make_task(path, runtime={"backend": "torch", "input_spec": ["image: float16[?, 3, 8, 16]"]}))
    with pytest.raises(
        ConfigError,
        match=(
            r"runtime.input_spec disagrees with m.pt2: 'image' dtype float16 != float32; "
            r"'image' shape \[\?, 3, 8, 16\]"
        ),
    ):
        run_task(task, progress=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "image float32[?, 3]",
            r"runtime.input_spec\[0\] 'image float32\[\?, 3\]': expected 'name: dtype\[d0, d1, ...\]'",
        ),
        ("image: float8[?, 3]", r"dtype must be one of float32, .* \(got 'float8'\)"),
        ("image: float32[?, 0]", r"each axis must be a size >= 1 or \? \(got '0'\)"),
        ("image: float32[]", r"give at least the batch axis"),
    ],
)
def test_bad_input_spec_text(text, message):
    with pytest.raises(ValueError, match=message):
        parse_input_spec(text, key="runtime.input_spec[0]")


def test_input_spec_syntax_is_checked_with_the_config(torch_models, make_task, tmp_path):
    path = save_torch(torch_models["logits3"][0], tmp_path / "m.pt", "trace")
    with pytest.raises(ConfigError, match=r"runtime.input_spec names image more than once"):
        load_config(make_task(path, runtime={"backend": "torch", "input_spec": [SPEC, SPEC]}))


def test_parsed_spec():
    spec = parse_input_spec(" tokens : int64[?, 40] ", key="k")
    assert (spec.name, spec.shape, spec.dtype) == ("tokens", (None, 40), np.dtype(np.int64))


def test_backend_and_file_must_fit(torch_models, make_task, tmp_path):
    onnx_path = torch_models["logits3"][1]
    with pytest.raises(
        ConfigError,
        match=(
            r"runtime.backend: torch runs TorchScript \(.pt, .pth, .ts\), .* not 'logits3.onnx'; "
            r"set runtime.backend: onnxruntime"
        ),
    ):
        load_config(make_task(onnx_path, runtime={"backend": "torch"}))
    with pytest.raises(ConfigError, match=r"runtime.input_spec is read only for TorchScript and .pt2 models"):
        load_config(make_task(onnx_path, runtime={"input_spec": [SPEC]}))
    program = save_torch(torch_models["logits3"][0], tmp_path / "m.pt2", "export")
    with pytest.raises(ConfigError, match=r"model m.pt2 is a PyTorch file: set runtime.backend: torch"):
        load_config(make_task(program))


def test_seq2seq_and_ray_actor_checks(torch_models, make_task, tmp_path):
    program = save_torch(torch_models["logits3"][0], tmp_path / "m.pt2", "export")
    task = load_config(
        make_task(
            program,
            runtime={"backend": "torch", "engine": "ray"} if importlib.util.find_spec("ray") else {"backend": "torch"},
        )
    )
    seq2seq = dataclasses.replace(task, problem_type=ProblemType.TEXT_SEQUENCE_TO_SEQUENCE)
    errors = PROBLEMS[seq2seq.problem_type].check(seq2seq)  # sequence to sequence's own checks
    assert "runtime.backend: torch does not run text_sequence_to_sequence yet; use onnxruntime" in errors
    if importlib.util.find_spec("ray"):
        assert "runtime.engine: ray does not run text_sequence_to_sequence yet; use local" in errors
    with pytest.raises(ConfigError, match=r"runtime.ray_actors must be >= 0 \(got -1\)"):
        load_config(make_task(program, runtime={"backend": "torch", "ray_actors": -1}))


def test_ray_engine_without_ray_is_a_config_error(torch_models, make_task, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "ray" else real(name, *rest))
    with pytest.raises(ConfigError, match=r"runtime.engine: ray needs Ray Data: pip install 'predict\[ray\]'"):
        load_config(make_task(torch_models["logits3"][1], runtime={"engine": "ray"}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_without_a_device(torch_models, make_task, tmp_path):
    program = save_torch(torch_models["logits3"][0], tmp_path / "m.pt2", "export")
    task = load_config(make_task(program, runtime={"backend": "torch", "device": "cuda", "num_workers": 0}))
    with pytest.raises(ConfigError, match=r"runtime.device: cuda, but this torch .* sees no CUDA device"):
        run_task(task, progress=False)


def test_h5_that_is_not_hdf5_fails_to_export(make_task, tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"not hdf5")
    task = load_config(make_task(path, runtime={"backend": "torch", "num_workers": 0}))
    with pytest.raises(ConversionError, match=r"model model.h5: export to torch failed: .*not an HDF5 file"):
        run_task(task, progress=False)


def test_converter_refuses_keras_on_another_backend(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from converters.keras_to_torch import _import_keras_on_torch, convert_keras_to_torch

    if keras.backend.backend() == "torch":
        pytest.skip("Keras runs on torch in this process")
    assert "keras" in sys.modules
    with pytest.raises(ConversionError, match=r"Keras is already imported here with the tensorflow backend"):
        _import_keras_on_torch()
    with pytest.raises(ConversionError, match=r"atol must be a finite number >= 0 \(got -1.0\)"):
        convert_keras_to_torch(tmp_path / "m.h5", tmp_path / "m.pt2", atol=-1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's answer to fp16")
def test_fp16_on_the_cpu_stays_float32(torch_models, tmp_path):
    from predict.config import Precision
    from predict.runners.torch import TorchRunner

    runner = TorchRunner(save_torch(torch_models["logits3"][0], tmp_path / "m.pt2", "export"), precision=Precision.FP16)
    assert runner.provider == "torch-cpu"
    assert "runtime.precision: fp16 is for CUDA; torch runs float32 on the CPU" in runner.notes
    assert runner.outputs[0].dtype == np.float32 and runner.outputs[0].shape == (None, 3)
