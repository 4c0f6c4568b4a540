"""The Keras applications zoo: build each family with `weights=None`, convert it to ONNX, measure parity.

Each model is built at a small input size, its BatchNorm statistics calibrated on real images (so
that its outputs are not near-constant, as a random-init network's are), saved as `.h5`, converted
with `converters.keras_to_onnx` (random-batch parity check included), then the in-memory Keras
model and onnxruntime both score real images: max abs diff, max relative diff (to the logits'
scale) and top-1 agreement. No downloads: the real images are the ones scikit-learn and matplotlib
ship (`china.jpg`, `flower.jpg`, `grace_hopper.jpg`), cut into crops.

    python scripts/keras_zoo.py                  # the table of docs/fidelity.md: each family's smallest variant
    python scripts/keras_zoo.py --ci             # the set tests/converters/test_zoo.py converts by default
    python scripts/keras_zoo.py --all            # every variant, B0-B7 included (slow: hours on 2 cores)
    python scripts/keras_zoo.py --only ResNet50 VGG16 -o zoo.json

prints a Markdown table (the one in docs/fidelity.md) and, with -o, writes the rows as JSON.
tests/converters/test_zoo.py loads this file for `ZOO`, `real_images` and `measure`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Rows of the real-image batch: 3 pictures x 8 crops (4 corners-ish windows, whole, centre, 2 flips).
REAL_IMAGE_ROWS = 24
# Largest |logit| the classifier is scaled to on the real images: about a trained ImageNet
# classifier's (a random one's reach 50-300 once its BatchNorms are calibrated).
LOGIT_SCALE = 10.0


@dataclass(frozen=True, kw_only=True)
class ZooModel:
    """One `keras.applications` constructor at the size the zoo builds it.

    Attributes:
        family: the family's name in docs/fidelity.md.
        name: the constructor: in `keras.applications`, else in `keras.src.applications.<module>`
            (a family's generic builder, for a reduced-depth variant), or in `tf_keras.applications`.
        module: the applications submodule whose `preprocess_input` the model expects.
        size: input height and width (at least the application's minimum).
        options: extra constructor arguments (`alpha` for the MobileNets, depths and widths).
        tier: `ci`: converted by the default test run (tests/converters/test_zoo.py) and the table;
            `table`: the script's default set, the table of docs/fidelity.md, and the test with
            `PREDICT_ZOO=1`; `all`: the larger variants, `--all` and `PREDICT_ZOO=all` only.
        keras2: built and saved by Keras 2 (tf_keras) in a child process: Keras 3 has no RegNet,
            so RegNet files are Keras 2 files.
        note: what the label should say about a reduced variant.
    """

    family: str
    name: str
    module: str
    size: int
    options: dict[str, Any] = field(default_factory=dict)
    tier: str = "table"
    keras2: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        """`ResNet50 64px`, `MobileNetV2 a0.35 64px`: the row's name in the table."""
        alpha = f" a{self.options['alpha']}" if "alpha" in self.options else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.name}{alpha}{note} {self.size}px"


def _variants(
    family: str, module: str, names: list[str], size: int, *, tiers: tuple[str, ...] = ("table",)
) -> list[ZooModel]:
    """The first names get `tiers` in order, the rest are `all`."""
    return [
        ZooModel(family=family, name=name, module=module, size=size, tier=tiers[index] if index < len(tiers) else "all")
        for index, name in enumerate(names)
    ]


ZOO: list[ZooModel] = [
    ZooModel(
        family="ConvNeXt", name="ConvNeXt", module="convnext", size=64, tier="ci", note="depths 1-1-1-1, dims 16-128",
        options={"depths": [1, 1, 1, 1], "projection_dims": [16, 32, 64, 128], "drop_path_rate": 0.1,
                 "layer_scale_init_value": 0.5, "default_size": 64, "name": "convnext_reduced"},
    ),
    *_variants(
        "ConvNeXt", "convnext", ["ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge"], 64
    ),
    *_variants("EfficientNet", "efficientnet", [f"EfficientNetB{index}" for index in range(8)], 64, tiers=("ci",)),
    *_variants(
        "EfficientNetV2", "efficientnet_v2",
        ["EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
         "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L"],
        64, tiers=("ci",),
    ),
    ZooModel(family="MobileNet", name="MobileNet", module="mobilenet", size=64, options={"alpha": 0.25}, tier="ci"),
    ZooModel(family="MobileNet", name="MobileNet", module="mobilenet", size=128, options={"alpha": 1.0}, tier="all"),
    ZooModel(family="MobileNetV2", name="MobileNetV2", module="mobilenet_v2", size=64, options={"alpha": 0.35},
             tier="ci"),
    ZooModel(family="MobileNetV2", name="MobileNetV2", module="mobilenet_v2", size=128, options={"alpha": 1.0},
             tier="all"),
    ZooModel(family="MobileNetV3", name="MobileNetV3Small", module="mobilenet_v3", size=64, options={"alpha": 0.75},
             tier="ci"),
    ZooModel(family="MobileNetV3", name="MobileNetV3Large", module="mobilenet_v3", size=64, options={"alpha": 1.0}),
    *_variants("InceptionV3", "inception_v3", ["InceptionV3"], 75, tiers=("ci",)),
    *_variants("InceptionResNetV2", "inception_resnet_v2", ["InceptionResNetV2"], 75),
    *_variants("Xception", "xception", ["Xception"], 71),
    *_variants("DenseNet", "densenet", ["DenseNet121", "DenseNet169", "DenseNet201"], 64),
    *_variants("ResNet", "resnet", ["ResNet50", "ResNet101", "ResNet152"], 64),
    *_variants("ResNetV2", "resnet_v2", ["ResNet50V2", "ResNet101V2", "ResNet152V2"], 64),
    *_variants("NASNet", "nasnet", ["NASNetMobile", "NASNetLarge"], 64),
    *[
        ZooModel(family="RegNet", name=name, module="regnet", size=64, keras2=True,
                 tier="ci" if name == "RegNetX002" else "table" if name == "RegNetY002" else "all")
        for name in [
            "RegNetX002", "RegNetY002", "RegNetX004", "RegNetY004", "RegNetX008", "RegNetY008", "RegNetX016",
            "RegNetY016", "RegNetX032", "RegNetY032", "RegNetX040", "RegNetY040", "RegNetX064", "RegNetY064",
            "RegNetX080", "RegNetY080", "RegNetX120", "RegNetY120", "RegNetX160", "RegNetY160", "RegNetX320",
            "RegNetY320",
        ]
    ],
    *_variants("VGG", "vgg16", ["VGG16"], 32, tiers=("ci",)),
    ZooModel(family="VGG", name="VGG19", module="vgg19", size=32, tier="all"),
]  # fmt: skip


def real_images(size: int) -> np.ndarray:
    """`REAL_IMAGE_ROWS` real photographs as float32[N, size, size, 3] pixels in [0, 255].

    Crops of the three photographs scikit-learn and matplotlib ship, resized with Pillow's bilinear filter.
    """
    import matplotlib.cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    pictures = [Image.fromarray(array) for array in load_sample_images().images]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        pictures.append(Image.open(handle).convert("RGB"))
    rows = []
    for picture in pictures:
        width, height = picture.size
        side = min(width, height)
        boxes = [
            (0, 0, width, height),
            ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2),
            (0, 0, side // 2, side // 2),
            (width - side // 2, 0, width, side // 2),
            (0, height - side // 2, side // 2, height),
            (width - side // 2, height - side // 2, width, height),
        ]
        for box in boxes:
            rows.append(np.asarray(picture.crop(box).resize((size, size), Image.BILINEAR), dtype=np.float32))
        rows.append(rows[-5][:, ::-1])  # mirrored centre crop
        rows.append(rows[-5][::-1])  # upside-down whole picture
    return np.stack(rows[:REAL_IMAGE_ROWS])


def build(entry: ZooModel, calibration: np.ndarray, keras: Any = None) -> Any:
    """The application with random weights, calibrated on `calibration` (real images, preprocessed).

    With `weights=None` the moving means and variances are 0 and 1, so activations grow or vanish
    layer after layer and the logits end up near-constant: a parity check on them proves little.
    Every BatchNormalization layer is given `momentum` 0 for one training-mode pass over the
    images (its statistics become theirs), then its own momentum back. The classifier's kernel
    and bias are then scaled so that the largest |logit| on the images is `LOGIT_SCALE`, as a
    trained model's: the absolute part of the tolerance is about such a scale.
    """
    if keras is None:
        import keras
    keras.utils.set_random_seed(0)
    constructor = getattr(keras.applications, entry.name, None)
    if constructor is None:  # a family's generic builder, for a reduced variant
        constructor = getattr(importlib.import_module(f"keras.src.applications.{entry.module}"), entry.name)
    model = constructor(
        weights=None, input_shape=(entry.size, entry.size, 3), classifier_activation=None, **entry.options
    )
    norms = [layer for layer in _all_layers(model) if type(layer).__name__ == "BatchNormalization"]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(calibration, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    # The classifier: the last layer with a kernel (a Dense, or MobileNet's 1x1 Conv2D before a reshape).
    classifier = next(layer for layer in reversed(model.layers) if getattr(layer, "kernel", None) is not None)
    largest = float(np.abs(np.asarray(model(calibration, training=False))).max())
    if largest > 0:
        classifier.kernel.assign(classifier.kernel * (LOGIT_SCALE / largest))
        if classifier.bias is not None:
            classifier.bias.assign(classifier.bias * (LOGIT_SCALE / largest))
    return model


def _all_layers(model: Any) -> list[Any]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found


def preprocess(entry: ZooModel, images: np.ndarray, keras: Any = None) -> np.ndarray:
    """What the application expects: its own `preprocess_input` (identity where the model rescales itself)."""
    if keras is None:
        import keras

    module = getattr(keras.applications, entry.module)
    return np.asarray(module.preprocess_input(images.copy()), dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class ZooResult:
    """One row of the table: conversion time, parity on random and on real inputs."""

    family: str
    model: str
    parameters: int
    convert_seconds: float
    random_max_abs_diff: float  # the converter's own check, on its seeded random batch
    max_abs_diff: float  # on the real images, in-memory Keras vs onnxruntime
    max_rel_diff: float  # max_abs_diff / max |keras logits|
    max_abs_logit: float
    logit_spread: float  # largest std over the images of one logit: near 0 for a near-constant model
    top1_agreement: float
    failing_elements: int  # outside the converter's default tolerance on the real images


def measure(entry: ZooModel, folder: Path, images: np.ndarray | None = None) -> ZooResult:
    """Build, calibrate, save, convert and compare one model (see the module docstring).

    Raises:
        ConversionError: the converter refused the model.
    """
    import onnxruntime

    from converters.keras_to_onnx import compare_output, convert_keras_to_onnx

    images = real_images(entry.size) if images is None else images
    h5_path = folder / f"{entry.name}.h5"
    if entry.keras2:
        inputs, reference, parameters = _build_in_keras2(entry, images, folder)
    else:
        inputs = preprocess(entry, images)
        model = build(entry, inputs)
        reference = np.asarray(model(inputs, training=False))
        parameters = int(model.count_params())
        model.save(h5_path)
    started = time.perf_counter()
    report = convert_keras_to_onnx(h5_path, folder / f"{entry.name}.onnx")
    seconds = time.perf_counter() - started
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {report.input_names[0]: inputs})[0]
    parity = compare_output("logits", reference, got)
    return ZooResult(
        family=entry.family,
        model=entry.label,
        parameters=parameters,
        convert_seconds=round(seconds, 1),
        random_max_abs_diff=report.max_abs_diff,
        max_abs_diff=parity.max_abs_diff,
        max_rel_diff=parity.max_rel_diff,
        max_abs_logit=parity.max_abs_reference,
        logit_spread=float(np.std(reference, axis=0).max()),
        top1_agreement=parity.argmax_agreement if parity.argmax_agreement is not None else float("nan"),
        failing_elements=parity.failing_elements,
    )


def _build_in_keras2(entry: ZooModel, images: np.ndarray, folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Build, calibrate and save the model with tf_keras in a child process (TF_USE_LEGACY_KERAS=1).

    Returns:
        The preprocessed images, tf_keras' logits on them, and the parameter count.
    """
    np.save(folder / "images.npy", images)
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(Path(__file__).resolve()), "--keras2-build", entry.name, str(folder)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"tf_keras could not build {entry.name}: {completed.stderr.strip().splitlines()[-1:]}")
    with np.load(folder / "reference.npz") as arrays:
        return arrays["inputs"], arrays["logits"], int(arrays["parameters"])


def _keras2_child(name: str, folder: Path) -> None:
    """The child of `_build_in_keras2`: writes `<name>.h5` and `reference.npz` into `folder`."""
    import tf_keras

    entry = next(entry for entry in ZOO if entry.name == name)
    images = np.load(folder / "images.npy")
    inputs = preprocess(entry, images, keras=tf_keras) if hasattr(tf_keras.applications, entry.module) else images
    model = build(entry, inputs, keras=tf_keras)
    logits = np.asarray(model(inputs, training=False))
    model.save(folder / f"{name}.h5")
    np.savez(folder / "reference.npz", inputs=inputs, logits=logits, parameters=model.count_params())


def format_table(results: list[ZooResult]) -> str:
    """The Markdown table of docs/fidelity.md."""
    lines = [
        "| family | model | params | convert (s) | max abs diff | max rel diff | max abs logit | top-1 agreement |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row.family} | {row.model} | {row.parameters / 1e6:.1f} M | {row.convert_seconds:.1f} | "
            f"{row.max_abs_diff:.2g} | {row.max_rel_diff:.2g} | {row.max_abs_logit:.3g} | "
            f"{row.top1_agreement:.0%} ({REAL_IMAGE_ROWS} images) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Convert the chosen models, print the table, optionally write JSON; exit 1 if any was refused."""
    parser = argparse.ArgumentParser(prog="python scripts/keras_zoo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every variant, not only the default set")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="constructor names (e.g. ResNet50), any set")
    parser.add_argument("-o", "--output", type=Path, help="JSON file for the rows")
    parser.add_argument("--ci", action="store_true", help="only the set the default test run converts")
    parser.add_argument("--keras2-build", nargs=2, metavar=("NAME", "FOLDER"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if options.keras2_build:
        _keras2_child(options.keras2_build[0], Path(options.keras2_build[1]))
        return 0
    tiers = {"ci"} if options.ci else {"ci", "table", "all"} if options.all else {"ci", "table"}
    entries = [entry for entry in ZOO if entry.tier in tiers]
    if options.only:
        entries = [entry for entry in ZOO if entry.name in options.only]
    results, failures = [], []
    for entry in entries:
        with tempfile.TemporaryDirectory(prefix="keras_zoo_") as folder:
            try:
                result = measure(entry, Path(folder))
            except Exception as error:
                failures.append(f"{entry.label}: {error}")
                print(f"FAILED {entry.label}: {error}", file=sys.stderr, flush=True)
                continue
        results.append(result)
        print(json.dumps(asdict(result)), file=sys.stderr, flush=True)
        if options.output:
            options.output.write_text(json.dumps([asdict(row) for row in results], indent=1) + "\n")
    print(format_table(results))
    for failure in failures:
        print(f"refused: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
