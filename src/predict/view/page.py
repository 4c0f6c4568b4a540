"""`predict report RUN_DIR`: one self-contained `report.html` per run folder.

Every picture is inlined as a base64 PNG `data:` URI and the style sheet is inline, so the file can be
mailed or attached as is; the page has no script and loads nothing. One section per split: the run's
numbers (rows, throughput, provider), metrics, the view's plots, sample inputs with predicted and true
values (worst first when labelled), the worst rows as a table, stage timings, notes and the config as run.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path

import numpy as np
import yaml

from predict.view import _samples
from predict.view.base import View
from predict.view.run import RunSplit, find_splits, load_run
from predict.view.select import view_for
from predict.writers._atomic import atomic_path

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 24px; color: #1d2330; background: #fafbfc; }
h1 { font-size: 1.6rem; margin-bottom: 4px; }
h2 { border-bottom: 2px solid #d6dae1; padding-bottom: 4px; margin-top: 40px; }
h3 { margin-top: 28px; } .meta { color: #5a6272; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: white; border: 1px solid #d6dae1; border-radius: 8px; padding: 10px 16px; min-width: 120px; }
.card .value { font-size: 1.3rem; font-weight: 600; } .card .name { color: #5a6272; font-size: 0.85rem; }
table { border-collapse: collapse; background: white; font-size: 0.9rem; }
th, td { border: 1px solid #d6dae1; padding: 4px 10px; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; } tr.wrong td { background: #fdecea; }
.plots { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 0; } figure.plot { background: white; border: 1px solid #d6dae1; border-radius: 8px; padding: 12px; }
figure.plot img { max-width: 100%; height: auto; display: block; }
figcaption { color: #5a6272; font-size: 0.85rem; margin-top: 6px; max-width: 640px; }
.samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
figure.sample { background: white; border: 2px solid #d6dae1; border-radius: 8px; padding: 8px; }
figure.sample.right { border-color: #55a868; } figure.sample.wrong { border-color: #c44e52; }
figure.sample img { width: 100%; height: 134px; object-fit: contain; image-rendering: pixelated; display: block; }
figure.sample figcaption { color: #1d2330; overflow-wrap: anywhere; }
.missing { height: 134px; display: flex; align-items: center; justify-content: center; color: #c44e52;
           font-size: 0.8rem; }
.samples.wide { grid-template-columns: 1fr; }
.samples.large { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.samples.large figure.sample img { height: 288px; image-rendering: auto; }
.samples.strips { grid-template-columns: repeat(auto-fill, minmax(470px, 1fr)); }
.samples.grid figure.sample blockquote { font-size: 0.9rem; }
blockquote.snippet { margin: 0 0 6px; padding: 6px 8px; background: #f3f5f8; border-radius: 4px;
                     white-space: pre-wrap; }
.tokens { line-height: 2.1; } .token { padding: 1px 4px; border-radius: 4px; margin-right: 2px; }
.token sub { font-size: 0.65rem; color: #5a6272; margin-left: 2px; }
.token.mismatch { outline: 2px solid #c44e52; outline-offset: 1px; } .token.mismatch s { color: #c44e52; }
mark.predicted { background: #ffe08a; padding: 0 2px; }
mark.actual { background: none; border-bottom: 3px solid #55a868; }
mark.predicted.actual { background: #c9ebc9; }
.legend { color: #5a6272; font-size: 0.85rem; margin-bottom: 8px; } .legend span { margin-right: 12px; }
.columns { display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px; }
.columns div.text { background: #f3f5f8; border-radius: 4px; padding: 6px 8px; }
.columns .name { color: #5a6272; font-size: 0.8rem; }
del.diff { background: #fdecea; text-decoration: none; border-bottom: 2px solid #c44e52; }
.strip { display: flex; gap: 8px; align-items: flex-start; overflow-x: auto; }
.strip figure { margin: 0; text-align: center; font-size: 0.8rem; border: 3px solid #d6dae1; border-radius: 6px;
                padding: 4px; min-width: 96px; }
.strip figure.query { border-color: #4c72b0; } .strip figure.same { border-color: #55a868; }
.strip figure.other { border-color: #c44e52; }
.strip img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; display: block;
             margin: 0 auto; }
pre { background: white; border: 1px solid #d6dae1; border-radius: 8px; padding: 12px; overflow-x: auto;
      font-size: 0.85rem; }
"""


def write_report(
    run_dir: Path, *, split: str | None = None, output: Path | None = None, samples: int = 12, rows: int = 20
) -> Path:
    """Write the HTML report of a run folder.

    Args:
        run_dir: the folder a run wrote.
        split: only this split; default: every split the folder holds, validation first.
        output: the HTML file; default `run_dir/report.html`.
        samples: how many sample inputs to show per split.
        rows: how many rows the table of each split lists.

    Returns:
        The path written.

    Raises:
        InputError: the folder, its files or its problem type cannot be shown.
    """
    run_dir = Path(run_dir)
    splits = [split] if split is not None else find_splits(run_dir)
    runs = [load_run(run_dir, name) for name in splits]
    views = [view_for(run) for run in runs]
    output = Path(output) if output is not None else run_dir / "report.html"
    page = render_page(runs, views, samples=samples, rows=rows)
    with atomic_path(output) as temp:
        temp.write_text(page, encoding="utf-8")
    return output


def render_page(runs: list[RunSplit], views: list[View], *, samples: int, rows: int) -> str:
    """The whole HTML document for the given splits of one run folder."""
    problem_types = ", ".join(dict.fromkeys(run.problem_type.value for run in runs))
    run_dir = runs[0].run_dir
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = "\n".join(_split_section(run, view, samples=samples, rows=rows) for run, view in zip(runs, views))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(problem_types)} predictions: {_e(run_dir.name)}</title>
<link rel="icon" href="data:,">
<style>{_STYLE}</style>
</head>
<body>
<h1>{_e(problem_types)} predictions</h1>
<p class="meta">run folder {_e(str(run_dir.resolve()))} &middot; report generated {_e(generated)} by \
<code>predict report</code></p>
{sections}
</body>
</html>
"""


def _split_section(run: RunSplit, view: View, *, samples: int, rows: int) -> str:
    report = run.report
    labelled = view.labelled
    order = view.worst_first() if labelled else np.arange(view.row_count)
    ranking = f"worst first: {view.worst_meaning}" if labelled else "no labels: in input order"
    parts = [f'<section id="{_e(run.split)}">', f"<h2>{_e(run.split)} split</h2>", _cards(run)]
    parts.append("<h3>Metrics</h3>")
    if run.metrics:
        parts.append(_key_value_table(run.metrics.items(), header=("metric", "value"), digits=4))
    else:
        parts.append("<p>No metrics: this split has no label columns.</p>")
    plots = view.plots()
    parts.append("<h3>Plots</h3>")
    parts.append('<div class="plots">')
    for plot in plots:
        parts.append(
            f'<figure class="plot"><figcaption><strong>{_e(plot.title)}</strong></figcaption>'
            f'<img src="{_png_uri(plot.png)}" alt="{_e(plot.title)}">'
            f"<figcaption>{_e(plot.caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    if samples:
        parts.append(f"<h3>Sample {_e(view.sample_noun)} ({_e(ranking)})</h3>")
        cards = "".join(view.sample_html(int(row)) for row in order[:samples])
        parts.append(f'<div class="samples {view.sample_layout}">{cards}</div>')
    if rows:
        parts.append(f"<h3>Rows ({_e(ranking)})</h3>")
        parts.append(_rows_table(run, view, order[:rows]))
    parts.append("<h3>Time</h3>")
    stages = report.get("stage_seconds", {})
    parts.append(
        _key_value_table(((name, f"{seconds:.3f} s") for name, seconds in stages.items()), header=("stage", "time"))
    )
    notes = report.get("notes") or []
    if notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>")
    parts.append("<h3>Config</h3>")
    parts.append(f"<p>{_e(str(report.get('config', '')))}, as run:</p>")
    task = report.get("task")
    task_yaml = (
        yaml.safe_dump(task, sort_keys=False, default_flow_style=None) if task else "(not recorded in report.json)"
    )
    parts.append(f"<pre>{_e(task_yaml)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def _cards(run: RunSplit) -> str:
    report = run.report
    cards = [
        ("rows", f"{report.get('rows', len(run.predictions))}"),
        ("rows / s", f"{report.get('rows_per_second', float('nan')):.1f}"),
        ("scoring", f"{report.get('scoring_seconds', float('nan')):.2f} s"),
        ("with model loading", f"{report.get('seconds', float('nan')):.2f} s"),
        ("provider", str(report.get("provider", "?"))),
        ("model", Path(str(report.get("model", "?"))).name),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="value">{_e(value)}</div><div class="name">{_e(name)}</div></div>'
            for name, value in cards
        )
        + "</div>"
    )


def _key_value_table(items, *, header: tuple[str, str], digits: int | None = None) -> str:
    body = []
    for name, value in items:
        shown = f"{value:.{digits}f}" if digits is not None and isinstance(value, float) else str(value)
        body.append(f'<tr><td>{_e(str(name))}</td><td class="number">{_e(shown)}</td></tr>')
    return f"<table><tr><th>{_e(header[0])}</th><th>{_e(header[1])}</th></tr>{''.join(body)}</table>"


def _rows_table(run: RunSplit, view: View, order: np.ndarray) -> str:
    values = view.table()
    inputs = view.input_values
    head = "".join(f"<th>{_e(name)}</th>" for name in ["row", view.input_column or "input", *values.columns])
    body = []
    for row in (int(row) for row in order):
        correct = view.sample_label(row).correct
        cells = [
            f'<td class="number">{row}</td>',
            f"<td>{_e('' if inputs is None else _samples.shorten(str(inputs.iloc[row])))}</td>",
        ]
        for name in values.columns:
            value = values[name].iloc[row]
            align = ' class="number"' if isinstance(value, (float, np.floating)) else ""
            cells.append(f"<td{align}>{_e(view.format_cell(name, value))}</td>")
        row_class = ' class="wrong"' if correct is False else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _png_uri(png: bytes) -> str:
    return _samples.png_uri(png)


def _e(text: str) -> str:
    return html.escape(text, quote=True)
