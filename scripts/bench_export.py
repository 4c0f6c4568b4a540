"""fp32 vs fp16 vs int8 exported graphs of MobileNetV2 96x96 (docs/performance.md, `predict export`).

Needs the images of `scripts/make_benchmark_data.py OUT_DIR`. Its `mobilenetv2.h5` has random
weights and batch-norm statistics at their initial (mean 0, variance 1): its activations die out
and its softmax is a flat 0.1 for every image, nothing to agree or disagree on. This script first
sets every batch-norm layer's moving statistics to those of 256 benchmark images (one
training-mode pass), so the random network's probabilities differ from image to image. Then, for
fp16 and int8, `predict export` on the first `--rows` rows:
rows/s of the plain model (`session.run` on the loader's float32 batches), of the fp32 graph and of
the written graph (uint8 images in, probabilities out), and the agreement with the pipeline.

Usage: python scripts/bench_export.py OUT_DIR [--rows 512]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from predict.export.exporter import export_task
from predict.export.precision import ExportPrecision
from predict.task import load_config


def fitted_model(out: Path) -> Path:
    """`mobilenetv2_fitted.h5`: make_benchmark_data's MobileNetV2 with batch-norm statistics of its images."""
    target = out / "mobilenetv2_fitted.h5"
    if target.is_file():
        return target
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    frame = pd.read_csv(out / "frame.csv")
    pixels = np.stack([np.asarray(Image.open(out / "images" / name).convert("RGB")) for name in frame["image_path"]])
    model = keras.models.load_model(out / "mobilenetv2.h5", compile=False)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # the next training-mode pass sets the moving statistics to its batch's
    model((pixels[:256].astype(np.float32) - 127.5) / 127.5, training=True)
    model.save(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=512)
    options = parser.parse_args()
    out: Path = options.out.resolve()
    config = yaml.safe_load((out / "benchmark.yaml").read_text())
    config["model"] = fitted_model(out).name
    (out / "export.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    task = load_config(out / "export.yaml")
    reports = {
        precision: export_task(task, out / f"mobilenetv2_{precision}.onnx", precision=precision, rows=options.rows)
        for precision in (ExportPrecision.FP16, ExportPrecision.INT8)
    }
    first = reports[ExportPrecision.FP16]
    print(f"{first.rows} rows, batch size {task.runtime.batch_size}, CPU; rows/s measured within each export run")
    print(
        "| graph | file | rows/s plain model | rows/s fp32 graph | rows/s this graph | vs fp32 graph "
        "| max abs diff | argmax agreement |"
    )
    print("|---|---|---|---|---|---|---|---|")
    figures = first.parity.figures
    size = (out / "runs" / "onnx_cache").glob("mobilenetv2_fitted-*.onnx")
    print(
        f"| fp32 | {next(size).stat().st_size / 1e6:.1f} MB (the model) | | | | 1.00x | "
        f"{figures['predictions max abs diff']:.2g} | {figures['argmax agreement']:.4f} |"
    )
    for precision, report in reports.items():
        speed, figures = report.speed, report.precision_parity.figures
        lowered = speed[str(precision)]
        print(
            f"| {precision} | {report.path.stat().st_size / 1e6:.1f} MB | {speed['model']:.0f} | {speed['fp32']:.0f} | "
            f"{lowered:.0f} | {lowered / speed['fp32']:.2f}x | {figures['predictions max abs diff']:.2g} | "
            f"{figures['argmax agreement']:.4f} |"
        )
    for report in reports.values():
        for note in report.notes:
            print(f"note: {note}")


if __name__ == "__main__":
    main()
