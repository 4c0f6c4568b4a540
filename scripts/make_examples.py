"""Generate the example data and models that the configs in `configs/` run on.

Writes, deterministically (fixed seeds, rerunnable; old outputs are replaced):

- `configs/data/shapes/images/{valid,test}_NNNN.png`: real PNG images drawn with Pillow, each
  holding one filled circle, square or triangle on a noisy light background.
- `configs/data/shapes/valid.csv`: `id, image_path, shape, area_fraction, width, height`.
- `configs/data/shapes/test.csv`: the same columns without the labels `shape` and `area_fraction`.
- `configs/models/shapes_classifier.h5`: a small Keras 3 Sequential CNN (NHWC float32[N, 32, 32, 3]
  to softmax float32[N, 3] over `circle, square, triangle`).
- `configs/models/shapes_regressor.onnx`: a small PyTorch CNN exported to ONNX (input `image`
  float32[N, 3, 32, 32], output `area_fraction` float32[N, 1]).

Both models train on a separate, larger set of images that lives only in memory. After saving,
each model is reloaded from disk and scored on the committed validation images, so the printed
accuracy and R2 are the numbers a user gets from `python -m predict`.

Needs the dev install (TensorFlow and torch). Run from anywhere:

    python scripts/make_examples.py
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

# Set before TensorFlow is imported; otherwise its C++ start-up log buries the script's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_FOLDER = REPOSITORY_ROOT / "configs"
DATA_FOLDER = CONFIGS_FOLDER / "data" / "shapes"
IMAGES_FOLDER = DATA_FOLDER / "images"
MODELS_FOLDER = CONFIGS_FOLDER / "models"
CLASSIFIER_PATH = MODELS_FOLDER / "shapes_classifier.h5"
REGRESSOR_PATH = MODELS_FOLDER / "shapes_regressor.onnx"

# Sorted, because the classifier's output index i means CLASS_NAMES[i].
CLASS_NAMES = ("circle", "square", "triangle")

# Must match `preprocessing` in configs/image_*.yaml: (pixel - mean) / std after a bilinear resize.
IMAGE_SIZE = (32, 32)
PIXEL_MEAN = 0.0
PIXEL_STD = 255.0

# Separate seeds so the committed splits never overlap the in-memory training images.
TRAIN_SEED = 0
VALID_SEED = 1
TEST_SEED = 2
MODEL_SEED = 42

# Per-class counts. 96 + 48 images keep the committed data near 0.4 MB.
VALID_IMAGES_PER_CLASS = 32
TEST_IMAGES_PER_CLASS = 16
# 6000 training images train both models to >95% accuracy / R2 > 0.95 in well under a minute of CPU.
TRAIN_IMAGES_PER_CLASS = 2000

MIN_CANVAS_SIDE = 40
MAX_CANVAS_SIDE = 64
NON_SQUARE_PROBABILITY = 0.125
# Shape extent (circle diameter, square side, triangle's circumscribed diameter) as a fraction
# of the canvas's short side. Below ~0.35 a circle and a square blur together at 32x32.
MIN_EXTENT_FRACTION = 0.35
MAX_EXTENT_FRACTION = 0.8
NOISE_STD = 6.0


@dataclass(frozen=True)
class ShapeSample:
    """One drawn image and its labels.

    Attributes:
        image: RGB image of size (width, height).
        shape: one of CLASS_NAMES.
        area_fraction: shape pixels / all pixels, counted on the drawn mask.
    """

    image: Image.Image
    shape: str
    area_fraction: float


def pick_canvas_size(rng: np.random.Generator) -> tuple[int, int]:
    """Return a (width, height) in [MIN_CANVAS_SIDE, MAX_CANVAS_SIDE], mostly square."""
    if rng.random() < NON_SQUARE_PROBABILITY:
        width, height = rng.integers(MIN_CANVAS_SIDE, MAX_CANVAS_SIDE + 1, size=2)
        return int(width), int(height)
    side = int(rng.integers(MIN_CANVAS_SIDE, MAX_CANVAS_SIDE + 1))
    return side, side


def draw_shape(rng: np.random.Generator, shape: str) -> ShapeSample:
    """Draw one filled shape of random colour, size and position on a noisy light background.

    Args:
        rng: the random generator; the same state always gives the same image.
        shape: one of CLASS_NAMES.

    Returns:
        The image with its class name and exact area fraction.
    """
    width, height = pick_canvas_size(rng)
    background_colour = rng.integers(190, 256, size=3)
    # Channels at most 150 keep every shape visibly darker than the background.
    shape_colour = rng.integers(0, 151, size=3)
    extent = rng.uniform(MIN_EXTENT_FRACTION, MAX_EXTENT_FRACTION) * min(width, height)
    radius = extent / 2
    centre_x = rng.uniform(radius, width - radius)
    centre_y = rng.uniform(radius, height - radius)
    bounding_box = [centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius]

    # Drawing on a mask first gives the exact pixel area, then the same mask paints the image.
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse(bounding_box, fill=255)
    elif shape == "square":
        draw.rectangle(bounding_box, fill=255)
    elif shape == "triangle":
        angle = rng.uniform(0, 2 * math.pi)
        vertices = [
            (
                centre_x + radius * math.cos(angle + corner * 2 * math.pi / 3),
                centre_y + radius * math.sin(angle + corner * 2 * math.pi / 3),
            )
            for corner in range(3)
        ]
        draw.polygon(vertices, fill=255)
    else:
        raise ValueError(f"shape must be one of {CLASS_NAMES} (got {shape!r})")

    inside = np.asarray(mask) > 0
    pixels = np.where(inside[..., None], shape_colour, background_colour).astype(np.float32)
    pixels += rng.normal(0.0, NOISE_STD, size=pixels.shape).astype(np.float32)
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return ShapeSample(
        image=Image.fromarray(pixels, mode="RGB"),
        shape=shape,
        area_fraction=float(inside.mean()),
    )


def draw_split(seed: int, images_per_class: int) -> list[ShapeSample]:
    """Draw a class-balanced split in shuffled order."""
    rng = np.random.default_rng(seed)
    shapes = rng.permutation(np.repeat(CLASS_NAMES, images_per_class))
    return [draw_shape(rng, str(shape)) for shape in shapes]


def preprocess_image(image: Image.Image) -> np.ndarray:
    """Resize and scale one image exactly as the configs tell `predict` to.

    Returns:
        float32[32, 32, 3] NHWC pixels, `(pixel - PIXEL_MEAN) / PIXEL_STD`.
    """
    resized = image.convert("RGB").resize(IMAGE_SIZE, Image.BILINEAR)
    return (np.asarray(resized, dtype=np.float32) - PIXEL_MEAN) / PIXEL_STD


def write_split(samples: list[ShapeSample], split: str, *, with_labels: bool) -> Path:
    """Write a split's PNGs into IMAGES_FOLDER and its dataframe as `<split>.csv`.

    Args:
        samples: the drawn images, in row order.
        split: file name prefix, "valid" or "test".
        with_labels: whether to write the `shape` and `area_fraction` columns.

    Returns:
        The path of the CSV.
    """
    rows = []
    for number, sample in enumerate(samples, start=1):
        image_name = f"{split}_{number:04d}.png"
        sample.image.save(IMAGES_FOLDER / image_name, format="PNG", optimize=True)
        row = {"id": f"{split}-{number:04d}", "image_path": image_name}
        if with_labels:
            row["shape"] = sample.shape
            row["area_fraction"] = sample.area_fraction
        # Columns the model never reads, as a real dataframe has; the tool must carry them through.
        row["width"], row["height"] = sample.image.size
        rows.append(row)
    csv_path = DATA_FOLDER / f"{split}.csv"
    pd.DataFrame(rows).to_csv(csv_path, index=False, float_format="%.6f")
    return csv_path


def train_classifier(images: np.ndarray, class_indices: np.ndarray) -> None:
    """Train the Keras classifier and save it to CLASSIFIER_PATH as HDF5.

    Args:
        images: float32[N, 32, 32, 3] preprocessed pixels.
        class_indices: int64[N] indices into CLASS_NAMES.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(MODEL_SEED)
    tf.config.experimental.enable_op_determinism()
    model = keras.Sequential(
        [
            keras.Input(shape=(*IMAGE_SIZE[::-1], 3), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ],
        name="shapes_classifier",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(images, class_indices, batch_size=64, epochs=12, validation_split=0.1, verbose=2)
    # Inference only: dropping the Adam slots keeps the file at a third of its size.
    model.save(CLASSIFIER_PATH, include_optimizer=False)


def train_regressor(images: np.ndarray, area_fractions: np.ndarray) -> None:
    """Train the PyTorch regressor and export it to REGRESSOR_PATH as ONNX.

    Args:
        images: float32[N, 32, 32, 3] preprocessed pixels (NHWC; transposed here to NCHW).
        area_fractions: float32[N] targets.
    """
    import torch
    from torch import nn

    torch.manual_seed(MODEL_SEED)
    torch.use_deterministic_algorithms(True)
    # Global average pooling suits the target: area is the mean of a per-pixel "inside" feature.
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 1),
    )
    inputs = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    targets = torch.from_numpy(area_fractions.astype(np.float32)).unsqueeze(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    epochs = 20
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(MODEL_SEED)
    batch_size = 64
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(inputs), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), batch_size):
            batch_rows = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(inputs[batch_rows]), targets[batch_rows])
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch_rows)
        scheduler.step()
        if epoch % 5 == 0 or epoch == 1:
            train_rmse = math.sqrt(total_loss / len(order))
            print(f"regressor epoch {epoch}/{epochs}: train RMSE {train_rmse:.4f}")

    model.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (the dynamo one needs onnxscript, which
        # is no dependency of this project), so its deprecation notice is only noise here.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, IMAGE_SIZE[1], IMAGE_SIZE[0]),),
            str(REGRESSOR_PATH),
            dynamo=False,
            input_names=["image"],
            output_names=["area_fraction"],
            dynamic_axes={"image": {0: "batch"}, "area_fraction": {0: "batch"}},
            opset_version=17,
        )


def load_validation_split() -> tuple[pd.DataFrame, np.ndarray]:
    """Read valid.csv and its committed PNGs back from disk.

    Returns:
        The dataframe and float32[N, 32, 32, 3] preprocessed pixels in row order.
    """
    frame = pd.read_csv(DATA_FOLDER / "valid.csv")
    images = np.stack([preprocess_image(Image.open(IMAGES_FOLDER / name)) for name in frame["image_path"]])
    return frame, images


def verify_classifier(frame: pd.DataFrame, images: np.ndarray) -> float:
    """Reload the saved .h5 and return its accuracy on the committed validation split."""
    import keras

    model = keras.models.load_model(CLASSIFIER_PATH, compile=False)
    probabilities = model.predict(images, batch_size=32, verbose=0)
    predicted = np.asarray(CLASS_NAMES)[probabilities.argmax(axis=1)]
    return float((predicted == frame["shape"].to_numpy()).mean())


def verify_regressor(frame: pd.DataFrame, images: np.ndarray) -> tuple[float, float]:
    """Reload the saved .onnx in onnxruntime and return (R2, MAE) on the validation split."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(REGRESSOR_PATH), providers=["CPUExecutionProvider"])
    (predicted,) = session.run(["area_fraction"], {"image": images.transpose(0, 3, 1, 2).copy()})
    predicted = predicted[:, 0].astype(np.float64)
    target = frame["area_fraction"].to_numpy(dtype=np.float64)
    residual_sum = float(((target - predicted) ** 2).sum())
    total_sum = float(((target - target.mean()) ** 2).sum())
    return 1.0 - residual_sum / total_sum, float(np.abs(target - predicted).mean())


def folder_size(folder: Path) -> int:
    """Total bytes of the files under folder."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    """Generate the data, train and save both models, verify them, and print sizes and scores."""
    started = time.perf_counter()
    IMAGES_FOLDER.mkdir(parents=True, exist_ok=True)
    MODELS_FOLDER.mkdir(parents=True, exist_ok=True)
    # This folder belongs to this script: clear it so a rerun with fewer images leaves no strays.
    for stale_image in IMAGES_FOLDER.glob("*.png"):
        stale_image.unlink()

    write_split(draw_split(VALID_SEED, VALID_IMAGES_PER_CLASS), "valid", with_labels=True)
    write_split(draw_split(TEST_SEED, TEST_IMAGES_PER_CLASS), "test", with_labels=False)

    training_samples = draw_split(TRAIN_SEED, TRAIN_IMAGES_PER_CLASS)
    training_images = np.stack([preprocess_image(sample.image) for sample in training_samples])
    class_indices = np.array([CLASS_NAMES.index(sample.shape) for sample in training_samples])
    area_fractions = np.array([sample.area_fraction for sample in training_samples], np.float32)
    data_seconds = time.perf_counter() - started
    print(f"drew {len(training_samples)} training images and both splits in {data_seconds:.1f} s")

    train_classifier(training_images, class_indices)
    classifier_seconds = time.perf_counter() - started - data_seconds
    train_regressor(training_images, area_fractions)
    regressor_seconds = time.perf_counter() - started - data_seconds - classifier_seconds

    frame, validation_images = load_validation_split()
    accuracy = verify_classifier(frame, validation_images)
    r2, mean_absolute_error = verify_regressor(frame, validation_images)

    print()
    print(f"classifier trained in {classifier_seconds:.1f} s, regressor in {regressor_seconds:.1f} s")
    print(f"validation split ({len(frame)} images):")
    print(f"  {CLASSIFIER_PATH.name}: accuracy {accuracy:.4f} (chance {1 / len(CLASS_NAMES):.3f})")
    print(f"  {REGRESSOR_PATH.name}: R2 {r2:.4f}, MAE {mean_absolute_error:.4f}")
    print("committed sizes:")
    csv_paths = (DATA_FOLDER / "valid.csv", DATA_FOLDER / "test.csv")
    for path in (CLASSIFIER_PATH, REGRESSOR_PATH, *csv_paths):
        print(f"  {path.relative_to(REPOSITORY_ROOT)}: {path.stat().st_size / 1024:.1f} KiB")
    image_count = len(list(IMAGES_FOLDER.glob("*.png")))
    print(
        f"  {IMAGES_FOLDER.relative_to(REPOSITORY_ROOT)}/ ({image_count} PNGs): "
        f"{folder_size(IMAGES_FOLDER) / 1024:.1f} KiB"
    )
    total = folder_size(CONFIGS_FOLDER / "data") + folder_size(MODELS_FOLDER)
    print(f"  total under configs/data and configs/models: {total / 1024:.1f} KiB")
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
