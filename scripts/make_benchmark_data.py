"""Build the image-classification benchmark of docs/performance.md (not committed: regenerate it).

- `images/`: N real-photo PNGs at 96x96, random crops of the two photographs scikit-learn ships
  (`load_sample_images`: a temple in China and a flower), flipped and re-coloured at random;
- `frame.csv`: `image_path`, `label` (one of 10 classes, random);
- `mobilenetv2.h5`: Keras MobileNetV2 (96x96x3, 10 classes, random weights, softmax), the model
  size the performance issue names;
- `benchmark.yaml`: the task config that `predict benchmark` runs.

Usage: python scripts/make_benchmark_data.py OUT_DIR [--rows 2048]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image
from sklearn.datasets import load_sample_images

SIZE = 96
CLASSES = 10


def main() -> None:
    """Write images, dataframe, model and config into OUT_DIR."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=2048)
    options = parser.parse_args()
    out: Path = options.out
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(0)
    photos = load_sample_images().images
    rows = []
    for index in range(options.rows):
        photo = photos[index % len(photos)]
        side = int(rng.integers(96, min(photo.shape[:2])))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        crop = photo[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop * rng.uniform(0.7, 1.3, size=3), 0, 255).astype(np.uint8)
        name = f"{index:05d}.png"
        Image.fromarray(crop).resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(images / name)
        rows.append({"image_path": name, "label": f"class_{int(rng.integers(0, CLASSES))}"})
    pd.DataFrame(rows).to_csv(out / "frame.csv", index=False)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), weights=None, classes=CLASSES)
    model.save(out / "mobilenetv2.h5")

    config = {
        "problem_type": "image_classification",
        "model": "mobilenetv2.h5",
        "data": {
            "dataframe": "frame.csv",
            "data_folder": "images",
            "image_column": "image_path",
            "label_columns": ["label"],
        },
        "preprocessing": {"image_size": [SIZE, SIZE], "mean": [127.5], "std": [127.5]},
        "runtime": {"batch_size": 32},  # num_workers unset: chosen by the CPU count
        "head": {"class_names": [f"class_{index}" for index in range(CLASSES)]},
        "output": {"dir": "runs"},
    }
    (out / "benchmark.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"wrote {options.rows} images, frame.csv, mobilenetv2.h5 and benchmark.yaml to {out}")


if __name__ == "__main__":
    main()
