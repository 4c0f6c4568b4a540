"""Detection and segmentation end to end on the committed examples: exact files, metrics, disk-backed masks."""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from PIL import Image
from pycocotools import mask as mask_utils

from predict.cli import main
from predict.data.image import ImageBatches, image_input_from
from predict.heads._masks import decode_rle
from predict.runners.base import TensorSpec
from predict.task import load_config
from predict.writers.checkpoint import load_arrays
from predict.writers.row_arrays import DiskRows

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DATA = CONFIGS / "data" / "dense_shapes"


def run(config: str, out: Path, *overrides: str) -> Path:
    sets = [item for override in (f"output.dir={out}", *overrides) for item in ("--set", override)]
    assert main(["--config", str(CONFIGS / config), "--quiet", *sets]) == 0
    return out


def load_pkl(out: Path, split: str = "validation") -> dict:
    with (out / f"{split}_raw_predictions.pkl").open("rb") as handle:
        return pickle.load(handle)


def split_overrides(tmp_path: Path, frame_name: str, split: str) -> tuple[str, ...]:
    """`--set`s scoring the committed frame as `validation`, as `test`, or as `test` without its label columns."""
    if split == "validation":
        return ()
    frame = pd.read_csv(DATA / frame_name, dtype=str, keep_default_na=False)
    if split == "test":
        frame = frame.drop(columns=["class_name", "rle_mask"])
    frame.to_csv(tmp_path / frame_name, index=False)
    return ("data.split=test", f"data.dataframe={tmp_path / frame_name}", f"data.data_folder={DATA / 'images'}")


def coco_stats(ground_truth: list[dict], results: list[dict], images: int, iou_type: str) -> tuple[float, float]:
    """pycocotools, called here on its own: the reference the metrics file must match."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": [{"id": i, "height": 1, "width": 1} for i in range(images)],
                         "categories": [{"id": 1}, {"id": 2}], "annotations": ground_truth}  # fmt: skip
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1]), float(evaluation.stats[0])


def test_object_detection_files_and_map_match_pycocotools(tmp_path):
    out = run("image_object_detection.yaml", tmp_path)
    frame = pd.read_csv(DATA / "detection.csv", dtype=str, keep_default_na=False)
    raw = load_pkl(out)
    assert list(raw) == ["boxes", "confidences", "classes", "image_path"]
    assert raw["boxes"].shape == (len(frame), 100, 4) and raw["boxes"].dtype == np.float32
    assert raw["confidences"].shape == (len(frame), 100) and raw["classes"].shape == (len(frame), 100)
    assert set(raw["classes"].ravel()) <= {"square", "circle", ""}
    csv = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["image_path", "x_min", "y_min", "x_max", "y_max", "confidence", "class_name"]
    sizes = [Image.open(DATA / "images" / name).size for name in frame["image_path"]]
    for row, (width, height) in enumerate(sizes):
        shown = raw["confidences"][row] > 0.5
        assert json.loads(csv["x_max"][row]) == pytest.approx(
            np.round(raw["boxes"][row, shown, 2].astype(float), 2).tolist()
        )
        assert (raw["boxes"][row, :, 2] <= width).all() and (raw["boxes"][row, :, 3] <= height).all()
    assert csv["class_name"][0] == "[]"  # image 0 has no shape
    ground_truth, results = [], []
    for row in range(len(frame)):
        boxes = zip(*(json.loads(frame[column][row]) for column in ("x_min", "y_min", "x_max", "y_max", "class_name")))
        for x0, y0, x1, y1, name in boxes:
            ground_truth.append({"id": len(ground_truth) + 1, "image_id": row, "category_id": 1 + (name == "circle"),
                                 "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                 "iscrowd": 0})  # fmt: skip
        for box, score, name in zip(raw["boxes"][row], raw["confidences"][row], raw["classes"][row]):
            if name:
                results.append({"image_id": row, "category_id": 1 + (name == "circle"), "score": float(score),
                                "bbox": [float(box[0]), float(box[1]),
                                         float(box[2] - box[0]), float(box[3] - box[1])]})  # fmt: skip
    at_50, at_50_95 = coco_stats(ground_truth, results, len(frame), "bbox")
    metrics = json.loads((out / "validation_metrics.json").read_text())
    assert metrics == {"mAP": pytest.approx(at_50), "mAP@0.5:0.95": pytest.approx(at_50_95)}
    assert metrics["mAP"] > 0.5  # the detector was trained: the metric means something


def test_detection_rows_on_disk_read_a_block_at_a_time_give_the_same_files(tmp_path, monkeypatch):
    # Boxes, confidences and class ids go to disk as batches arrive (Head.rows_on_disk); the CSV, the pkl's
    # class names and the metrics read them back a block of rows at a time. Blocks of 4 rows, a row that
    # cannot be read (its metrics skip it as they read), against the same run read in one block.
    frame = pd.read_csv(DATA / "detection.csv", dtype=str, keep_default_na=False)
    frame.loc[5, "image_path"] = "missing.png"
    frame.to_csv(tmp_path / "frame.csv", index=False)
    sets = (f"data.dataframe={tmp_path / 'frame.csv'}", f"data.data_folder={DATA / 'images'}", "data.on_error=skip",
            "runtime.batch_size=3", "output.checkpoint_rows=5", "output.write_npz=true")  # fmt: skip
    whole = run("image_object_detection.yaml", tmp_path / "whole", *sets)
    monkeypatch.setattr("predict.writers.row_arrays.BLOCK_ROWS", 4)
    monkeypatch.setattr("predict.heads.base.RowsByBlock.BLOCK_ROWS", 4)
    monkeypatch.setattr("predict.writers.csv.CSV_CHUNK_ROWS", 4)
    blocks = run("image_object_detection.yaml", tmp_path / "blocks", *sets)
    for name in ("validation_predictions.csv", "validation_metrics.json"):
        assert (blocks / name).read_bytes() == (whole / name).read_bytes()
    raw, reference = load_pkl(blocks), load_pkl(whole)
    assert list(raw) == ["boxes", "confidences", "classes", "image_path"]
    for key in raw:
        assert type(raw[key]) is np.ndarray
        assert_array_equal(raw[key], reference[key])
    assert raw["classes"].shape == (len(frame), 100) and raw["classes"][0].tolist() == [""] * 100
    assert len({id(name) for name in raw["classes"].ravel()}) == 3  # "square", "circle", "": one object each
    assert np.isnan(raw["boxes"][5]).all() and (raw["classes"][5] == "").all()
    with np.load(whole / "validation_raw_predictions.npz") as npz:
        assert_array_equal(npz["boxes"], raw["boxes"])
    csv = pd.read_csv(blocks / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert csv["class_name"][5] == "" and csv["class_name"][4] != ""
    assert json.loads((blocks / "validation_metrics.json").read_text())["mAP"] > 0.5
    assert pd.read_csv(blocks / "validation_errors.csv")["row"].tolist() == [5]


def test_instances_left_in_the_checkpoint_files_give_the_files_of_a_run_in_memory(tmp_path, monkeypatch):
    # Instances stay in the chunk files (Head.rows_on_disk, a RowArrays of JSON parts); the CSV's columns are made
    # from them a block at a time, the pkl and the metrics read them chunk by chunk. Chunks of 2 rows and blocks of 3,
    # a row that cannot be read, against one chunk held in memory.
    frame = pd.read_csv(DATA / "instances.csv", dtype=str, keep_default_na=False)
    frame.loc[2, "image_path"] = "missing.png"
    frame.to_csv(tmp_path / "frame.csv", index=False)
    sets = (f"data.dataframe={tmp_path / 'frame.csv'}", f"data.data_folder={DATA / 'images'}", "data.on_error=skip",
            "output.write_npz=true")  # fmt: skip
    in_memory = run("image_instance_segmentation.yaml", tmp_path / "memory", *sets)
    monkeypatch.setattr("predict.heads.base.RowsByBlock.BLOCK_ROWS", 3)
    monkeypatch.setattr("predict.writers.csv.CSV_CHUNK_ROWS", 3)
    chunked = run(
        "image_instance_segmentation.yaml",
        tmp_path / "chunked",
        *sets,
        "runtime.batch_size=1",
        "output.checkpoint_rows=2",
    )
    for name in ("validation_predictions.csv", "validation_metrics.json", "validation_raw_predictions.npz"):
        assert (chunked / name).read_bytes() == (in_memory / name).read_bytes(), name
    raw, reference = load_pkl(chunked), load_pkl(in_memory)
    assert raw["confidences"] == reference["confidences"]
    assert any(any(row.values()) for row in raw["confidences"])  # instances were found, not only empty rows
    for got, expected in zip(raw["instance_predictions"], reference["instance_predictions"], strict=True):
        assert_array_equal(got, expected)
    csv = pd.read_csv(chunked / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert csv["instance_rle"][2] == "" and (csv["instance_rle"].str.len() > 2).any()
    assert json.loads((chunked / "validation_metrics.json").read_text())["mAP"] > 0


@pytest.mark.parametrize(
    "overrides",
    [
        (
            "model=models/dense_ssd.onnx",
            "head.layout=ssd",
            "head.box_format=xyxy",
            "head.normalized_boxes=true",
            "head.score_activation=sigmoid",
        ),
        (
            "model=models/dense_postprocessed.onnx",
            "head.layout=boxes_scores_classes",
            "head.box_format=yxyx",
            "head.normalized_boxes=true",
            "head.first_class_id=1",
        ),
        ("model=models/dense_yolov5.onnx", "head.layout=yolov5"),
    ],
    ids=["ssd", "postprocessed", "yolov5"],
)
def test_other_detection_layouts_of_the_same_network(tmp_path, overrides):
    reference = json.loads(
        (run("image_object_detection.yaml", tmp_path / "yolo") / "validation_metrics.json").read_text()
    )
    metrics = json.loads(
        (run("image_object_detection.yaml", tmp_path / "other", *overrides) / "validation_metrics.json").read_text()
    )
    assert metrics["mAP"] == pytest.approx(reference["mAP"], abs=0.15)


def test_semantic_segmentation_files_and_metrics(tmp_path):
    out = run(
        "image_semantic_segmentation.yaml", tmp_path, "model=models/dense_semantic.onnx", "head.activation=sigmoid"
    )
    frame = pd.read_csv(DATA / "segmentation.csv", dtype=str, keep_default_na=False)
    raw = load_pkl(out)
    assert list(raw) == ["masks", "original_image_shapes", "rle_predictions", "class_names", "image_path"]
    assert raw["masks"].dtype == np.float16 and raw["masks"].shape == (len(frame), 2, 64, 64)
    assert raw["rle_predictions"].shape == (len(frame), 2) and raw["class_names"] == ["square", "circle"]
    csv = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["image_path", "class_name", "rle_mask", "pred_rle_mask"] and len(csv) == 2 * len(frame)
    intersection = np.zeros(2)
    union = np.zeros(2)
    for row in range(len(frame)):
        height, width = raw["original_image_shapes"][row]
        assert (width, height) == Image.open(DATA / "images" / frame["image_path"][row]).size
        truth = dict(zip(json.loads(frame["class_name"][row]), json.loads(frame["rle_mask"][row])))
        for index, name in enumerate(("square", "circle")):
            assert csv["class_name"][2 * row + index] == name and csv["rle_mask"][2 * row + index] == truth.get(
                name, ""
            )
            predicted = decode_rle(csv["pred_rle_mask"][2 * row + index], (height, width))
            true = decode_rle(truth.get(name, ""), (height, width))
            intersection[index] += (predicted & true).sum()
            union[index] += (predicted | true).sum()
    metrics = json.loads((out / "validation_metrics.json").read_text())
    assert metrics["IoU_square"] == pytest.approx(intersection[0] / union[0])
    assert metrics["IoU"] == pytest.approx((intersection / union).mean()) and metrics["IoU"] > 0.5


@pytest.mark.parametrize(
    ("split", "columns"),
    [
        ("validation", ["image_path", "class_name", "rle_mask", "pred_rle_mask"]),
        ("test-labelled", ["image_path", "class_name", "rle_mask", "pred_rle_mask"]),
        # No label columns: class_id first, no true masks, and still pred_{rle_mask column}, not pred_mask.
        ("test", ["class_id", "image_path", "pred_rle_mask"]),
    ],
)
def test_semantic_segmentation_columns_and_keys_on_both_splits(tmp_path, split, columns):
    overrides = split_overrides(tmp_path, "segmentation.csv", split)
    model = ("model=models/dense_semantic.onnx", "head.activation=sigmoid")
    out = run("image_semantic_segmentation.yaml", tmp_path / "out", *model, *overrides)
    name = split.split("-")[0]
    frame = pd.read_csv(DATA / "segmentation.csv", dtype=str, keep_default_na=False)
    csv = pd.read_csv(out / f"{name}_predictions.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == columns
    assert csv["image_path"].tolist() == np.repeat(frame["image_path"].to_numpy(), 2).tolist()
    raw = load_pkl(out, name)
    assert list(raw) == ["masks", "original_image_shapes", "rle_predictions", "class_names", "image_path"]
    assert type(raw["masks"]) is np.ndarray and raw["masks"].shape == (len(frame), 2, 64, 64)
    assert raw["image_path"].tolist() == frame["image_path"].tolist()
    assert csv["pred_rle_mask"].tolist() == raw["rle_predictions"].ravel().tolist()
    notes = json.loads((out / f"{name}_report.json").read_text())["notes"]
    assert any(note.startswith("masks are float16") for note in notes)


def test_semantic_rles_from_runs_in_the_checkpoint_files_are_those_of_a_run_in_memory(tmp_path):
    # Checkpoint chunks of 2 rows: each row's runs are read back from the chunk files (RowArrays) by block.
    model = ("model=models/dense_semantic.onnx", "head.activation=sigmoid", "output.write_npz=true")
    in_memory = run("image_semantic_segmentation.yaml", tmp_path / "memory", *model)
    chunked = run(
        "image_semantic_segmentation.yaml",
        tmp_path / "chunked",
        *model,
        "runtime.batch_size=1",
        "output.checkpoint_rows=2",
    )
    raw = load_pkl(chunked)
    assert raw["rle_predictions"].dtype == object and raw["rle_predictions"].shape == (16, 2)
    assert_array_equal(raw["rle_predictions"], load_pkl(in_memory)["rle_predictions"])
    assert any(rle for rle in raw["rle_predictions"].ravel())  # masks predicted, not only empty ones
    from_npz = load_arrays(chunked / "validation_raw_predictions.npz")["rle_predictions"]
    assert [list(row) for row in from_npz] == raw["rle_predictions"].tolist()
    csv = pd.read_csv(chunked / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert csv["pred_rle_mask"].tolist() == raw["rle_predictions"].ravel().tolist()
    assert (chunked / "validation_predictions.csv").read_bytes() == (
        in_memory / "validation_predictions.csv"
    ).read_bytes()


@pytest.fixture(scope="module")
def wide_segmenter(tmp_path_factory) -> Path:
    """A 128x128 two-class segmenter: 64 KiB of float16 masks a row, enough to go to disk."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1)).eval()
    path = tmp_path_factory.mktemp("wide") / "wide.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 128, 128),), str(path), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    return path


def test_masks_on_disk_are_pickled_as_arrays(tmp_path, wide_segmenter):
    # 64 KiB of masks a row: they go to disk batch by batch, the path whose masks used to leave the
    # pkl as a file name (output.pkl_array_limit_mb); now the pkl holds them, read from that file.
    out = tmp_path / "out"
    out.mkdir()
    (out / "validation_masks.npy").write_bytes(b"left by an earlier version")
    model = (f"model={wide_segmenter}", "preprocessing.image_size=[128, 128]", "head.activation=sigmoid")
    sets = ("runtime.batch_size=3", "output.checkpoint_rows=5", "output.write_npz=true")
    run("image_semantic_segmentation.yaml", out, *model, *sets)
    raw = load_pkl(out)
    assert type(raw["masks"]) is np.ndarray and raw["masks"].dtype == np.float16
    assert raw["masks"].shape == (16, 2, 128, 128)
    with np.load(out / "validation_raw_predictions.npz") as npz:  # the same memmap, written by numpy's own writer
        assert_array_equal(raw["masks"], npz["masks"])
    assert raw["masks"].min() > 0 and raw["masks"].max() < 1  # sigmoid probabilities in every row, none left blank
    with zipfile.ZipFile(out / "validation_predictions.zip") as archive:
        assert sorted(archive.namelist()) == ["validation_predictions.csv", "validation_raw_predictions.pkl"]
        assert archive.read("validation_raw_predictions.pkl") == (out / "validation_raw_predictions.pkl").read_bytes()
    assert not list(out.glob("*.npy")) and not (out / ".validation.partial").exists()


def test_removed_pkl_array_limit_says_why(tmp_path, capsys):
    sets = ["--set", f"output.dir={tmp_path}", "--set", "output.pkl_array_limit_mb=0"]
    assert main(["--config", str(CONFIGS / "image_semantic_segmentation.yaml"), "--quiet", *sets]) == 2
    assert "output.pkl_array_limit_mb: removed: every array is in the pkl now" in capsys.readouterr().err


def test_disk_rows_resume_and_unreadable_rows(tmp_path):
    first = DiskRows(tmp_path, rows=6)
    values = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], (6, 300, 100)).copy()
    small = np.arange(6)
    kept = first.take({"big": values[:2], "small": small[:2]}, start=0, valid=np.array([True, False]))
    assert list(kept) == ["small"]
    first.close()
    resumed = DiskRows(tmp_path, rows=6)  # a resumed run reopens the file
    resumed.take({"big": values[2:], "small": small[2:]}, start=2, valid=np.ones(4, dtype=bool))
    arrays = resumed.close()
    assert arrays["big"][0].min() == 0 and np.isnan(arrays["big"][1]).all()
    assert_array_equal(arrays["big"][2:], values[2:])
    with pytest.raises(
        ValueError, match=r"holds float32\[6, 300, 100\], not float64\[6, 300, 100\]; run with --overwrite"
    ):
        DiskRows(tmp_path, rows=6).take({"big": values.astype(np.float64)}, start=0, valid=np.ones(6, dtype=bool))


def test_instance_segmentation_files_and_mask_map_match_pycocotools(tmp_path):
    out = run("image_instance_segmentation.yaml", tmp_path)
    frame = pd.read_csv(DATA / "instances.csv", dtype=str, keep_default_na=False)
    raw = load_pkl(out)
    assert list(raw) == ["raw_probabilities", "instance_predictions", "confidences", "class_names", "image_path"]
    assert raw["raw_probabilities"].shape == (len(frame), 4, 64, 64) and raw["raw_probabilities"].dtype == np.float16
    assert raw["instance_predictions"].dtype == object  # the images differ in size
    csv = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["image_path", "class_name", "instance_rle", "confidence"]
    ground_truth, results = [], []
    for row in range(len(frame)):
        instances = raw["instance_predictions"][row]
        shape = instances.shape[:2]
        assert (shape[1], shape[0]) == Image.open(DATA / "images" / frame["image_path"][row]).size
        for name, rle in zip(json.loads(frame["class_name"][row]), json.loads(frame["rle_mask"][row])):
            encoded = mask_utils.encode(np.asfortranarray(decode_rle(rle, shape).astype(np.uint8)))
            ground_truth.append({"id": len(ground_truth) + 1, "image_id": row, "category_id": 1 + (name == "circle"),
                                 "iscrowd": 0, "segmentation": encoded, "area": float(mask_utils.area(encoded)),
                                 "bbox": mask_utils.toBbox(encoded).tolist()})  # fmt: skip
        names, rles, scores = (json.loads(csv[column][row]) for column in ("class_name", "instance_rle", "confidence"))
        for index, name in enumerate(("square", "circle")):
            for number, confidence in raw["confidences"][row][name].items():
                mask = instances[..., index] == number
                assert rles[names.index(name) + number - 1] is not None
                predicted_rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                results.append(
                    {"image_id": row, "category_id": index + 1, "score": confidence, "segmentation": predicted_rle}
                )
        assert len(names) == len(rles) == len(scores)
    at_50, at_50_95 = coco_stats(ground_truth, results, len(frame), "segm")
    metrics = json.loads((out / "validation_metrics.json").read_text())
    assert metrics == {"mAP": pytest.approx(at_50, abs=1e-3), "mAP@0.5:0.95": pytest.approx(at_50_95, abs=1e-3)}
    assert metrics["mAP"] > 0.3


@pytest.fixture(scope="module")
def mask_rcnn_model(tmp_path_factory) -> Path:
    """A Mask R-CNN-layout stand-in for the 64x64 examples: the same two detections on every image,
    a square (class 0) and a less sure circle (class 1), with 28x28 box-relative masks."""
    import torch

    class Detections(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("boxes", torch.tensor([[8.0, 8.0, 40.0, 40.0], [30.0, 20.0, 60.0, 50.0]]))
            self.register_buffer("scores", torch.tensor([0.9, 0.6]))
            self.register_buffer("classes", torch.tensor([0.0, 1.0]))
            self.register_buffer("masks", torch.full((2, 1, 28, 28), 0.8))

        def forward(self, image):
            zero = image[:, :1, 0, 0].unsqueeze(-1) * 0  # (batch, 1, 1): the batch axis for the constants
            masks = (zero[..., None, None] + self.masks).reshape(-1, 2, 1, 28, 28)
            return zero + self.boxes, zero[..., 0] + self.scores, zero[..., 0] + self.classes, masks

    path = tmp_path_factory.mktemp("mask_rcnn") / "mask_rcnn.onnx"
    torch.onnx.export(
        Detections().eval(), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["image"],
        output_names=["boxes", "scores", "classes", "masks"], opset_version=17, dynamo=False,
        dynamic_axes={name: {0: "batch"} for name in ("image", "boxes", "scores", "classes", "masks")},
    )  # fmt: skip
    return path


@pytest.mark.parametrize("split", ["validation", "test-labelled", "test"])
@pytest.mark.parametrize("layout", ["h2o", "mask_rcnn"])
def test_instance_segmentation_columns_and_keys_on_both_splits(tmp_path, mask_rcnn_model, layout, split):
    overrides = split_overrides(tmp_path, "instances.csv", split)
    if layout == "mask_rcnn":
        overrides += (f"model={mask_rcnn_model}", "head.layout=mask_rcnn")
    out = run("image_instance_segmentation.yaml", tmp_path / "out", *overrides)
    name = split.split("-")[0]
    frame = pd.read_csv(DATA / "instances.csv", dtype=str, keep_default_na=False)
    csv = pd.read_csv(out / f"{name}_predictions.csv", dtype=str, keep_default_na=False)
    # Exactly these, in this order: the true rle_mask is not kept beside the predicted class names.
    assert list(csv.columns) == ["image_path", "class_name", "instance_rle", "confidence"]
    assert csv["image_path"].tolist() == frame["image_path"].tolist()
    raw = load_pkl(out, name)
    assert list(raw) == ["raw_probabilities", "instance_predictions", "confidences", "class_names", "image_path"]
    assert type(raw["raw_probabilities"]) is np.ndarray and raw["raw_probabilities"].shape == (len(frame), 4, 64, 64)
    assert raw["raw_probabilities"].dtype == np.float16 and raw["image_path"].tolist() == frame["image_path"].tolist()
    for row in range(len(frame)):
        names = json.loads(csv["class_name"][row])
        assert names == [name for name, ids in raw["confidences"][row].items() for _ in ids]
    notes = json.loads((out / f"{name}_report.json").read_text())["notes"]
    assert any(note.startswith("raw_probabilities are float16") for note in notes)
    if layout == "mask_rcnn":
        assert any(note.startswith("raw_probabilities (head.layout mask_rcnn)") for note in notes)
        # Class channels: the detections' 0.8 masks in their boxes, on every image (the model ignores the pixels).
        assert_array_equal(raw["raw_probabilities"][:, 0, 8:40, 8:40], np.float16(0.8))
        assert_array_equal(raw["raw_probabilities"][:, 1, 20:50, 30:60], np.float16(0.8))
        assert not raw["raw_probabilities"][:, 0, 40:].any() and not raw["raw_probabilities"][:, 1, :20].any()
        assert all(json.loads(cell) == ["square", "circle"] for cell in csv["class_name"])


def test_letterbox_loader_pads_and_reports_original_sizes(tmp_path):
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "wide.png")
    Image.new("RGB", (10, 30), (0, 0, 255)).save(tmp_path / "tall.png")
    task = load_config(CONFIGS / "image_object_detection.yaml")
    spec = image_input_from(
        TensorSpec(name="image", shape=(None, 3, 64, 64), dtype=np.float32), task.preprocessing, model_name="m"
    )
    batches = ImageBatches(["wide.png", "tall.png"], data_folder=tmp_path, image_input=spec,
                           preprocessing=task.preprocessing, batch_size=2, column="image_path")  # fmt: skip
    batch = batches[0]
    assert batch.context.original_sizes.tolist() == [[20, 40], [30, 10]]
    assert batch.context.input_sizes.tolist() == [[64, 64], [64, 64]]
    pixels = np.rint(np.asarray(batch.inputs["image"]) * 255).astype(int)
    assert pixels[0, :, 0, 0].tolist() == [114, 114, 114] and pixels[0, :, 32, 32].tolist() == [255, 0, 0]
    assert pixels[1, :, 32, 0].tolist() == [114, 114, 114] and pixels[1, :, 32, 32].tolist() == [0, 0, 255]


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        (
            "image_object_detection.yaml",
            ["data.label_columns=[class_name, x_min]"],
            r"data.label_columns: object detection takes one column",
        ),
        (
            "image_semantic_segmentation.yaml",
            ["data.label_columns=[class_name]"],
            r"takes two columns, \[class name column, RLE mask column\]",
        ),
        ("image_object_detection.yaml", ["head.class_names=[]"], r"head.class_names must list the model's classes"),
        (
            "image_object_detection.yaml",
            ["head.nms_iou_threshold=2"],
            r"head.nms_iou_threshold must be in \[0, 1\] \(got 2.0\)",
        ),
        (
            "image_object_detection.yaml",
            ["head.boxes_output=nope"],
            r"head.boxes_output: model dense_yolo.onnx has no output 'nope' \(outputs: predictions\)",
        ),
        (
            "image_object_detection.yaml",
            ["head.layout=ssd"],
            r"head.boxes_output is missing: model dense_yolo.onnx has no output named 'boxes' for layout ssd",
        ),
        # The exported output's class axis is symbolic, so the first batch finds the mismatch.
        (
            "image_object_detection.yaml",
            ["head.layout=yolov5"],
            r"model output 'predictions' has shape \[6, 64\] per image; "
            r"head.layout yolov5 with 2 head.class_names needs \(7, anchors\)",
        ),
        (
            "image_semantic_segmentation.yaml",
            ["head.class_names=[a, b, c]", "model=models/dense_semantic.onnx"],
            r"head.class_names has 3 classes but model dense_semantic.onnx output 'logits' has shape \(\?, 2, 64, 64\)",
        ),
        (
            "image_instance_segmentation.yaml",
            ["head.activation=softmax"],
            r"head.activation: instance maps are independent per channel",
        ),
        (
            "image_instance_segmentation.yaml",
            ["head.layout=mask_rcnn"],
            r"head.boxes_output: model dense_instances.onnx has no output 'boxes'",
        ),
        (
            "image_object_detection.yaml",
            ["preprocessing.resize_mode=letterbx"],
            r"preprocessing.resize_mode must be one of resize, letterbox \(got 'letterbx'\); "
            r"did you mean 'letterbox'\?",
        ),
    ],
)
def test_config_errors(tmp_path, capsys, config, overrides, message):
    sets = [item for override in (f"output.dir={tmp_path}", *overrides) for item in ("--set", override)]
    assert main(["--config", str(CONFIGS / config), "--quiet", *sets]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_detection_label_errors_name_the_row(tmp_path, capsys):
    frame = pd.read_csv(DATA / "detection.csv", dtype=str, keep_default_na=False)
    frame.loc[3, "class_name"] = json.dumps(["triangle"] * len(json.loads(frame["x_min"][3])))
    frame.to_csv(tmp_path / "bad.csv", index=False)
    sets = [
        "--set",
        f"output.dir={tmp_path / 'out'}",
        "--set",
        f"data.dataframe={tmp_path / 'bad.csv'}",
        "--set",
        f"data.data_folder={DATA / 'images'}",
    ]
    assert main(["--config", str(CONFIGS / "image_object_detection.yaml"), "--quiet", *sets]) == 2
    assert (
        "bad.csv: row 3, column 'class_name': class 'triangle' is not in head.class_names (square, circle)"
        in capsys.readouterr().err
    )


def test_unreadable_rows_with_masks_on_disk(tmp_path, wide_segmenter):
    frame = pd.read_csv(DATA / "segmentation.csv", dtype=str, keep_default_na=False)
    frame.loc[2, "image_path"] = "missing.png"
    frame.to_csv(tmp_path / "frame.csv", index=False)
    out = run("image_semantic_segmentation.yaml", tmp_path / "out", f"model={wide_segmenter}",
              "preprocessing.image_size=[128, 128]", "head.activation=sigmoid",
              f"data.dataframe={tmp_path / 'frame.csv'}", f"data.data_folder={DATA / 'images'}",
              "data.on_error=skip", "runtime.batch_size=4")  # fmt: skip
    masks = load_pkl(out)["masks"]
    assert np.isnan(masks[2]).all() and not np.isnan(masks[3]).any()
    csv = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert csv["pred_rle_mask"][4:6].tolist() == ["", ""] and (out / "validation_metrics.json").is_file()
    assert pd.read_csv(out / "validation_errors.csv")["row"].tolist() == [2]
