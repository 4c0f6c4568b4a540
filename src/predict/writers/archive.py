"""`{split}_predictions.zip`: the CSV and pkl together, the "Download predictions" bundle. Written last."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

from predict.writers._atomic import atomic_path

# Deflate level 1: on a 19 MB predictions CSV + 12 MB pkl, 0.35 s for 13.3 MB against level 6's
# 1.79 s for 12.4 MB (scripts/bench_arrays.py's 1,000,000-row run): 5x faster for 7% more bytes.
_COMPRESS_LEVEL = 1


def write_archive(path: Path, files: Sequence[Path]) -> None:
    """Zip `files` flat (by file name) into `path`."""
    with (
        atomic_path(path) as temp,
        zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESS_LEVEL) as archive,
    ):
        for file in files:
            archive.write(file, arcname=file.name)
