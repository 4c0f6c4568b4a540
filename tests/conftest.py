"""Session fixtures: small real models (torch-exported ONNX, Keras .h5) and real PNG images.

Nothing here is mocked: the models are real graphs run by onnxruntime, the images are files
written by Pillow at several sizes, the dataframes are CSV files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGE_SIZE = 16
CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """20 PNGs of varied sizes and colours; `labels.csv` beside them names each with a class and a target."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(20):
        height, width = int(rng.integers(12, 40)), int(rng.integers(12, 40))
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        name = f"img_{index:02d}.png"
        Image.fromarray(pixels).save(folder / name)
        class_index = index % 3
        rows.append(
            {
                "id": f"{index:03d}",  # leading zeros must survive the round trip
                "image_path": name,
                "label": CLASSES[class_index],
                **{f"is_{name}": int(class_index == j) for j, name in enumerate(CLASSES)},
                "is_bright": int(pixels.mean() > 127),
                "brightness": float(pixels.mean() / 255),
                "note": "" if index % 2 else "has spaces, and a comma",
            }
        )
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


def preprocess(folder: Path, names: list[str], *, channels_first: bool, size: int = IMAGE_SIZE) -> np.ndarray:
    """The reference pre-processing, written independently of predict.data: RGB, bilinear resize, /255."""
    images = [
        np.asarray(Image.open(folder / name).convert("RGB").resize((size, size), Image.Resampling.BILINEAR), np.float32)
        / 255.0
        for name in names
    ]
    batch = np.stack(images)
    return batch.transpose(0, 3, 1, 2).copy() if channels_first else batch


class TinyCNN(torch.nn.Module):
    """NCHW (3, 16, 16) in, `outputs` values out; `activation` is applied inside the graph when given."""

    def __init__(self, outputs: int, activation: str | None = None) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()
        )
        self.fc = torch.nn.Linear(16, outputs)
        self.activation = activation

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.features(image)) * 4.0  # scaled so probabilities are far from uniform
        if self.activation == "softmax":
            return torch.softmax(logits, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(logits)
        return logits


def export_torch(module: torch.nn.Module, path: Path, *, output_name: str = "scores", batch: int | None = None) -> Path:
    """Export with a dynamic batch axis (or a fixed one when `batch` is given)."""
    module.eval()
    example = torch.zeros(batch or 2, 3, IMAGE_SIZE, IMAGE_SIZE)
    dynamic = None if batch else {"image": {0: "batch"}, output_name: {0: "batch"}}
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["image"],
        output_names=[output_name],
        dynamic_axes=dynamic,
        opset_version=17,
        dynamo=False,
    )
    return path


@pytest.fixture(scope="session")
def torch_models(tmp_path_factory) -> dict[str, tuple[torch.nn.Module, Path]]:
    """Seeded tiny CNNs exported to ONNX: logits, softmax, sigmoid heads and a regressor."""
    folder = tmp_path_factory.mktemp("torch_models")
    specs = {
        "logits3": (3, None),
        "softmax3": (3, "softmax"),
        "sigmoid3": (3, "sigmoid"),
        "logit1": (1, None),
        "softmax2": (2, "softmax"),
        "regression1": (1, None),
    }
    models = {}
    for name, (outputs, activation) in specs.items():
        torch.manual_seed(len(models))
        module = TinyCNN(outputs, activation)
        models[name] = (module, export_torch(module, folder / f"{name}.onnx"))
    torch.manual_seed(99)
    fixed = TinyCNN(3)
    models["fixed_batch4"] = (fixed, export_torch(fixed, folder / "fixed_batch4.onnx", batch=4))
    return models


def torch_reference(module: torch.nn.Module, folder: Path, names: list[str]) -> np.ndarray:
    """The module's own outputs on the reference pre-processing."""
    with torch.no_grad():
        return module(torch.from_numpy(preprocess(folder, names, channels_first=True))).numpy()


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory) -> dict[str, Path]:
    """Keras .h5 files: a Sequential softmax CNN and a functional two-value regressor (NHWC, 16x16x3)."""
    pytest.importorskip("tensorflow")
    import keras

    folder = tmp_path_factory.mktemp("keras_models")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)

    sequential = keras.Sequential(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    sequential.compile("adam", "sparse_categorical_crossentropy")
    sequential.fit(x, rng.integers(0, 3, 64), epochs=2, verbose=0)
    sequential.save(folder / "sequential_cnn.h5")

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="pixels")
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(2, name="targets")(hidden)
    functional = keras.Model(inputs, outputs)
    functional.compile("adam", "mse")
    functional.fit(x, rng.random((64, 2)), epochs=2, verbose=0)
    functional.save(folder / "functional_regressor.h5")
    return {"sequential_cnn": folder / "sequential_cnn.h5", "functional_regressor": folder / "functional_regressor.h5"}


def postprocess(head, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Call a head on hand-made outputs, with a batch of as many rows and no context."""
    from predict.data.collate import Batch

    rows = len(next(iter(outputs.values())))
    return head.postprocess(outputs, Batch(np.arange(rows), {}, [], None))


def write_config(path: Path, config: dict) -> Path:
    """Write a task YAML."""
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def make_task(tmp_path, image_folder):
    """Build a task YAML in tmp_path around the shared images; keyword overrides replace whole sections."""

    def make(model: Path, problem_type: str = "image_classification", label_columns=("label",), **sections) -> Path:
        config = {
            "problem_type": problem_type,
            "model": str(model),
            "data": {
                "dataframe": str(image_folder / "labels.csv"),
                "split": "validation",
                "data_folder": str(image_folder),
                "image_column": "image_path",
                "label_columns": list(label_columns),
            },
            "preprocessing": {"image_size": [IMAGE_SIZE, IMAGE_SIZE], "mean": [0, 0, 0], "std": [255, 255, 255]},
            "runtime": {"batch_size": 8, "num_workers": 0},
            "output": {"dir": str(tmp_path / "out")},
        }
        for key, value in sections.items():
            config[key] = value
        return write_config(tmp_path / "task.yaml", config)

    return make
