"""Every bad input a user can cause: one `error:` line naming the file, row or key, exit code 2,
no traceback, and no prediction file written."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
import yaml

from predict.cli import main


@pytest.fixture
def copied(tmp_path, image_folder):
    """A private copy of the images and labels, free to break."""
    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    return folder


def fails_with(capsys, config, pattern, *extra):
    code = main(["--config", str(config), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def no_predictions(config):
    out = config.parent / "out"
    return not any(out.glob("*_predictions.csv")) and not any(out.glob("*.pkl")) and not any(out.glob("*.zip"))


def task_on(make_task, model, copied, **kwargs):
    config = make_task(model, **kwargs)
    raw = yaml.safe_load(config.read_text())
    raw["data"]["dataframe"] = str(copied / "labels.csv")
    raw["data"]["data_folder"] = str(copied)
    config.write_text(yaml.safe_dump(raw))
    return config


def test_missing_image(capsys, make_task, torch_models, copied):
    (copied / "img_05.png").unlink()
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(capsys, config, r"labels.csv: row 5, image_path 'img_05.png': file not found: .*img_05.png")
    assert no_predictions(config)


def test_unreadable_image_is_not_a_zero_image(capsys, make_task, torch_models, copied):
    (copied / "img_07.png").write_bytes(b"this is not a png")
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(capsys, config, r"row 7, image_path 'img_07.png': not a readable image")
    assert no_predictions(config)


def test_truncated_image(capsys, make_task, torch_models, copied):
    data = (copied / "img_03.png").read_bytes()
    (copied / "img_03.png").write_bytes(data[: len(data) // 2])
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(capsys, config, r"row 3, image_path 'img_03.png': not a readable image")


def test_nan_label(capsys, make_task, torch_models, copied):
    frame = pd.read_csv(copied / "labels.csv", dtype=str, keep_default_na=False)
    frame.loc[4, "brightness"] = ""
    frame.to_csv(copied / "labels.csv", index=False)
    config = task_on(
        make_task, torch_models["regression1"][1], copied, problem_type="image_regression", label_columns=["brightness"]
    )
    fails_with(capsys, config, r"labels.csv: row 4, label column 'brightness': expected a number, got ''")
    assert no_predictions(config)


def test_label_outside_the_model_classes(capsys, make_task, torch_models, copied):
    frame = pd.read_csv(copied / "labels.csv", dtype=str, keep_default_na=False)
    frame.loc[2, "label"] = "wolf"
    frame.to_csv(copied / "labels.csv", index=False)
    config = task_on(make_task, torch_models["logits3"][1], copied)
    # Four distinct classes for a three-way model: the class names cannot be read off the labels.
    fails_with(capsys, config, r"head.class_names: model logits3.onnx output 'scores' has 3 classes but 4 class names")
    fails_with(
        capsys,
        config,
        r"row 2, label column 'label': class 'wolf' is not one of the model's classes",
        "--set",
        "head.class_names=[cat, dog, fox]",
    )


def test_empty_dataframe(capsys, make_task, torch_models, copied):
    frame = pd.read_csv(copied / "labels.csv")
    frame.iloc[:0].to_csv(copied / "labels.csv", index=False)
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(capsys, config, r"labels.csv: the dataframe has no rows")


def test_non_utf8_csv(capsys, make_task, torch_models, copied):
    text = (copied / "labels.csv").read_text()
    (copied / "labels.csv").write_bytes(text.replace("has spaces", "caf\xe9").encode("latin-1"))
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(capsys, config, r"labels.csv: not UTF-8 text")


def test_wrong_column(capsys, make_task, torch_models, copied):
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(
        capsys, config, r"data.image_column: column 'path' is not in labels.csv", "--set", "data.image_column=path"
    )


def test_not_an_onnx_file(capsys, make_task, tmp_path, copied):
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x00\x01 definitely not protobuf")
    config = task_on(make_task, fake, copied)
    fails_with(capsys, config, r"model .*fake.onnx: not a valid ONNX model")


def test_truncated_h5(capsys, make_task, keras_models, tmp_path, copied):
    data = keras_models["sequential_cnn"].read_bytes()
    broken = tmp_path / "broken.h5"
    broken.write_bytes(data[: len(data) // 2])
    config = task_on(make_task, broken, copied)
    fails_with(capsys, config, r"model broken.h5: conversion to ONNX failed: .*broken.h5")
    assert no_predictions(config)


def test_image_size_disagrees_with_the_model(capsys, make_task, torch_models, copied):
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(
        capsys,
        config,
        r"preprocessing.image_size is \[24, 24\] \(height, width\) but model logits3.onnx takes \(16, 16\); "
        r"set image_size: \[16, 16\]",
        "--set",
        "preprocessing.image_size=[24, 24]",
    )


def test_label_columns_disagree_with_output_width(capsys, make_task, torch_models, copied):
    config = task_on(make_task, torch_models["softmax3"][1], copied, label_columns=["is_cat", "is_dog"])
    fails_with(capsys, config, r"data.label_columns has 2 columns but model softmax3.onnx output 'scores' has width 3")


def test_cuda_requested_without_cuda(capsys, make_task, torch_models, copied):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(
        capsys,
        config,
        r"runtime.device: cuda, but this onnxruntime .* has no CUDA provider",
        "--set",
        "runtime.device=cuda",
    )


def test_debug_shows_the_traceback(make_task, torch_models, copied):
    config = task_on(make_task, torch_models["logits3"][1], copied)
    from predict.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--config", str(config), "--quiet", "--debug", "--set", "runtime.batch_size=0"])


def test_skip_leaves_bad_rows_out_and_keeps_alignment(capsys, make_task, torch_models, copied, image_folder):
    import json
    import pickle

    import numpy as np

    (copied / "img_05.png").unlink()
    (copied / "img_11.png").write_bytes(b"garbage")
    config = task_on(make_task, torch_models["logits3"][1], copied)
    assert main(["--config", str(config), "--set", "data.on_error=skip"]) == 0
    assert "2 row(s) could not be read and were left out" in capsys.readouterr().out
    out = config.parent / "out"
    errors = pd.read_csv(out / "validation_errors.csv")
    assert list(errors["row"]) == [5, 11]
    assert "file not found" in errors["error"][0] and "not a readable image" in errors["error"][1]
    csv = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert len(csv) == 20 and list(csv["id"]) == [f"{i:03d}" for i in range(20)]
    assert csv.loc[5, "pred_label"] == "" and csv.loc[5, "pred_label_cat"] == "" and csv.loc[6, "pred_label"] != ""
    with open(out / "validation_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    assert np.isnan(raw["predictions"][[5, 11]]).all() and not np.isnan(raw["predictions"][[0, 6]]).any()
    report = json.loads((out / "validation_report.json").read_text())
    assert report["skipped_rows"] == 2
    # Metrics use the 18 rows that were read: accuracy is a multiple of 1/18.
    accuracy = json.loads((out / "validation_metrics.json").read_text())["Accuracy"]
    assert round(accuracy * 18, 6) == round(accuracy * 18)

    # Fixing the data and running again replaces the files and removes the stale error list.
    shutil.copy(image_folder / "img_05.png", copied / "img_05.png")
    shutil.copy(image_folder / "img_11.png", copied / "img_11.png")
    assert main(["--config", str(config), "--quiet", "--overwrite", "--set", "data.on_error=skip"]) == 0
    assert not (out / "validation_errors.csv").exists()


def test_paths_may_not_leave_the_data_folder(capsys, make_task, torch_models, copied):
    frame = pd.read_csv(copied / "labels.csv", dtype=str, keep_default_na=False)
    shutil.copy(copied / "img_03.png", copied.parent / "outside.png")
    frame.loc[3, "image_path"] = "../outside.png"
    frame.loc[4, "image_path"] = str(copied.parent / "outside.png")
    frame.to_csv(copied / "labels.csv", index=False)
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(
        capsys,
        config,
        r"row 3, image_path '../outside.png': path leaves data_folder .* data.allow_outside_folder: true",
    )
    assert main(["--config", str(config), "--quiet", "--set", "data.allow_outside_folder=true"]) == 0


def test_nul_byte_in_a_path(capsys, make_task, torch_models, copied):
    frame = pd.read_csv(copied / "labels.csv", dtype=str, keep_default_na=False)
    frame.loc[2, "image_path"] = "img\x0002.png"
    frame.to_csv(copied / "labels.csv", index=False)
    config = task_on(make_task, torch_models["logits3"][1], copied)
    fails_with(capsys, config, r"row 2, image_path 'img\\x0002.png': not a valid path: it contains a NUL character")
