"""`predict show` and `predict report` on the dense vision examples (object detection, semantic and
instance segmentation): the rows and the `--worst` order recomputed here from the CSV and the scored
dataframe with plain Python IoU, the page's pictures decoded as PNG, and the pages opened in Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from predict.cli import main
from predict.view.run import load_run
from predict.view.select import view_for
from tests.view.test_page import decode_png, read_page
from tests.view.test_report_browser import find_chromium, open_in_chromium, probe_counts
from tests.view.test_show import read_csv, show, table_rows

REPOSITORY = Path(__file__).resolve().parents[2]
# The semantic example's .h5 converts in ~12 s; its PyTorch export is the same task (see the config).
_SETS = {"image_semantic_segmentation": ["model=models/dense_semantic.onnx", "head.activation=sigmoid"]}
NAMES = ("image_object_detection", "image_semantic_segmentation", "image_instance_segmentation")


@pytest.fixture(scope="module")
def dense_runs(tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for name in NAMES:
        folder = tmp_path_factory.mktemp(name)
        sets = [argument for item in _SETS.get(name, []) for argument in ("--set", item)]
        config = REPOSITORY / "configs" / f"{name}.yaml"
        assert main(["--config", str(config), "--quiet", "--set", f"output.dir={folder}", *sets]) == 0
        folders[name] = folder
    return folders


def _dataframe(folder: Path) -> pd.DataFrame:
    report = json.loads((folder / "validation_report.json").read_text())
    return pd.read_csv(report["task"]["data"]["dataframe"], dtype=str, keep_default_na=False)


def _pixels(rle: str) -> set[int]:
    numbers = [int(number) for number in rle.split()]
    return {pixel for start, length in zip(numbers[0::2], numbers[1::2]) for pixel in range(start, start + length)}


def _box_iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union > 0 else 0.0


def _set_iou(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _mean_best(truths, predictions, iou) -> float:
    """Mean over true (class, shape) of the best IoU with a same-class prediction; 1/0 without truths."""
    if not truths:
        return 1.0 if not predictions else 0.0
    return sum(
        max([iou(shape, other) for name, other in predictions if name == true_name], default=0.0)
        for true_name, shape in truths
    ) / len(truths)


def _scores(name: str, folder: Path) -> list[float]:
    """Per view row (image), the score `--worst` sorts by, lowest first."""
    csv = read_csv(folder)
    lists = lambda frame, column: [json.loads(cell) if cell else [] for cell in frame[column]]  # noqa: E731
    if name == "image_semantic_segmentation":
        scores = []
        for start in range(0, len(csv), 2):
            both = either = 0
            for row in (start, start + 1):
                true, predicted = _pixels(csv["rle_mask"][row]), _pixels(csv["pred_rle_mask"][row])
                both, either = both + len(true & predicted), either + len(true | predicted)
            scores.append(both / either if either else 1.0)
        return scores
    truth = _dataframe(folder)
    if name == "image_object_detection":

        def boxes(frame, row):
            return [
                list(box)
                for box in zip(*(lists(frame, column)[row] for column in ("x_min", "y_min", "x_max", "y_max")))
            ]

        return [
            _mean_best(
                list(zip(lists(truth, "class_name")[row], boxes(truth, row))),
                list(zip(lists(csv, "class_name")[row], boxes(csv, row))),
                _box_iou,
            )
            for row in range(len(csv))
        ]
    return [
        _mean_best(
            [
                (label, _pixels(rle))
                for label, rle in zip(lists(truth, "class_name")[row], lists(truth, "rle_mask")[row])
            ],
            [
                (label, _pixels(rle))
                for label, rle in zip(lists(csv, "class_name")[row], lists(csv, "instance_rle")[row])
            ],
            _set_iou,
        )
        for row in range(len(csv))
    ]


_COLUMNS = {
    "image_object_detection": ["boxes", "true boxes", "best IoU", "predicted"],
    "image_semantic_segmentation": ["actual", "predicted", "IoU"],
    "image_instance_segmentation": ["instances", "true instances", "best IoU", "predicted"],
}


@pytest.mark.parametrize("name", NAMES)
def test_show_rows_and_worst_order(name, dense_runs, capsys):
    folder = dense_runs[name]
    scores = _scores(name, folder)
    view = view_for(load_run(folder, "validation"))
    assert list(view.table().columns) == _COLUMNS[name]
    assert view.row_count == len(scores) == 16
    code, out, _ = show(capsys, folder, "--worst", "--rows", 0)
    assert code == 0
    rows = table_rows(out)
    worst = sorted(range(len(scores)), key=lambda row: scores[row])
    assert [int(row[0]) for row in rows] == worst
    # The score column, rounded as printed, is the score recomputed here.
    score_cell = _COLUMNS[name].index("IoU" if name == "image_semantic_segmentation" else "best IoU") + 2
    assert [float(row[score_cell]) for row in rows] == pytest.approx([scores[row] for row in worst], abs=6e-4)
    assert min(scores) < 0.9  # the example models make mistakes: the order is not a tie
    code, out, _ = show(capsys, folder, "--rows", 3)
    assert code == 0 and [row[:2] for row in table_rows(out)] == [
        ["0", "valid_00.png"],
        ["1", "valid_01.png"],
        ["2", "valid_02.png"],
    ]
    if name != "image_semantic_segmentation":
        csv = read_csv(folder)
        counted = "instance_rle" if name == "image_instance_segmentation" else "x_min"
        assert [int(row[2]) for row in table_rows(out)] == [len(json.loads(csv[counted][row])) for row in range(3)]


# Plot titles (image alt texts) and markers of the samples in the HTML.
_PAGES = {
    "image_object_detection": ("Boxes per class and best IoU", "mean best IoU"),
    "image_semantic_segmentation": ("IoU per class and per image", "(IoU "),
    "image_instance_segmentation": ("Instances per class and confidence", "mean best IoU"),
}


@pytest.mark.parametrize("name", NAMES)
def test_report_page(name, dense_runs, tmp_path):
    folder = dense_runs[name]
    output = tmp_path / "report.html"
    assert main(["report", str(folder), "-o", str(output), "--samples", "4"]) == 0
    html = output.read_text(encoding="utf-8")
    page = read_page(output)
    assert page.links and all(link.startswith("data:") for link in page.links)
    for uri, _ in page.images:
        decode_png(uri)
    title, marker = _PAGES[name]
    alts = [alt for _, alt in page.images]
    scores = _scores(name, folder)
    worst = sorted(range(len(scores)), key=lambda row: scores[row])
    assert alts == [title, *(f"valid_{row:02d}.png" for row in worst[:4])]
    # Drawn samples are scaled up from the few dozen pixels of the example images.
    assert all(max(decode_png(uri).size) >= 240 for uri, alt in page.images if alt.endswith(".png"))
    text = " ".join(page.text)
    assert "Sample images (worst first:" in text and "Rows (worst first:" in text and "Metrics" in text
    assert '<div class="samples large">' in html and html.count('<figure class="sample') == 4
    assert marker in html


def test_unlabelled_detection_and_moved_dataframe(dense_runs, tmp_path, capsys):
    """Without the scored dataframe the detection view has no actual values: predictions in input
    order, and `--worst` says why it cannot rank."""
    run = tmp_path / "run"
    shutil.copytree(dense_runs["image_object_detection"], run)
    report = run / "validation_report.json"
    payload = json.loads(report.read_text())
    payload["task"]["data"]["dataframe"] = str(tmp_path / "moved.csv")
    report.write_text(json.dumps(payload))
    view = view_for(load_run(run, "validation"))
    assert not view.labelled and list(view.table().columns) == ["boxes", "predicted"]
    code, _, err = show(capsys, run, "--worst")
    assert code == 2 and "--worst needs actual values" in err
    assert main(["report", str(run), "--samples", "2"]) == 0
    text = " ".join(read_page(run / "report.html").text)
    assert "Sample images (no labels: in input order)" in text
    assert f"the scored dataframe {tmp_path / 'moved.csv'} is not there any more" in text


def test_changed_dataframe_is_named(dense_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(dense_runs["image_instance_segmentation"], run)
    frame = _dataframe(run)
    changed = tmp_path / "changed.csv"
    frame.iloc[:5].to_csv(changed, index=False)
    report = run / "validation_report.json"
    payload = json.loads(report.read_text())
    payload["task"]["data"]["dataframe"] = str(changed)
    report.write_text(json.dumps(payload))
    code, _, err = show(capsys, run)
    assert code == 2
    assert "changed.csv: has 5 rows but" in err and "the dataframe changed since the run" in err


@pytest.mark.skipif(
    find_chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run does it)"
)
def test_dense_reports_load_cleanly_in_chromium(dense_runs, tmp_path):
    for name in NAMES:
        page = tmp_path / f"{name}.html"
        assert main(["report", str(dense_runs[name]), "-o", str(page), "--samples", "4"]) == 0
        dom, console = open_in_chromium(page, tmp_path)
        assert console == [], name
        images = page.read_text(encoding="utf-8").count("<img ")
        assert probe_counts(dom) == (images, 0) == (1 + 4, 0), name
        assert _PAGES[name][0] in dom
