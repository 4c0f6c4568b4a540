"""Per-row facts a head needs that are not model inputs: one typed context per loader layout.

A loader puts one of these in `Batch.context` (None for layouts with no such facts: one text
sequence per row, numeric arrays); the head that reads it declares the class as its
`context_type` (`predict.heads.base.Head`), so a head and a loader that disagree are found by
type, not by a missing dict key deep inside a head. Every field is an array whose first axis is
the batch's rows (or, for `WindowContext.offsets`, its windows).

Fields hold NumPy arrays; while a batch crosses from a worker process they are torch tensors
(`predict.data.collate.to_shared`), and `from_shared` turns them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class ImageContext:
    """What the image loader (`predict.data.image.ImageBatches`) knows of each image.

    Attributes:
        original_sizes: int64[B, 2] (height, width) of each decoded image before resizing or
            letterboxing; (0, 0) for rows that could not be read.
        input_sizes: int64[B, 2] (height, width) of the model input the image was resized or
            letterboxed into.
    """

    original_sizes: np.ndarray
    input_sizes: np.ndarray


@dataclass(frozen=True, kw_only=True)
class WordContext:
    """Whitespace words per row (token classification, `predict.data.text.TextLayout.WORDS`).

    Attributes:
        word_ids: int32[B, T] the word each token belongs to, -1 for specials and padding.
        word_counts: int32[B] the number of whitespace words of each row, cut-off words included.
    """

    word_ids: np.ndarray
    word_counts: np.ndarray


@dataclass(frozen=True, kw_only=True)
class WindowContext:
    """Question-context windows (span prediction, `predict.data.text.TextLayout.WINDOWS`): W >= B windows.

    Attributes:
        window_rows: int64[W] the dataframe row of each window.
        offsets: int32[W, T, 2] (start, end) character offsets of each token into its row's context
            string, -1 outside the context (question, specials, padding).
        contexts: object[B] the context strings, one per row.
    """

    window_rows: np.ndarray
    offsets: np.ndarray
    contexts: np.ndarray


@dataclass(frozen=True, kw_only=True)
class ChunkContext:
    """Rows fed as several model inputs (audio chunks, `predict.data.audio.AudioBatches`).

    Each row's pieces sit next to each other in the batch's inputs; `predict.data.collate.average_chunks`
    averages the outputs back to one per row.

    Attributes:
        chunk_counts: int64[B] the number of pieces of each row.
    """

    chunk_counts: np.ndarray


# The context of a batch: one of the classes above, or None for layouts with no per-row facts.
Context = ImageContext | WordContext | WindowContext | ChunkContext | None
