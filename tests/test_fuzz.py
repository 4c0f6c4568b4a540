"""Random config mutations and random dataframe corruption: the tool answers with exit 0 or a clean
one-line error (exit 2), never an unexpected exception."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predict.cli import main

KEYS = [
    ("problem_type",), ("model",), ("data",), ("data", "dataframe"), ("data", "split"), ("data", "data_folder"),
    ("data", "image_column"), ("data", "label_columns"), ("data", "on_error"), ("preprocessing", "image_size"),
    ("preprocessing", "mean"), ("preprocessing", "std"), ("preprocessing", "interpolation"), ("runtime", "batch_size"),
    ("runtime", "num_workers"), ("runtime", "device"), ("runtime", "threads"), ("head", "activation"),
    ("head", "label_layout"), ("head", "class_names"), ("head", "output_name"), ("output",),
    ("output", "checkpoint_rows"),
]  # fmt: skip
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["test", "validation", "skip", "softmax", "cuda", "../x", "/etc/passwd", "image_path", "label"]),
    st.lists(
        st.one_of(st.integers(-1, 64), st.text(st.characters(blacklist_categories=("Cs",)), max_size=4)), max_size=4
    ),
    st.dictionaries(st.text("abc", max_size=5), st.integers(), max_size=2),
)
MUTATION = st.tuples(st.sampled_from(["delete", "set"]), st.sampled_from(KEYS), VALUES)
CELL_CORRUPTION = st.tuples(
    st.integers(0, 19),
    st.sampled_from(["image_path", "label", "id"]),
    st.sampled_from(["", "nan", "missing.png", "../../etc/hosts", "/abs.png", "dog\x00", "é", "1e309"]),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory, image_folder, torch_models):
    folder = tmp_path_factory.mktemp("fuzz")
    return folder, torch_models["logits3"][1], image_folder


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(MUTATION, max_size=3),
    cells=st.lists(CELL_CORRUPTION, max_size=3),
    drop_column=st.sampled_from([None, "image_path", "label", "id"]),
    break_image=st.sampled_from([None, "garbage", "truncate", "delete"]),
    skip=st.booleans(),
)
def test_only_clean_errors(base, tmp_path_factory, mutations, cells, drop_column, break_image, skip):
    _folder, model, image_folder = base
    work = tmp_path_factory.mktemp("case")
    images = work / "images"
    shutil.copytree(image_folder, images)
    frame = pd.read_csv(images / "labels.csv", dtype=str, keep_default_na=False)
    for row, column, value in cells:
        frame.loc[row, column] = value
    if drop_column:
        frame = frame.drop(columns=[drop_column])
    frame.to_csv(images / "labels.csv", index=False)
    if break_image == "garbage":
        (images / "img_04.png").write_bytes(np.random.default_rng(0).bytes(50))
    elif break_image == "truncate":
        data = (images / "img_04.png").read_bytes()
        (images / "img_04.png").write_bytes(data[:20])
    elif break_image == "delete":
        (images / "img_04.png").unlink()

    config = {
        "problem_type": "image_classification",
        "model": str(model),
        "data": {
            "dataframe": str(images / "labels.csv"),
            "data_folder": str(images),
            "image_column": "image_path",
            "label_columns": ["label"],
            "on_error": "skip" if skip else "raise",
        },
        "preprocessing": {"image_size": [16, 16]},
        "runtime": {"batch_size": 8, "num_workers": 0},
        "output": {"dir": str(work / "out")},
    }
    for operation, path, value in mutations:
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node
        if not isinstance(node, dict):
            continue
        if operation == "delete":
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    config_path = work / "task.yaml"
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True))

    code = main(["--config", str(config_path), "--quiet"])  # anything but PredictError propagates and fails
    assert code in (0, 2)
