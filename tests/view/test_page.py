"""`predict report RUN_DIR`: the HTML file, read back as a browser would get it (no browser here, see
test_report_browser.py): every picture inlined as a PNG, the plots of the problem type, the samples."""

from __future__ import annotations

import base64
import io
import shutil
from html.parser import HTMLParser

import pandas as pd
from PIL import Image

from predict.cli import main


class _Page(HTMLParser):
    """Collects `<img>` sources and alt texts, every `href`/`src`, and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append((attributes.get("src", ""), attributes.get("alt", "")))
        self.links.extend(value for name, value in attrs if name in ("href", "src") and value)

    def handle_data(self, data):
        self.text.append(data)


def read_page(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def decode_png(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:60]
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :], validate=True)))
    assert image.format == "PNG"
    image.load()
    return image


def test_classification_report_is_self_contained(classification_run, tmp_path, capsys):
    output = tmp_path / "page.html"
    assert main(["report", str(classification_run), "-o", str(output)]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    page = read_page(output)
    text = " ".join(page.text)
    # Nothing is loaded from elsewhere: every src/href is a data: URI.
    assert page.links and all(link.startswith("data:") for link in page.links)
    for uri, _ in page.images:
        assert min(decode_png(uri).size) > 10
    alts = [alt for _, alt in page.images]
    # Validation: metrics plots; test (no labels): distributions. 12 samples in each split.
    titles = [alt for alt in alts if not alt.startswith("img_")]
    assert titles[0].startswith("Confusion matrix") and titles[1:] == ["ROC curves", "Predicted classes", "Confidence"]
    assert sum(alt.startswith("img_") for alt in alts) == 24
    for name in (
        "validation split",
        "test split",
        "ROC_AUC",
        "LogLoss",
        "rows / s",
        "CPUExecutionProvider",
        "inference",
    ):
        assert name in text
    # Samples of the labelled split come worst first, with predicted and true class.
    csv = pd.read_csv(classification_run / "validation_predictions.csv", dtype=str, keep_default_na=False)
    p_true = [float(csv[f"pred_label_{label}"][i]) for i, label in enumerate(csv["label"])]
    worst = min(range(len(csv)), key=lambda i: (p_true[i], i))
    assert alts[2] == csv["image_path"][worst]
    assert "Sample images (worst first: lowest probability of the true class)" in text
    assert "problem_type: image_classification" in text  # the config as run


def test_regression_report_of_the_example(regression_example_run, capsys):
    assert main(["report", str(regression_example_run)]) == 0
    page = read_page(regression_example_run / "report.html")
    titles = [alt for _, alt in page.images if not alt.endswith(".png")]
    assert titles == ["Predicted vs actual", "Residuals"]
    for uri, _ in page.images:
        decode_png(uri)
    text = " ".join(page.text)
    assert "largest absolute error" in text and "MAE" in text and "R2" in text


def test_missing_input_image_is_shown_not_fatal(classification_run, image_folder, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(classification_run, run, ignore=shutil.ignore_patterns("onnx_cache"))
    # The report names the image folder; point it at a copy and take one image away.
    images = tmp_path / "images"
    shutil.copytree(image_folder, images)
    (images / "img_00.png").unlink()
    for split in ("validation", "test"):
        path = run / f"{split}_report.json"
        path.write_text(path.read_text().replace(str(image_folder), str(images)))
    assert main(["report", str(run), "--split", "test", "--samples", "3"]) == 0
    page = read_page(run / "report.html")
    text = " ".join(page.text)
    assert f"image not found: {images / 'img_00.png'}" in text
    assert "validation split" not in text
    assert sum(alt.startswith("img_") for _, alt in page.images) == 2
