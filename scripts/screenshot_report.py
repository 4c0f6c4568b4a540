"""Screenshot a `report.html` with headless Chromium, to look at the page as a user would.

    python scripts/screenshot_report.py runs/image_classification/report.html -o report.png

Needs Chromium (Debian: `apt-get install chromium`). The page is opened from disk with networking
features off and a fresh profile, so nothing but the file itself is loaded. Chromium's `--screenshot`
captures the window, so `--height` should cover the part of the page you want to see.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Quiet, isolated, headless: no sandbox (CI runs as root), no GPU, no background network traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The first Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: Path, output: Path, *, width: int = 1280, height: int = 3200, timeout: float = 60.0) -> Path:
    """Render `page` and write a PNG of its top `height` pixels to `output`.

    Raises:
        SystemExit: no Chromium on PATH, or Chromium wrote no screenshot.
    """
    browser = find_chromium()
    if browser is None:
        raise SystemExit(f"no Chromium found (tried {', '.join(BROWSERS)}); apt-get install chromium")
    output = output.resolve()
    output.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="predict-chromium-") as profile:
        command = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={output}",
            page.resolve().as_uri(),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if not output.is_file():
        raise SystemExit(f"Chromium wrote no screenshot (exit {completed.returncode}):\n{completed.stderr[-2000:]}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the report.html to render")
    parser.add_argument("-o", "--output", type=Path, help="PNG to write (default: beside the page)")
    parser.add_argument("--width", type=int, default=1280, help="window width in pixels (default: 1280)")
    parser.add_argument("--height", type=int, default=3200, help="window height in pixels (default: 3200)")
    options = parser.parse_args(argv)
    if not options.page.is_file():
        parser.error(f"no such file: {options.page}")
    output = options.output or options.page.with_suffix(".png")
    print(screenshot(options.page, output, width=options.width, height=options.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
