"""Generate the data and models of the dense-vision examples (detection, semantic and instance segmentation).

Writes, deterministically (fixed seeds; old outputs are replaced):

- `configs/data/dense_shapes/images/valid_NN.png`: PNG images of different sizes (40 to 96 px a side),
  each with 0 to 3 filled squares and circles (never touching) on a flat background; image 0 is empty.
- `configs/data/dense_shapes/detection.csv`: `image_path, x_min, y_min, x_max, y_max, class_name`,
  one row per image, the box columns and class names as JSON lists (boxes in image pixels,
  x_max/y_max exclusive, i.e. the pixel edges).
- `configs/data/dense_shapes/segmentation.csv`: `image_path, class_name, rle_mask` for semantic
  segmentation: one RLE (column-major, Kaggle-style) per class present.
- `configs/data/dense_shapes/instances.csv`: the same, one entry per object (instance segmentation).
- `configs/models/dense_yolo.onnx`: a tiny anchor-free detector, output `predictions` (N, 4 + 2, 64):
  cxcywh boxes in model-input pixels and sigmoid class scores, 64 cells of 8x8 px (letterboxed 64x64 input).
- `configs/models/dense_yolov5.onnx`: the same network in YOLOv5's layout, output `predictions`
  (N, 64, 5 + 2): cxcywh pixels, objectness (the best class probability), and class probabilities
  given an object (so objectness x class = the yolo model's class probability).
- `configs/models/dense_ssd.onnx`: the same network, outputs `boxes` (N, 64, 4) normalised xyxy
  and `scores` (N, 64, 2) logits.
- `configs/models/dense_postprocessed.onnx`: the same network with top-10 selection in the graph:
  `boxes` (N, 10, 4) normalised yxyx, `scores` (N, 10), `classes` (N, 10) float ids from 1 (TF API style).
- `configs/models/dense_instances.onnx`: a tiny encoder-decoder, output `probabilities` (N, 2 + 2, 64, 64)
  (sigmoid): square, circle, instance borders, borders between instances (H2O's layout).
- `configs/models/dense_semantic.onnx`: the same network's class logits (N, 2, 64, 64).
- `configs/models/dense_unet.h5`: a Keras U-Net-like model, (N, 64, 64, 3) to sigmoid (N, 64, 64, 2).

Every model trains on a few thousand in-memory images drawn the same way. Run from anywhere:

    python scripts/make_dense_examples.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT / "src"))

from predict.data.image import LETTERBOX_FILL, letterbox_geometry  # noqa: E402
from predict.heads._masks import encode_rle  # noqa: E402

DATA_FOLDER = REPOSITORY_ROOT / "configs" / "data" / "dense_shapes"
MODELS_FOLDER = REPOSITORY_ROOT / "configs" / "models"
CLASS_NAMES = ("square", "circle")
SIZE = 64  # model input, square
STRIDE = 8  # detector cells
VALID_IMAGES = 16
TRAIN_IMAGES = 2000


def draw_scene(rng: np.random.Generator, *, height: int, width: int, objects: int) -> tuple[Image.Image, list[dict]]:
    """An RGB image with `objects` non-touching shapes, and each shape's class, box and mask.

    Returns:
        The image, and per object {"class": index, "box": [x_min, y_min, x_max, y_max], "mask": bool[H, W]}.
    """
    background = tuple(int(value) for value in rng.integers(170, 240, 3))
    image = Image.new("RGB", (width, height), background)
    occupied = np.zeros((height, width), dtype=bool)
    found: list[dict] = []
    for _ in range(objects * 20):
        if len(found) == objects:
            break
        side = int(rng.integers(10, max(11, min(height, width) // 2)))
        x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        grown = occupied[max(0, y0 - 2) : y0 + side + 2, max(0, x0 - 2) : x0 + side + 2]
        if grown.any():
            continue
        class_index = int(rng.integers(0, 2))
        layer = Image.new("L", (width, height), 0)
        pen = ImageDraw.Draw(layer)
        if class_index == 0:
            pen.rectangle([x0, y0, x0 + side - 1, y0 + side - 1], fill=255)
        else:
            pen.ellipse([x0, y0, x0 + side - 1, y0 + side - 1], fill=255)
        mask = np.asarray(layer) > 0
        color = tuple(int(value) for value in rng.integers(0, 110, 3))
        image.paste(Image.new("RGB", (width, height), color), (0, 0), layer)
        occupied |= mask
        ys, xs = np.nonzero(mask)
        found.append(
            {
                "class": class_index,
                "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                "mask": mask,
            }
        )
    return image, found


def random_scene(rng: np.random.Generator) -> tuple[Image.Image, list[dict]]:
    height, width = (int(value) for value in rng.integers(40, 97, 2))
    return draw_scene(rng, height=height, width=width, objects=int(rng.integers(0, 4)))


def letterboxed(image: Image.Image) -> np.ndarray:
    """As the loader letterboxes (preprocessing.resize_mode: letterbox): uint8[64, 64, 3]."""
    new_height, new_width, top, left = letterbox_geometry(image.height, image.width, SIZE, SIZE)
    canvas = Image.new("RGB", (SIZE, SIZE), (LETTERBOX_FILL,) * 3)
    canvas.paste(image.resize((new_width, new_height), Image.Resampling.BILINEAR), (left, top))
    return np.asarray(canvas)


def resized(image: Image.Image) -> np.ndarray:
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def detector_targets(image: Image.Image, objects: list[dict]) -> np.ndarray:
    """float32[64 cells, 4 + 2]: cxcywh in letterboxed pixels at each object's centre cell, class one-hot."""
    target = np.zeros((SIZE // STRIDE, SIZE // STRIDE, 6), dtype=np.float32)
    new_height, new_width, top, left = letterbox_geometry(image.height, image.width, SIZE, SIZE)
    sx, sy = new_width / image.width, new_height / image.height
    for item in objects:
        x0, y0, x1, y1 = item["box"]
        box = [x0 * sx + left, y0 * sy + top, x1 * sx + left, y1 * sy + top]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        cell_y, cell_x = min(int(cy // STRIDE), 7), min(int(cx // STRIDE), 7)
        target[cell_y, cell_x, :4] = [cx, cy, box[2] - box[0], box[3] - box[1]]
        target[cell_y, cell_x, 4 + item["class"]] = 1
    return target.reshape(-1, 6)


def segmentation_targets(image: Image.Image, objects: list[dict]) -> np.ndarray:
    """float32[4, 64, 64]: square, circle, instance border, border between instances (resized masks)."""
    from scipy import ndimage

    target = np.zeros((4, SIZE, SIZE), dtype=np.float32)
    for item in objects:
        mask = (
            np.asarray(
                Image.fromarray(item["mask"].astype(np.uint8) * 255).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            )
            > 127
        )
        target[item["class"]][mask] = 1
        target[2][mask & ~ndimage.binary_erosion(mask)] = 1
    return target


def build_torch_models():
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU())
            self.down1 = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU())
            self.down2 = torch.nn.Sequential(torch.nn.Conv2d(16, 24, 3, stride=2, padding=1), torch.nn.ReLU())
            self.down3 = torch.nn.Sequential(torch.nn.Conv2d(24, 32, 3, stride=2, padding=1), torch.nn.ReLU())

        def forward(self, image):
            full = self.stem(image)
            half = self.down1(full)
            quarter = self.down2(half)
            return full, half, quarter, self.down3(quarter)

    class Detector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()
            self.context = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU())
            self.out = torch.nn.Conv2d(32, 6, 1)
            cells = torch.arange(SIZE // STRIDE, dtype=torch.float32)
            grid_y, grid_x = torch.meshgrid(cells, cells, indexing="ij")
            self.register_buffer("grid", torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], 0))  # (2, 64)

        def forward(self, image):
            raw = self.out(self.context(self.encoder(image)[3])).flatten(2)  # (N, 6, 64)
            centre = (self.grid + torch.sigmoid(raw[:, :2])) * STRIDE
            size = torch.exp(raw[:, 2:4].clamp(-4, 4)) * 16
            return torch.cat([centre, size, raw[:, 4:]], 1)  # cxcywh pixels, class logits

    class Segmenter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()
            self.up3 = torch.nn.Sequential(torch.nn.Conv2d(32 + 24, 24, 3, padding=1), torch.nn.ReLU())
            self.up2 = torch.nn.Sequential(torch.nn.Conv2d(24 + 16, 16, 3, padding=1), torch.nn.ReLU())
            self.up1 = torch.nn.Sequential(torch.nn.Conv2d(16 + 16, 16, 3, padding=1), torch.nn.ReLU())
            self.out = torch.nn.Conv2d(16, 4, 1)

        def forward(self, image):
            full, half, quarter, eighth = self.encoder(image)
            up = torch.nn.functional.interpolate
            x = self.up3(torch.cat([up(eighth, scale_factor=2.0), quarter], 1))
            x = self.up2(torch.cat([up(x, scale_factor=2.0), half], 1))
            x = self.up1(torch.cat([up(x, scale_factor=2.0), full], 1))
            return self.out(x)  # logits: square, circle, border, between

    return Detector, Segmenter


def train(model, inputs, targets, loss_fn, *, steps: int, name: str):
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        index = torch.randint(0, len(inputs), (32,), generator=generator)
        loss = loss_fn(model(inputs[index]), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"{name} step {step}: loss {loss.item():.4f}", flush=True)
    return model.eval()


def detector_loss(output, target):
    import torch

    positive = target[:, :, 4:].sum(2) > 0  # (N, 64)
    logits = output[:, 4:].transpose(1, 2)
    class_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[:, :, 4:], reduction="mean") * 20
    boxes = output[:, :4].transpose(1, 2)[positive]
    box_loss = (boxes - target[:, :, :4][positive]).abs().mean() / 4 if positive.any() else output.sum() * 0
    return class_loss + box_loss


def export(model, path: Path, output_names: list[str]) -> None:
    import torch

    axes = {"image": {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    torch.onnx.export(
        model, (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["image"], output_names=output_names,
        dynamic_axes=axes, opset_version=17, dynamo=False,
    )  # fmt: skip


def make_torch_models(train_images, train_objects) -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
    Detector, Segmenter = build_torch_models()
    as_input = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)  # noqa: E731

    letterbox_inputs = as_input([letterboxed(image) for image in train_images])
    box_targets = torch.from_numpy(np.stack([detector_targets(i, o) for i, o in zip(train_images, train_objects)]))
    detector = train(Detector(), letterbox_inputs, box_targets, detector_loss, steps=600, name="detector")

    class Wrapper(torch.nn.Module):
        """Holds the trained network as a submodule, so the export keeps its weights as initializers."""

        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

    class Yolo(Wrapper):
        def forward(self, image):
            raw = self.net(image)
            return torch.cat([raw[:, :4], torch.sigmoid(raw[:, 4:])], 1)

    class YoloV5(Wrapper):
        def forward(self, image):
            raw = self.net(image)
            probabilities = torch.sigmoid(raw[:, 4:])
            objectness = probabilities.amax(1, keepdim=True)
            given_object = probabilities / objectness.clamp_min(1e-12)
            return torch.cat([raw[:, :4], objectness, given_object], 1).transpose(1, 2)  # (N, anchors, 5 + classes)

    class Ssd(Wrapper):
        def forward(self, image):
            raw = self.net(image).transpose(1, 2)  # (N, 64, 6)
            centre, size = raw[:, :, :2], raw[:, :, 2:4]
            return torch.cat([centre - size / 2, centre + size / 2], 2) / SIZE, raw[:, :, 4:]

    class PostProcessed(Wrapper):
        def forward(self, image):
            raw = self.net(image).transpose(1, 2)
            scores, classes = torch.sigmoid(raw[:, :, 4:]).max(2)
            top, index = torch.topk(scores, 10, dim=1)
            boxes = torch.gather(raw[:, :, :4], 1, index[:, :, None].expand(-1, -1, 4))
            yxyx = torch.stack([
                boxes[..., 1] - boxes[..., 3] / 2, boxes[..., 0] - boxes[..., 2] / 2,
                boxes[..., 1] + boxes[..., 3] / 2, boxes[..., 0] + boxes[..., 2] / 2,
            ], 2) / SIZE  # fmt: skip
            return yxyx, top, (torch.gather(classes, 1, index) + 1).float()

    with torch.no_grad():
        export(Yolo(detector), MODELS_FOLDER / "dense_yolo.onnx", ["predictions"])
        export(YoloV5(detector), MODELS_FOLDER / "dense_yolov5.onnx", ["predictions"])
        export(Ssd(detector), MODELS_FOLDER / "dense_ssd.onnx", ["boxes", "scores"])
        export(PostProcessed(detector), MODELS_FOLDER / "dense_postprocessed.onnx", ["boxes", "scores", "classes"])

    resize_inputs = as_input([resized(image) for image in train_images])
    targets = torch.from_numpy(np.stack([segmentation_targets(i, o) for i, o in zip(train_images, train_objects)]))
    weights = torch.tensor([1.0, 1.0, 3.0, 1.0])[None, :, None, None]

    def weighted_loss(output, target):
        losses = torch.nn.functional.binary_cross_entropy_with_logits(output, target, reduction="none")
        return (losses * weights).mean()

    segmenter = train(Segmenter(), resize_inputs, targets, weighted_loss, steps=500, name="segmenter")

    class Instances(Wrapper):
        def forward(self, image):
            return torch.sigmoid(self.net(image))

    class Semantic(Wrapper):
        def forward(self, image):
            return self.net(image)[:, :2]

    with torch.no_grad():
        export(Instances(segmenter), MODELS_FOLDER / "dense_instances.onnx", ["probabilities"])
        export(Semantic(segmenter), MODELS_FOLDER / "dense_semantic.onnx", ["logits"])


def make_keras_unet(train_images, train_objects) -> None:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    down1 = keras.layers.Conv2D(12, 3, padding="same", activation="relu")(inputs)
    down2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(down1)
    down3 = keras.layers.Conv2D(24, 3, strides=2, padding="same", activation="relu")(down2)
    up2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(
        keras.layers.Concatenate()([keras.layers.UpSampling2D(2)(down3), down2])
    )
    up1 = keras.layers.Conv2D(12, 3, padding="same", activation="relu")(
        keras.layers.Concatenate()([keras.layers.UpSampling2D(2)(up2), down1])
    )
    outputs = keras.layers.Conv2D(2, 1, activation="sigmoid")(up1)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    x = np.stack([resized(image) for image in train_images]).astype(np.float32) / 255.0
    y = np.stack([segmentation_targets(i, o)[:2].transpose(1, 2, 0) for i, o in zip(train_images, train_objects)])
    model.fit(x, y, batch_size=32, epochs=4, verbose=2)
    model.save(MODELS_FOLDER / "dense_unet.h5")


def write_validation() -> None:
    rng = np.random.default_rng(1)
    images_folder = DATA_FOLDER / "images"
    images_folder.mkdir(parents=True, exist_ok=True)
    for old in images_folder.glob("*.png"):
        old.unlink()
    detection, semantic, instances = [], [], []
    for index in range(VALID_IMAGES):
        image, objects = random_scene(rng) if index else draw_scene(rng, height=48, width=72, objects=0)
        name = f"valid_{index:02d}.png"
        image.save(images_folder / name, optimize=True)
        boxes = [item["box"] for item in objects]
        row = {"image_path": name}
        for j, column in enumerate(("x_min", "y_min", "x_max", "y_max")):
            row[column] = json.dumps([box[j] for box in boxes])
        row["class_name"] = json.dumps([CLASS_NAMES[item["class"]] for item in objects])
        detection.append(row)
        present = sorted({item["class"] for item in objects})
        semantic.append({
            "image_path": name,
            "class_name": json.dumps([CLASS_NAMES[c] for c in present]),
            "rle_mask": json.dumps([
                encode_rle(np.any([o["mask"] for o in objects if o["class"] == c], axis=0)) for c in present
            ]),
        })  # fmt: skip
        instances.append({
            "image_path": name,
            "class_name": json.dumps([CLASS_NAMES[item["class"]] for item in objects]),
            "rle_mask": json.dumps([encode_rle(item["mask"]) for item in objects]),
        })  # fmt: skip
    pd.DataFrame(detection).to_csv(DATA_FOLDER / "detection.csv", index=False)
    pd.DataFrame(semantic).to_csv(DATA_FOLDER / "segmentation.csv", index=False)
    pd.DataFrame(instances).to_csv(DATA_FOLDER / "instances.csv", index=False)


def main() -> None:
    MODELS_FOLDER.mkdir(parents=True, exist_ok=True)
    write_validation()
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(TRAIN_IMAGES)]
    train_images, train_objects = [image for image, _ in scenes], [objects for _, objects in scenes]
    make_torch_models(train_images, train_objects)
    if "--no-keras" not in sys.argv:
        make_keras_unet(train_images, train_objects)


if __name__ == "__main__":
    main()
