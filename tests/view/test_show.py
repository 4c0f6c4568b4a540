"""`predict show RUN_DIR`: the table a user reads in the terminal, checked against the CSV itself."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from predict.cli import main
from predict.errors import InputError
from predict.report.metrics import ClassificationKind
from predict.view.classification import ClassificationView
from predict.view.run import load_run, read_raw_predictions
from predict.view.select import view_for
from tests.view.conftest import score

_CELL_SEPARATORS = re.compile(r"[│┃|]")


def show(capsys, *arguments) -> tuple[int, str, str]:
    code = main(["show", *map(str, arguments)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(output: str) -> list[list[str]]:
    """The data rows of a rich table: cells of lines that start with a row number."""
    rows = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in _CELL_SEPARATORS.split(line)[1:-1]]
        if cells and cells[0].isdigit():
            rows.append(cells)
    return rows


def read_csv(folder, split="validation") -> pd.DataFrame:
    return pd.read_csv(folder / f"{split}_predictions.csv", dtype=str, keep_default_na=False)


def test_show_lists_rows_in_input_order_with_metrics(classification_run, capsys):
    code, out, _ = show(capsys, classification_run, "--rows", 5)
    assert code == 0
    header = next(line for line in out.splitlines() if "image_path" in line)
    assert [cell.strip() for cell in _CELL_SEPARATORS.split(header)[1:-1]] == [
        "row",
        "image_path",
        "actual",
        "predicted",
        "confidence",
        "p(actual)",
    ]
    csv = read_csv(classification_run)
    rows = table_rows(out)
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]
    for row in rows:
        index = int(row[0])
        assert row[1] == csv["image_path"][index]
        assert row[2] == csv["label"][index]
        assert row[3] == csv["pred_label"][index]
        assert float(row[4]) == pytest.approx(float(csv[f"pred_label_{row[3]}"][index]), abs=5e-5)
        assert float(row[5]) == pytest.approx(float(csv[f"pred_label_{row[2]}"][index]), abs=5e-5)
    metrics = json.loads((classification_run / "validation_metrics.json").read_text())
    assert f"Accuracy {metrics['Accuracy']:.4f}" in out
    assert "rows 0..4 of 20" in out


def test_show_worst_puts_lowest_probability_of_true_class_first(classification_run, capsys):
    code, out, _ = show(capsys, classification_run, "--worst", "--rows", 0)
    assert code == 0
    csv = read_csv(classification_run)
    p_true = [float(csv[f"pred_label_{label}"][i]) for i, label in enumerate(csv["label"])]
    expected = sorted(range(len(csv)), key=lambda i: (p_true[i], i))
    assert [int(row[0]) for row in table_rows(out)] == expected
    assert "20 worst of 20 rows: lowest probability of the true class first" in out
    # The random model gets some rows wrong: the worst row is one of them.
    assert csv["pred_label"][expected[0]] != csv["label"][expected[0]]


def test_show_worst_regression_puts_largest_absolute_error_first(regression_example_run, capsys):
    code, out, _ = show(capsys, regression_example_run, "--worst", "--rows", 7)
    assert code == 0
    csv = read_csv(regression_example_run)
    error = (csv["pred_area_fraction"].astype(float) - csv["area_fraction"].astype(float)).to_numpy()
    expected = sorted(range(len(csv)), key=lambda i: (-abs(error[i]), i))[:7]
    rows = table_rows(out)
    assert [int(row[0]) for row in rows] == expected
    assert [float(row[-1]) for row in rows] == pytest.approx([error[i] for i in expected], rel=1e-3)
    assert "MAE" in out and "R2" in out


def test_show_test_split_without_labels(classification_run, capsys):
    code, out, _ = show(capsys, classification_run, "--split", "test", "--rows", 3)
    assert code == 0
    header = next(line for line in out.splitlines() if "image_path" in line)
    assert "actual" not in header and "predicted" in header
    assert "no metrics: this split has no label columns" in out
    code, _, err = show(capsys, classification_run, "--split", "test", "--worst")
    assert code == 2
    assert re.search(
        r"error: --worst needs actual values, but .*test_predictions\.csv has no label column\(s\) \(label\)", err
    )


@pytest.fixture(scope="module")
def layout_runs(tmp_path_factory, torch_models, image_folder):
    """One-hot columns (softmax graph), multi-label (sigmoid graph) and binary (one logit) runs."""
    columns = ["is_cat", "is_dog", "is_fox"]
    base = tmp_path_factory.mktemp("layouts")
    return {
        "one_hot": score(
            base / "one_hot",
            torch_models["softmax3"][1],
            image_folder,
            problem_type="image_classification",
            label_columns=columns,
        ),
        "multilabel": score(
            base / "multilabel",
            torch_models["sigmoid3"][1],
            image_folder,
            problem_type="image_classification",
            label_columns=columns,
        ),
        "binary": score(
            base / "binary",
            torch_models["logit1"][1],
            image_folder,
            problem_type="image_classification",
            label_columns=["is_bright"],
        ),
    }


def test_label_layouts_are_read_back(layout_runs, capsys):
    one_hot = view_for(load_run(layout_runs["one_hot"], "validation"))
    multilabel = view_for(load_run(layout_runs["multilabel"], "validation"))
    binary = view_for(load_run(layout_runs["binary"], "validation"))
    assert (one_hot.kind, multilabel.kind, binary.kind) == (
        ClassificationKind.MULTICLASS,
        ClassificationKind.MULTILABEL,
        ClassificationKind.BINARY,
    )
    csv = read_csv(layout_runs["binary"])
    p = csv["pred_is_bright"].astype(float).to_numpy()
    table = binary.table()
    assert list(table["predicted"]) == [f"is_bright={int(value >= 0.5)}" for value in p]
    assert list(table["actual"]) == [f"is_bright={value}" for value in csv["is_bright"]]
    truth = csv["is_bright"].astype(int).to_numpy()
    np.testing.assert_allclose(table["p(actual)"], np.where(truth == 1, p, 1 - p))

    # Multi-label: a row is as bad as its least sure label.
    csv = read_csv(layout_runs["multilabel"])
    scores = csv[[f"pred_is_{name}" for name in ("cat", "dog", "fox")]].astype(float).to_numpy()
    labels = csv[["is_cat", "is_dog", "is_fox"]].astype(int).to_numpy()
    np.testing.assert_allclose(multilabel.table()["p(actual)"], np.where(labels == 1, scores, 1 - scores).min(axis=1))
    for name in ("one_hot", "multilabel", "binary"):
        code, out, _ = show(capsys, layout_runs[name], "--worst", "--rows", 3)
        assert code == 0 and len(table_rows(out)) == 3


def copy_run(source, destination):
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("onnx_cache"))
    return destination


def test_every_problem_type_has_a_view():
    from predict.config import ProblemType
    from predict.problems import PROBLEMS
    from predict.view.base import View

    assert set(PROBLEMS) == set(ProblemType)
    assert all(issubclass(spec.view, View) for spec in PROBLEMS.values())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_report", r"not a run folder: it holds no validation_report\.json or test_report\.json"),
        (
            "old_report",
            r"validation_report\.json: missing key\(s\) input_column, label_columns, data_folder: "
            r"written by an older version",
        ),
        ("bad_json", r"validation_report\.json: cannot be read as JSON"),
        ("no_csv", r"validation_predictions\.csv: not found; the run folder is incomplete"),
        (
            "no_pred_column",
            r"validation_predictions\.csv: missing column\(s\) pred_area_fraction; the file does not match",
        ),
        (
            "dropped_class",
            r"row 0, label column 'label': class 'cat' has no pred_label_\* column \(classes: dog, fox\)",
        ),
        ("bad_number", r"validation_predictions\.csv: row 3, column 'pred_label_dog': expected a number, got 'abc'"),
        (
            "unknown_class",
            r"validation_predictions\.csv: row 0, label column 'label': class 'wolf' has no pred_label_\* column",
        ),
    ],
)
def test_damaged_run_folder_is_named(classification_run, regression_example_run, tmp_path, damage, message):
    source = regression_example_run if damage == "no_pred_column" else classification_run
    run = copy_run(source, tmp_path / "run")
    report_path = run / "validation_report.json"
    csv_path = run / "validation_predictions.csv"
    if damage == "no_report":
        report_path.unlink()
        (run / "test_report.json").unlink()
    elif damage == "old_report":
        report = json.loads(report_path.read_text())
        for key in ("input_column", "label_columns", "data_folder"):
            del report[key]
        report_path.write_text(json.dumps(report))
    elif damage == "bad_json":
        report_path.write_text("{not json")
    elif damage == "no_csv":
        csv_path.unlink()
    else:
        csv = read_csv(run)
        if damage == "no_pred_column":
            csv = csv.drop(columns="pred_area_fraction")
        elif damage == "dropped_class":
            csv = csv.drop(columns="pred_label_cat")
        elif damage == "bad_number":
            csv.loc[3, "pred_label_dog"] = "abc"
        else:
            csv.loc[0, "label"] = "wolf"
        csv.to_csv(csv_path, index=False)
    with pytest.raises(InputError, match=message):
        view_for(load_run(run, "validation"))


def test_binary_label_must_be_zero_or_one(layout_runs, tmp_path):
    run = copy_run(layout_runs["binary"], tmp_path / "run")
    csv = read_csv(run)
    csv.loc[2, "is_bright"] = "2"
    csv.to_csv(run / "validation_predictions.csv", index=False)
    with pytest.raises(InputError, match=r"row 2, label column 'is_bright': expected 0 or 1, got '2'"):
        ClassificationView(load_run(run, "validation"))


def test_cli_errors(classification_run, regression_example_run, tmp_path, capsys):
    code, _, err = show(capsys, tmp_path / "nowhere")
    assert code == 2 and "error: run folder not found:" in err
    code, _, err = show(capsys, regression_example_run, "--split", "test")
    assert code == 2 and "no test split here (it has: validation); pick one with --split" in err
    with pytest.raises(SystemExit):
        main(["show", str(classification_run), "--rows", "-1"])
    assert "--rows: must be >= 0 (got -1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["show", str(classification_run), "--rows", "many"])
    assert "--rows: expected a whole number, got 'many'" in capsys.readouterr().err


def test_raw_predictions_warn_that_pickle_is_unsafe(classification_run, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="predict.view.run"):
        raw = read_raw_predictions(classification_run / "validation_raw_predictions.pkl")
    assert set(raw) == {"predictions", "labels", "image_path"}
    assert "unpickling can run arbitrary code, only open .pkl files you trust" in caplog.text
    with pytest.raises(InputError, match=r"missing\.pkl: not found"):
        read_raw_predictions(tmp_path / "missing.pkl")
    not_pickle = tmp_path / "text.pkl"
    not_pickle.write_text("hello")
    with pytest.raises(InputError, match=r"text\.pkl: not a readable pickle"):
        read_raw_predictions(not_pickle)
    import pickle

    a_list = tmp_path / "list.pkl"
    a_list.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(InputError, match=r"list\.pkl: expected a pickled dict of arrays \(got list\)"):
        read_raw_predictions(a_list)


def test_every_view_has_a_head():
    from predict.heads.base import Head
    from predict.problems import PROBLEMS

    assert all(issubclass(spec.head, Head) for spec in PROBLEMS.values())
