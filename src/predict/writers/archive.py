"""`{split}_predictions.zip`: the CSV and pkl together, the "Download predictions" bundle. Written last."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

from predict.writers._atomic import atomic_path


def write_archive(path: Path, files: Sequence[Path]) -> None:
    """Zip `files` flat (by file name) into `path`."""
    with atomic_path(path) as temp, zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, arcname=file.name)
