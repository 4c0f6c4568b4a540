"""HTML pieces of the report's sample cards: image thumbnails, audio waveforms, text snippets.

Every picture is a PNG `data:` URI, so the page stays one self-contained file. A file that cannot be
read any more (moved, deleted) becomes a visible note on the card, never an error: the report is
still worth reading without one input.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from predict.view import _plots
from predict.view.base import SampleLabel

# Thumbnails are stored at most this many pixels on a side: enough to judge a prediction, small enough
# that a page of samples stays well under a megabyte.
THUMBNAIL_SIDE = 192
# Text inputs longer than this are cut on the card (the table and the CSV keep the whole text).
SNIPPET_CHARACTERS = 400
# Waveform thumbnails draw at most this many points: a min/max envelope of longer clips looks the same.
_WAVEFORM_POINTS = 2000


def png_uri(png: bytes) -> str:
    """`data:image/png;base64,...` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def escape(text: str) -> str:
    """`text` escaped for HTML text and attribute values."""
    return html.escape(text, quote=True)


def input_path(data_folder: Path, value: str) -> Path:
    """Where a path cell of the input column points: absolute as is, else under the run's data folder."""
    return Path(value) if Path(value).is_absolute() else data_folder / value


def image_thumbnail(data_folder: Path, value: str, *, side: int = THUMBNAIL_SIDE) -> str:
    """An `<img>` (alt = `value`) of the input image, or a visible note where it cannot be read any more."""
    path = input_path(data_folder, value)
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((side, side))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except (OSError, UnidentifiedImageError) as error:
        reason = "not found" if isinstance(error, FileNotFoundError) else "not readable"
        return f'<div class="missing">image {reason}: {escape(str(path))}</div>'
    return f'<img src="{png_uri(buffer.getvalue())}" alt="{escape(value)}">'


def audio_thumbnail(data_folder: Path, value: str) -> str:
    """An `<img>` (alt = `value`) of the clip's waveform above its spectrogram, or a note where unreadable.

    The file is read with soundfile as stored (first channel, its own sample rate): the picture
    shows the recording, not the features the model was fed.
    """
    import soundfile

    path = input_path(data_folder, value)
    try:
        samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        reason = "not found" if not path.is_file() else f"not readable ({' '.join(str(error).split())[:80]})"
        return f'<div class="missing">audio {reason}: {escape(str(path))}</div>'
    return f'<img src="{png_uri(waveform_png(samples[:, 0], sample_rate))}" alt="{escape(value)}">'


def waveform_png(signal: np.ndarray, sample_rate: int) -> bytes:
    """PNG of a waveform (top) and its spectrogram (bottom), 2.4 x 1.8 inches, no axes.

    Args:
        signal: float32[T] samples in [-1, 1].
        sample_rate: samples per second.
    """
    figure = _plots.new_figure(2.4, 1.8)
    top, bottom = figure.subplots(2, 1, height_ratios=(1, 1.3))
    seconds = len(signal) / sample_rate if sample_rate else 0.0
    if len(signal) > _WAVEFORM_POINTS:
        # Min/max per bucket keeps the peaks a plain subsample would skip.
        buckets = np.array_split(signal, _WAVEFORM_POINTS // 2)
        envelope = np.stack([[bucket.min(), bucket.max()] for bucket in buckets]).ravel()
        times = np.linspace(0.0, seconds, len(envelope))
    else:
        envelope, times = signal, np.arange(len(signal)) / max(sample_rate, 1)
    top.plot(times, envelope, lw=0.6, color="#4c72b0")
    top.set_xlim(0.0, max(seconds, 1e-3))
    # Scaled to the clip's peak: quiet clips would be a flat line on a fixed [-1, 1] axis.
    peak = float(np.abs(signal).max()) if len(signal) else 0.0
    top.set_ylim(-(peak or 1.0) * 1.05, (peak or 1.0) * 1.05)
    top.set_title(f"{seconds:.2f} s at {sample_rate} Hz", fontsize=10)
    if len(signal) >= 256:
        bottom.specgram(signal, NFFT=256, Fs=sample_rate, noverlap=128, cmap="magma")
    for axes in (top, bottom):
        axes.set_axis_off()
    return _plots.to_png(figure)


def shorten(text: str, *, limit: int = 160) -> str:
    """`text` cut to `limit` characters with an ellipsis, for table cells."""
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def text_snippet(text: str, *, limit: int = SNIPPET_CHARACTERS) -> str:
    """A `<blockquote>` of the text, cut to `limit` characters with an ellipsis."""
    shown = text if len(text) <= limit else text[:limit].rstrip() + " …"
    return f'<blockquote class="snippet">{escape(shown)}</blockquote>'


def card(body: str, label: SampleLabel, *, heading: str) -> str:
    """A sample card: `body` (already HTML), then row heading, predicted and actual values.

    The border is green or red when the label says the prediction is right or wrong.
    """
    state = {True: " right", False: " wrong", None: ""}[label.correct]
    lines = [heading, f"predicted: <strong>{escape(label.predicted)}</strong>"]
    if label.actual is not None:
        lines.append(f"actual: <strong>{escape(label.actual)}</strong>")
    return f'<figure class="sample{state}">{body}<figcaption>{"<br>".join(lines)}</figcaption></figure>'
