"""`predict show` and `predict report` on the committed examples of text, audio and metric learning
problem types: the table's order checked against "worst" computed here from the CSV, the page's
pictures decoded as PNG and its type-specific sections present."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import sacrebleu

from predict.cli import main
from predict.view.run import load_run
from predict.view.select import view_for
from tests.view.test_page import decode_png, read_page
from tests.view.test_show import read_csv, show, table_rows


def _jaccard(a: str, b: str) -> float:
    x, y = set(a.lower().split()), set(b.lower().split())
    return 1.0 if not x and not y else len(x & y) / len(x | y)


def _expected_worst(name: str, csv: pd.DataFrame) -> list[int]:
    """Row order worst first, from the CSV alone (ties in input order)."""
    rows = range(len(csv))
    if name in ("text_regression", "audio_regression"):
        target = "rating" if name == "text_regression" else "level_db"
        error = [abs(float(csv[f"pred_{target}"][i]) - float(csv[target][i])) for i in rows]
        return sorted(rows, key=lambda i: -error[i])
    if name == "audio_classification":
        return sorted(rows, key=lambda i: float(csv[f"pred_sound_{csv['sound'][i]}"][i]))
    if name == "text_token_classification":

        def key(i):
            true, predicted = csv["tags"][i].split(), csv["pred_tags"][i].split()
            wrong = sum(t != p for t, p in zip(true, predicted))
            return (-wrong, -wrong / len(true))

        return sorted(rows, key=key)
    if name == "text_span_prediction":
        return sorted(rows, key=lambda i: _jaccard(csv["answer"][i], csv["pred_answer"][i]))
    if name == "text_sequence_to_sequence":
        return sorted(rows, key=lambda i: sacrebleu.sentence_chrf(csv["pred_fictish"][i], [csv["fictish"][i]]).score)
    assert name == "image_metric_learning"
    label_of = dict(zip(csv["image_path"], csv["shape"]))

    def penalty(i):
        return sum(1 / k for k in (1, 2, 3) if label_of[csv[f"top_{k}_similar_image"][i]] != csv["shape"][i])

    return sorted(rows, key=lambda i: -penalty(i))


_COLUMNS = {
    "text_regression": ["actual", "predicted", "error"],
    "audio_classification": ["actual", "predicted", "confidence", "p(actual)"],
    "audio_regression": ["actual", "predicted", "error"],
    "text_token_classification": ["words", "wrong tags", "predicted entities", "actual entities"],
    "text_span_prediction": ["actual", "predicted", "Jaccard"],
    "text_sequence_to_sequence": ["actual", "predicted", "chrF"],
    "image_metric_learning": ["label", "same label", "top-1 similar", "its label", "top-1 similarity"],
}


@pytest.fixture(scope="module")
def seq2seq_with_mistakes(example_runs, tmp_path_factory):
    """The seq2seq example scores 100 on every row; a copy with three generated texts damaged by hand
    gives `--worst` something to sort."""
    folder = tmp_path_factory.mktemp("seq2seq_mistakes")
    shutil.copytree(example_runs("text_sequence_to_sequence"), folder, dirs_exist_ok=True)
    csv = read_csv(folder)
    csv.loc[5, "pred_fictish"] = "un kano"  # cut short
    csv.loc[9, "pred_fictish"] = "lo lo lo lo lo lo"  # repeats
    csv.loc[11, "pred_fictish"] = csv["fictish"][11] + " kalma"  # one word too many
    csv.to_csv(folder / "validation_predictions.csv", index=False)
    return folder


def _folder(name, example_runs, seq2seq_with_mistakes):
    return seq2seq_with_mistakes if name == "text_sequence_to_sequence" else example_runs(name)


@pytest.mark.parametrize("name", list(_COLUMNS))
def test_show_worst_matches_the_csv(name, example_runs, seq2seq_with_mistakes, capsys):
    folder = _folder(name, example_runs, seq2seq_with_mistakes)
    csv = read_csv(folder)
    view = view_for(load_run(folder, "validation"))
    assert list(view.table().columns) == _COLUMNS[name]
    assert len(view.table()) == len(csv)
    code, out, _ = show(capsys, folder, "--worst", "--rows", 0)
    assert code == 0
    assert [int(row[0]) for row in table_rows(out)] == _expected_worst(name, csv)
    assert f"{len(csv)} worst of {len(csv)} rows: {view.worst_meaning} first" in " ".join(out.split())
    code, out, _ = show(capsys, folder, "--rows", 3)
    assert code == 0 and [row[0] for row in table_rows(out)] == ["0", "1", "2"]


def test_seq2seq_worst_are_the_damaged_rows(seq2seq_with_mistakes, capsys):
    _, out, _ = show(capsys, seq2seq_with_mistakes, "--worst", "--rows", 3)
    assert sorted(int(row[0]) for row in table_rows(out)) == [5, 9, 11]


# Plot titles (image alt texts) per example, and markers of its samples in the HTML.
_PAGES = {
    "text_regression": (["Predicted vs actual", "Residuals"], "Sample texts", ['<blockquote class="snippet">']),
    "audio_classification": (
        ["Confusion matrix", "ROC curves"],
        "Sample clips",
        ['<figure class="sample wrong"><img src="data:image/png'],
    ),
    "audio_regression": (
        ["Predicted vs actual", "Residuals"],
        "Sample clips",
        ['<figure class="sample"><img src="data:image/png'],
    ),
    "text_token_classification": (
        ["Tag confusion matrix", "Tag counts"],
        "Sample texts",
        ['class="token mismatch"', "<sub>B-PER"],
    ),
    "text_span_prediction": (
        ["Answer overlap", "Answer lengths"],
        "Sample texts",
        ['<mark class="predicted actual">', '<mark class="actual">'],
    ),
    "text_sequence_to_sequence": (
        ["Sentence chrF", "Lengths"],
        "Sample texts",
        ['class="columns"', '<del class="diff">lo lo lo lo</del>'],
    ),
    "image_metric_learning": (
        ["Nearest-neighbour similarity"],
        "Sample images",
        ['class="strip"', 'class="neighbour other"', 'class="neighbour same"'],
    ),
}


@pytest.mark.parametrize("name", list(_PAGES))
def test_report_page(name, example_runs, seq2seq_with_mistakes, tmp_path):
    folder = _folder(name, example_runs, seq2seq_with_mistakes)
    output = tmp_path / "report.html"
    assert main(["report", str(folder), "-o", str(output), "--samples", "6"]) == 0
    html = output.read_text(encoding="utf-8")
    page = read_page(output)
    assert page.links and all(link.startswith("data:") for link in page.links)
    for uri, _ in page.images:
        decode_png(uri)
    titles, heading, markers = _PAGES[name]
    alts = [alt for _, alt in page.images]
    plot_alts = [alt for alt in alts if not alt.endswith((".png", ".wav", ".flac", ".ogg"))]
    assert [alt.split(" (")[0] for alt in plot_alts] == titles
    text = " ".join(page.text)
    assert f"{heading} (worst first:" in text
    for marker in markers:
        assert marker in html, marker
    samples = len(alts) - len(plot_alts)
    csv = read_csv(folder)
    worst = _expected_worst(name, csv)
    if name == "image_metric_learning":
        # A strip per sample: the query and its three neighbours, worst query first.
        assert samples == 6 * 4
        assert alts[len(plot_alts)] == csv["image_path"][worst[0]]
    elif name.startswith("audio"):
        assert samples == 6 and alts[len(plot_alts)] == csv["audio_path"][worst[0]]
    else:
        assert samples == 0 and html.count('<figure class="sample') == 6
    assert "Rows (worst first:" in text and "Config" in text


def test_report_without_labels_and_missing_clip(example_runs, tmp_path):
    """A test split without labels gets distribution plots and samples in input order; a clip that
    was moved away shows as a note on its card."""
    source = example_runs("audio_classification")
    run = tmp_path / "run"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("onnx_cache"))
    csv = read_csv(run)
    csv.drop(columns=["sound"]).to_csv(run / "validation_predictions.csv", index=False)
    clips = tmp_path / "clips"
    report = run / "validation_report.json"
    original = str(load_run(run, "validation").data_folder)
    shutil.copytree(original, clips)
    (clips / "clip_01.flac").unlink()
    report.write_text(report.read_text().replace(original, str(clips)))
    assert main(["report", str(run), "--samples", "2"]) == 0
    page = read_page(run / "report.html")
    text = " ".join(page.text)
    assert "Sample clips (no labels: in input order)" in text
    assert f"audio not found: {clips / 'clip_01.flac'}" in text
    assert [alt for _, alt in page.images] == ["Predicted classes", "Confidence", "clip_02.ogg"]


def test_worst_needs_labels_for_new_views(example_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(example_runs("text_span_prediction"), run)
    read_csv(run).drop(columns=["answer"]).to_csv(run / "validation_predictions.csv", index=False)
    code, _, err = show(capsys, run, "--worst")
    assert code == 2 and "--worst needs actual values" in err and "(answer)" in err
    code, out, _ = show(capsys, run, "--rows", 2)
    assert code == 0 and [row[0] for row in table_rows(out)] == ["0", "1"]
    view = view_for(load_run(run, "validation"))
    assert list(view.table().columns) == ["predicted"]
    assert np.all(view.table()["predicted"].str.len() > 0)


def test_text_metric_learning_view(example_runs, tmp_path, capsys):
    folder = example_runs("text_metric_learning")
    csv = read_csv(folder)
    topic_of = dict(zip(csv["text"], csv["topic"]))

    def penalty(i):
        return sum(1 / k for k in (1, 2, 3) if topic_of[csv[f"top_{k}_similar_text"][i]] != csv["topic"][i])

    code, printed, _ = show(capsys, folder, "--worst", "--rows", len(csv))
    assert code == 0
    shown = [int(cells[0]) for cells in table_rows(printed)]
    assert sorted(shown) == list(range(len(csv)))
    penalties = [penalty(row) for row in shown]
    assert penalties == sorted(penalties, reverse=True)  # worst (most other-topic neighbours) first

    output = tmp_path / "report.html"
    assert main(["report", str(folder), "-o", str(output), "--samples", "4"]) == 0
    html = output.read_text(encoding="utf-8")
    assert html.count('class="strip"') == 4  # one strip per sample: the query text and its neighbours
    assert html.count('<blockquote class="snippet">') >= 4 * 4
    page = read_page(output)
    for uri, _ in page.images:
        decode_png(uri)
