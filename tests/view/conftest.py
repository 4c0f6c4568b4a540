"""Run folders to view, written by the real pipeline through `predict.cli.main`.

Session-scoped: every test here reads them and none writes into them (tests that damage a run
folder copy it first).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from predict.cli import main
from tests.conftest import IMAGE_SIZE, write_config

REPOSITORY = Path(__file__).resolve().parents[2]


def score(
    folder: Path, model: Path, image_folder: Path, *, problem_type: str, label_columns: list[str], sets=()
) -> Path:
    """Write a task YAML around the shared test images, run it into `folder` and return `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(
        folder / f"task_{problem_type}.yaml",
        {
            "problem_type": problem_type,
            "model": str(model),
            "data": {
                "dataframe": str(image_folder / "labels.csv"),
                "split": "validation",
                "data_folder": str(image_folder),
                "image_column": "image_path",
                "label_columns": label_columns,
            },
            "preprocessing": {"image_size": [IMAGE_SIZE, IMAGE_SIZE], "mean": [0, 0, 0], "std": [255, 255, 255]},
            "runtime": {"batch_size": 8, "num_workers": 0},
            "output": {"dir": str(folder)},
        },
    )
    overrides = [argument for item in sets for argument in ("--set", item)]
    assert main(["--config", str(config), "--quiet", *overrides]) == 0
    return folder


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory, torch_models, image_folder) -> Path:
    """Categorical image classification of a random 3-class model: a labelled validation split
    (with mistakes) and an unlabelled test split, in one folder."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("classification_run")
    model = torch_models["logits3"][1]
    score(folder, model, image_folder, problem_type="image_classification", label_columns=["label"])
    frame = pd.read_csv(image_folder / "labels.csv", dtype=str, keep_default_na=False)
    test_csv = folder / "test.csv"
    frame[["id", "image_path"]].to_csv(test_csv, index=False)
    score(
        folder,
        model,
        image_folder,
        problem_type="image_classification",
        label_columns=["label"],
        sets=["data.split=test", f"data.dataframe={test_csv}", "head.class_names=[cat, dog, fox]"],
    )
    return folder


@pytest.fixture(scope="session")
def regression_example_run(tmp_path_factory) -> Path:
    """configs/image_regression.yaml, the committed example, run as a user would."""
    folder = tmp_path_factory.mktemp("regression_example")
    config = REPOSITORY / "configs" / "image_regression.yaml"
    assert main(["--config", str(config), "--quiet", "--set", f"output.dir={folder}"]) == 0
    return folder


# The committed examples of the problem types whose views came after classification and regression.
# text_classification is left out on purpose: its .h5 conversion alone takes ~12 s, and its view is the
# classification view of audio_classification with the text card of text_regression.
EXAMPLES = (
    "text_regression",
    "audio_classification",
    "audio_regression",
    "text_token_classification",
    "text_span_prediction",
    "text_sequence_to_sequence",
    "image_metric_learning",
)


@pytest.fixture(scope="session")
def example_runs(tmp_path_factory):
    """`name -> run folder` of configs/{name}.yaml, each run once on first use (the runs take 3-12 s each)."""
    folders: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in folders:
            folder = tmp_path_factory.mktemp(name)
            config = REPOSITORY / "configs" / f"{name}.yaml"
            assert main(["--config", str(config), "--quiet", "--set", f"output.dir={folder}"]) == 0
            folders[name] = folder
        return folders[name]

    return run
