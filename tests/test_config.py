"""load_config: every problem named by key, all of them in one error, before any work."""

from __future__ import annotations

import pytest

from predict.config import Device, Interpolation, ProblemType, Split
from predict.errors import ConfigError
from predict.task import load_config
from tests.conftest import write_config


@pytest.fixture
def valid(tmp_path, image_folder, torch_models):
    model = torch_models["logits3"][1]
    return {
        "problem_type": "image_classification",
        "model": str(model),
        "data": {
            "dataframe": str(image_folder / "labels.csv"),
            "data_folder": str(image_folder),
            "image_column": "image_path",
            "label_columns": ["label"],
        },
    }


def load(tmp_path, config, *overrides):
    return load_config(write_config(tmp_path / "task.yaml", config), overrides)


def test_defaults_and_types(tmp_path, valid):
    task = load(tmp_path, valid)
    assert task.problem_type is ProblemType.IMAGE_CLASSIFICATION
    assert task.data.split is Split.VALIDATION
    assert task.data.label_columns == ("label",)
    assert task.runtime.batch_size == 32 and task.runtime.device is Device.AUTO
    assert task.preprocessing.interpolation is Interpolation.BILINEAR
    assert task.output_dir == tmp_path / "runs" / "task"
    assert task.head.activation == "auto"
    with pytest.raises(AttributeError):
        task.runtime.batch_size = 1  # frozen: nothing writes to the config after load


def test_relative_paths_resolve_against_the_config_folder(tmp_path, valid, image_folder):
    valid["data"]["dataframe"] = "labels.csv"
    valid["output"] = {"dir": "out"}
    task = load_config(write_config(image_folder / "relative.yaml", valid))
    assert task.data.dataframe == image_folder / "labels.csv"
    assert task.output_dir == image_folder / "out"


def test_set_overrides_any_key(tmp_path, valid):
    task = load(tmp_path, valid, "runtime.batch_size=64", "data.split=test", "preprocessing.image_size=[8, 8]")
    assert task.runtime.batch_size == 64
    assert task.data.split is Split.TEST
    assert task.preprocessing.image_size == (8, 8)


def test_unknown_key_suggests_the_right_one(tmp_path, valid):
    valid["runtime"] = {"batch_sise": 4}
    with pytest.raises(ConfigError, match=r"task.yaml: unknown key runtime.batch_sise: did you mean 'batch_size'\?"):
        load(tmp_path, valid)


def test_unknown_top_level_key(tmp_path, valid):
    valid["preprocesing"] = {}
    with pytest.raises(ConfigError, match=r"unknown key preprocesing: did you mean 'preprocessing'\?"):
        load(tmp_path, valid)


def test_missing_keys(tmp_path, valid):
    del valid["model"]
    del valid["data"]["dataframe"]
    with pytest.raises(ConfigError, match=r"model is missing") as caught:
        load(tmp_path, valid)
    assert "data.dataframe is missing" in str(caught.value)


def test_wrong_types_are_named_not_coerced(tmp_path, valid):
    valid["runtime"] = {"batch_size": "64"}
    with pytest.raises(ConfigError, match=r"runtime.batch_size must be an integer \(got '64'\)"):
        load(tmp_path, valid)


def test_enum_typo_gets_a_suggestion(tmp_path, valid):
    valid["data"]["split"] = "valdation"
    with pytest.raises(
        ConfigError,
        match=r"data.split must be one of validation, test \(got 'valdation'\); did you mean 'validation'\?",
    ):
        load(tmp_path, valid)


def test_every_problem_type_has_a_head():
    from predict.problems import PROBLEMS

    assert len(PROBLEMS) == 16 and set(PROBLEMS) == set(ProblemType)
    assert all(spec.problem_type is problem_type for problem_type, spec in PROBLEMS.items())


def test_problem_type_typo_lists_the_choices(tmp_path, valid):
    valid["problem_type"] = "image_clasification"
    with pytest.raises(
        ConfigError,
        match=(
            r"problem_type must be one of image_regression, .*\(got 'image_clasification'\); "
            r"did you mean 'image_classification'\?"
        ),
    ):
        load(tmp_path, valid)


def test_ranges(tmp_path, valid):
    with pytest.raises(ConfigError, match=r"runtime.batch_size must be >= 1 \(got 0\)"):
        load(tmp_path, valid, "runtime.batch_size=0")
    with pytest.raises(ConfigError, match=r"preprocessing.std must not contain 0"):
        load(tmp_path, valid, "preprocessing.std=[1, 0, 1]")


def test_missing_files(tmp_path, valid):
    valid["model"] = str(tmp_path / "nope.onnx")
    valid["data"]["dataframe"] = str(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match=r"model file not found: .*nope.onnx") as caught:
        load(tmp_path, valid)
    assert "data.dataframe file not found" in str(caught.value)


def test_missing_column_suggests_the_closest(tmp_path, valid):
    valid["data"]["image_column"] = "image_pth"
    with pytest.raises(
        ConfigError, match=r"data.image_column: column 'image_pth' is not in labels.csv .*did you mean 'image_path'\?"
    ):
        load(tmp_path, valid)


def test_validation_split_needs_its_label_columns(tmp_path, valid):
    valid["data"]["label_columns"] = ["lable"]
    with pytest.raises(ConfigError, match=r"data.label_columns: column 'lable' is not in labels.csv"):
        load(tmp_path, valid)


def test_all_problems_in_one_error(tmp_path, valid):
    valid["runtime"] = {"batch_size": 0, "device": "gpu"}
    valid["head"] = {"activaton": "softmax"}
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, valid)
    lines = str(caught.value).splitlines()
    assert any("runtime.device must be one of auto, cpu, cuda" in line for line in lines)
    assert any("unknown key head.activaton: did you mean 'activation'?" in line for line in lines)
    assert all(line.startswith("task.yaml: ") for line in lines)


def test_boolean_strings_and_bad_yaml(tmp_path, valid):
    path = tmp_path / "broken.yaml"
    path.write_text("problem_type: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_set_needs_key_equals_value(tmp_path, valid):
    with pytest.raises(ConfigError, match=r"--set 'runtime.batch_size': expected KEY=VALUE"):
        load(tmp_path, valid, "runtime.batch_size")


def test_wrong_model_suffix(tmp_path, valid):
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    valid["model"] = str(other)
    with pytest.raises(ConfigError, match=r"model must be one of .onnx, .h5, .hdf5 \(got 'model.pt'\)"):
        load(tmp_path, valid)


def test_model_options_resolve_against_the_config_folder(tmp_path, valid, keras_models):
    (tmp_path / "my_layers.py").write_text("import keras\n")
    valid["model"] = str(keras_models["sequential_cnn"])
    valid["model_options"] = {"custom_objects": "my_layers.py", "allow_unsafe_deserialization": True}
    task = load(tmp_path, valid)
    assert task.model_options.custom_objects == tmp_path / "my_layers.py"
    assert task.model_options.allow_unsafe_deserialization is True


def test_model_options_errors(tmp_path, valid, keras_models):
    (tmp_path / "layers.txt").write_text("")
    valid["model_options"] = {"custom_object": "my_layers.py"}
    with pytest.raises(ConfigError, match=r"unknown key model_options\.custom_object: did you mean 'custom_objects'\?"):
        load(tmp_path, valid)
    valid["model_options"] = {"custom_objects": "missing.py", "allow_unsafe_deserialization": "yes"}
    with pytest.raises(ConfigError) as error:
        load(tmp_path, valid)
    assert "model_options.allow_unsafe_deserialization must be true or false (got 'yes')" in str(error.value)
    valid["model_options"] = {"custom_objects": "missing.py"}
    with pytest.raises(ConfigError) as error:
        load(tmp_path, valid)
    assert f"model_options.custom_objects file not found: {tmp_path / 'missing.py'}" in str(error.value)
    assert "model_options apply to Keras .h5 models only (model is 'logits3.onnx')" in str(error.value)
    valid["model"] = str(keras_models["sequential_cnn"])
    valid["model_options"] = {"custom_objects": "layers.txt"}
    with pytest.raises(
        ConfigError, match=r"model_options\.custom_objects must be a Python file \(\.py\) \(got 'layers\.txt'\)"
    ):
        load(tmp_path, valid)
