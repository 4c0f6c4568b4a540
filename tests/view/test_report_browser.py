"""`report.html` opened in headless Chromium, as a person would open it.

Chromium loads a copy of the page with a probe script appended: after the load event it reports
every `<img>` that failed to decode on the console and counts the images into the DOM. The test then
reads Chromium's console log (`--enable-logging=stderr`: page console messages are `CONSOLE` lines)
and the DOM it dumps. The report itself has no script; the probe is only in the copy.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from predict.cli import main

REPOSITORY = Path(__file__).resolve().parents[2]


def _load_script():
    """scripts/screenshot_report.py, which holds the Chromium flags (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("screenshot_report", REPOSITORY / "scripts" / "screenshot_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SCRIPT = _load_script()
CHROMIUM_FLAGS, find_chromium = _SCRIPT.CHROMIUM_FLAGS, _SCRIPT.find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run does it)"
)

_PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter((image) => !(image.complete && image.naturalWidth > 0));
  broken.forEach((image) => console.error("broken image: " + (image.alt || image.src.slice(0, 80))));
  document.body.setAttribute("data-probe", images.length + " loaded, " + broken.length + " broken");
});
</script>"""
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")


def open_in_chromium(page: Path, workdir: Path) -> tuple[str, list[str]]:
    """Load `page` (with the probe) in headless Chromium; return the DOM after load and the console messages."""
    probed = workdir / f"probed_{page.name}"
    html = page.read_text(encoding="utf-8")
    assert html.count("</body>") == 1
    probed.write_text(html.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        completed = subprocess.run(
            [
                find_chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                # Lets the load event and the probe run before the DOM is dumped.
                "--virtual-time-budget=5000",
                "--dump-dom",
                probed.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout, _CONSOLE.findall(completed.stderr)


def probe_counts(dom: str) -> tuple[int, int]:
    found = re.search(r'data-probe="(\d+) loaded, (\d+) broken"', dom)
    assert found, "the probe did not run: Chromium dumped the DOM before the load event"
    return int(found.group(1)), int(found.group(2))


def test_the_probe_sees_console_errors_and_broken_images(tmp_path):
    """The check itself: a page with a script error and two broken images fails it."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>'
        '<img src="missing.png" alt="missing"><img src="data:image/png;base64,AAAA" alt="garbage">'
        "<script>console.error('boom'); notDefined();</script></body></html>",
        encoding="utf-8",
    )
    dom, console = open_in_chromium(page, tmp_path)
    assert probe_counts(dom) == (2, 2)
    joined = "\n".join(console)
    assert '"boom"' in joined and "notDefined is not defined" in joined
    assert "broken image: missing" in joined and "broken image: garbage" in joined


def test_classification_report_loads_cleanly(classification_run, tmp_path):
    page = tmp_path / "classification.html"
    assert main(["report", str(classification_run), "-o", str(page)]) == 0
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    images = page.read_text(encoding="utf-8").count("<img ")
    assert probe_counts(dom) == (images, 0)
    assert images == 4 + 2 * 12  # 2 plots per split, 12 samples per split
    for title in ("Confusion matrix", "ROC curves", "Predicted classes", "Confidence", "Sample images"):
        assert title in dom


def test_regression_example_report_loads_cleanly_and_screenshots(regression_example_run, tmp_path):
    assert main(["report", str(regression_example_run)]) == 0
    page = regression_example_run / "report.html"
    dom, console = open_in_chromium(page, tmp_path)
    assert console == []
    assert probe_counts(dom) == (2 + 12, 0)
    assert 'alt="Predicted vs actual"' in dom and 'alt="Residuals"' in dom

    # scripts/screenshot_report.py, as a developer runs it.
    from PIL import Image

    shot = tmp_path / "report.png"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPOSITORY / "scripts" / "screenshot_report.py"),
            str(page),
            "-o",
            str(shot),
            "--height",
            "900",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        # A rendered page has text, plots and thumbnails: far more than a blank page's few colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 500


def test_example_reports_load_cleanly(example_runs, tmp_path):
    """One page per problem type viewed since classification and regression: no console error, no
    broken picture, and the type's samples rendered."""
    from tests.view.conftest import EXAMPLES

    for name in EXAMPLES:
        page = tmp_path / f"{name}.html"
        assert main(["report", str(example_runs(name)), "-o", str(page), "--samples", "4"]) == 0
        dom, console = open_in_chromium(page, tmp_path)
        assert console == [], name
        images = page.read_text(encoding="utf-8").count("<img ")
        assert probe_counts(dom) == (images, 0), name
        assert dom.count('<figure class="sample') == 4, name
