"""Text: tokenize, pad and lay out as the model's inputs, batched by worker processes.

What the model takes comes from its own inputs, not the user: the token-id input, an attention
mask (an input whose name contains `mask`) and segment ids (`token_type` or `segment` in the
name), each in the input's own dtype (int32, int64, or float for Keras graphs whose `Input` was
left float). A static sequence axis fixes `max_length`; a `preprocessing.max_length` that disagrees
is a config error, as is a dynamic axis with no `max_length`.

Padding: models with an attention mask get batches padded to their longest sequence (at most
`max_length`); models without one (Keras RNNs) always see exactly `max_length` tokens, as in training.
Padding goes after the tokens (`preprocessing.padding_side: right`) or before them (`left`), and a
longer text loses its end (`truncation_side: right`) or its start (`left`). The defaults, right/right,
are Hugging Face tokenizers'; Keras `pad_sequences(padding="pre", truncating="pre")`, its defaults,
is left/left.

Three layouts, by problem type:
- one sequence per row (classification, regression, metric learning): `data.text_column`;
- whitespace words per row (token classification): a `WordContext`, `word_ids` int32[B, T] (-1 for
  specials and padding) and `word_counts` int32[B];
- question-context windows (span prediction): W >= B windows, a `WindowContext`, `window_rows` int64[W]
  (the dataframe row of each window), `offsets` int32[W, T, 2] (character offsets into the context,
  -1 outside it) and `contexts` object[B] (the context strings).
One sequence per row has no context (None). The contexts are defined in predict.data.context.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch, BatchDataset
from predict.data.context import Context, WindowContext, WordContext
from predict.data.tokenizer import Encoding, TextTokenizer, load_tokenizer
from predict.enums import PaddingSide, TextLayout, TruncationSide
from predict.errors import ConfigError
from predict.runners.base import TensorSpec


@dataclass(frozen=True, kw_only=True)
class TextInputs:
    """How a model takes token sequences.

    Attributes:
        ids: the token-id input's name; mask / token_types: the attention-mask and segment-id
            inputs' names, or None when the model has none.
        dtypes: input name to the dtype it takes.
        max_length: tokens per sequence at most.
        pad_to_max_length: pad every batch to `max_length` (no mask, or a static axis), else to its longest row.
    """

    ids: str
    mask: str | None
    token_types: str | None
    dtypes: dict[str, np.dtype]
    max_length: int
    pad_to_max_length: bool


def text_inputs_from(model_inputs: Sequence[TensorSpec], *, max_length: int | None, model_name: str) -> TextInputs:
    """Find the ids, mask and segment inputs of a text model and its sequence length.

    Args:
        model_inputs: the runner's inputs, each (batch, sequence).
        max_length: `preprocessing.max_length`, or None to take the model's static length.

    Raises:
        ConfigError: an input is not 2-D, there is not exactly one id input, or the length is
            unknown or disagrees with the model.
    """
    ids, mask, token_types = [], None, None
    for spec in model_inputs:
        if len(spec.shape) != 2:
            raise ConfigError(
                f"model {model_name}: input '{spec.name}' has {len(spec.shape)} axes; a text model takes "
                "(batch, sequence) token ids"
            )
        lowered = spec.name.lower()
        if "mask" in lowered:
            mask = spec
        elif "token_type" in lowered or "segment" in lowered:
            token_types = spec
        else:
            ids.append(spec)
    if len(ids) != 1:
        names = ", ".join(spec.name for spec in model_inputs)
        raise ConfigError(
            f"model {model_name} has inputs ({names}); a text model takes one token-id input, plus optionally an "
            "attention mask (name contains 'mask') and segment ids (name contains 'token_type' or 'segment')"
        )
    static = ids[0].shape[1]
    if static is not None and max_length is not None and static != max_length:
        raise ConfigError(
            f"preprocessing.max_length is {max_length} but model {model_name} input '{ids[0].name}' takes "
            f"{static} tokens; set max_length: {static}"
        )
    length = max_length or static
    if length is None:
        raise ConfigError(
            f"preprocessing.max_length is missing and model {model_name} has a dynamic sequence length: set it to "
            "the length the model was trained with"
        )
    return TextInputs(
        ids=ids[0].name,
        mask=mask.name if mask else None,
        token_types=token_types.name if token_types else None,
        dtypes={spec.name: np.dtype(spec.dtype) for spec in model_inputs},
        max_length=length,
        pad_to_max_length=static is not None or mask is None,
    )


class TextBatches:
    """Item i is batch i: consecutive rows, tokenized and padded into the model's input arrays.

    Args:
        texts: one text per row; for `WINDOWS`, the questions. A dataframe column is kept as it is and a
            batch's rows taken from it as Python strings when the batch is made: the whole column as a list
            held 11 MB more at 100,000 rows, for the whole run (issue 18).
        contexts: `WINDOWS` only: the context of each row.
        column: the text column's name, for error messages (`WINDOWS`: the question column).
    """

    def __init__(
        self,
        texts: Sequence[object],
        *,
        tokenizer: TextTokenizer,
        inputs: TextInputs,
        layout: TextLayout,
        batch_size: int,
        column: str,
        contexts: Sequence[object] | None = None,
        context_column: str | None = None,
        padding_side: PaddingSide = PaddingSide.RIGHT,
        truncation_side: TruncationSide = TruncationSide.RIGHT,
        doc_stride: int = 0,
    ) -> None:
        self.texts = _column(texts)
        self.contexts = _column(contexts) if contexts is not None else None
        self.tokenizer = tokenizer
        self.inputs = inputs
        self.layout = layout
        self.batch_size = batch_size
        self.column = column
        self.context_column = context_column
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.doc_stride = doc_stride

    def __len__(self) -> int:
        return -(-len(self.texts) // self.batch_size)

    def with_rows(self, dataframe: pd.DataFrame) -> TextBatches:
        """This loader (tokenizer, lengths, padding) over other rows of its column(s): a server's requests."""
        other = copy.copy(self)
        other.texts = dataframe[self.column]
        if self.contexts is not None:
            other.contexts = dataframe[self.context_column]
        return other

    def __getitem__(self, index: int) -> Batch:
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.texts))
        errors: list[tuple[int, str]] = []
        texts = self._texts(self.texts, start, stop, self.column, errors)
        max_length = self.inputs.max_length
        if self.layout is TextLayout.WINDOWS:
            contexts = self._texts(self.contexts, start, stop, self.context_column, errors)
            encodings, window_rows = [], []
            for slot, (question, text) in enumerate(zip(texts, contexts)):
                try:
                    windows = self.tokenizer.encode_windows(
                        question, text, max_length=max_length, stride=self.doc_stride
                    )
                except ValueError as error:
                    errors.append((start + slot, f"row {start + slot}, {self.column}: {error}"))
                    windows = self.tokenizer.encode_windows("", "", max_length=max_length, stride=0)[:1]
                encodings.extend(windows)
                window_rows.extend([start + slot] * len(windows))
        elif self.layout is TextLayout.WORDS:
            words = [text.split() for text in texts]
            encodings = self.tokenizer.encode_words(words, max_length=max_length, truncation_side=self.truncation_side)
        else:
            encodings = self.tokenizer.encode(texts, max_length=max_length, truncation_side=self.truncation_side)
        inputs, positions = self._pad(encodings)
        width = inputs[self.inputs.ids].shape[1]
        context: Context = None
        if self.layout is TextLayout.WORDS:
            context = WordContext(
                word_ids=_scatter(positions, [encoding.word_ids for encoding in encodings], width=width, fill=-1),
                word_counts=np.asarray([len(row) for row in words], dtype=np.int32),
            )
        elif self.layout is TextLayout.WINDOWS:
            offsets = [np.where((e.sequence_ids == 1)[:, None], e.offsets, -1) for e in encodings]
            context = WindowContext(
                window_rows=np.asarray(window_rows, dtype=np.int64),
                offsets=_scatter(positions, offsets, width=width, fill=-1),
                contexts=_object_array(contexts),
            )
        return Batch(np.arange(start, stop, dtype=np.int64), inputs, errors, context)

    @staticmethod
    def _texts(values: pd.Series, start: int, stop: int, column: str, errors: list[tuple[int, str]]) -> list[str]:
        """Rows `start:stop` of a column as text; a cell that is not text is an error on its row and reads as ""."""
        texts = values.iloc[start:stop].tolist()
        for slot, value in enumerate(texts):
            if not isinstance(value, str):
                # Parquet can hold nulls and numbers; a CSV is read as text and never gets here.
                row = start + slot
                errors.append(
                    (row, f"row {row}, {column}: expected text, got {value!r}; use an empty string for no text")
                )
                texts[slot] = ""
        return texts

    def _pad(self, encodings: list[Encoding]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Pad to the batch layout; also return each sequence's (row, slot) positions for context arrays."""
        spec = self.inputs
        longest = max((len(encoding) for encoding in encodings), default=0)
        width = spec.max_length if spec.pad_to_max_length else max(longest, 1)
        rows = len(encodings)
        ids = np.full((rows, width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((rows, width), dtype=np.int64)
        token_types = np.zeros((rows, width), dtype=np.int64)
        positions = np.zeros((rows, 2), dtype=np.int64)  # first slot, length
        for row, encoding in enumerate(encodings):
            length = len(encoding)
            first = width - length if self.padding_side is PaddingSide.LEFT else 0
            ids[row, first : first + length] = encoding.ids
            mask[row, first : first + length] = 1
            token_types[row, first : first + length] = encoding.type_ids
            positions[row] = first, length
        inputs = {spec.ids: ids.astype(spec.dtypes[spec.ids])}
        if spec.mask is not None:
            inputs[spec.mask] = mask.astype(spec.dtypes[spec.mask])
        if spec.token_types is not None:
            inputs[spec.token_types] = token_types.astype(spec.dtypes[spec.token_types])
        return inputs, positions


def _column(values: Sequence[object]) -> pd.Series:
    """Values of a column, one per row, as a Series read by position (a dataframe's column as it is)."""
    return values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)


def _scatter(positions: np.ndarray, values: list[np.ndarray], *, width: int, fill: int) -> np.ndarray:
    """Place per-sequence arrays ([L] or [L, k]) at their padded slots: int32[N, T] or int32[N, T, k]."""
    tail = values[0].shape[1:] if values else ()
    out = np.full((len(values), width, *tail), fill, dtype=np.int32)
    for row, ((first, length), value) in enumerate(zip(positions, values)):
        out[row, first : first + length] = value
    return out


def _object_array(values: Sequence[object]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def build_text_dataset(
    task: TaskConfig, dataframe: pd.DataFrame, model_inputs: tuple[TensorSpec, ...], *, layout: TextLayout
) -> BatchDataset:
    """Batches of the text column(s) in row order (`predict.data.collate.batch_loader` feeds them to the model).

    `layout` is the problem type's (predict.problems): `sequence` (classification, regression,
    metric learning) takes one sequence per row from `task.input_column`.

    Raises:
        ConfigError: the tokenizer cannot be read, or the model's inputs do not fit (see `text_inputs_from`).
    """
    preprocessing = task.preprocessing
    tokenizer = load_tokenizer(
        preprocessing.tokenizer, lowercase=preprocessing.lowercase, oov_token=preprocessing.oov_token
    )
    inputs = text_inputs_from(model_inputs, max_length=preprocessing.max_length, model_name=task.model.name)
    if layout is TextLayout.WINDOWS:
        column = task.data.question_column
        contexts = dataframe[task.data.context_column]
    else:
        column = task.input_column
        contexts = None
    dataset = TextBatches(
        dataframe[column],
        tokenizer=tokenizer,
        inputs=inputs,
        layout=layout,
        batch_size=task.runtime.batch_size,
        column=column,
        contexts=contexts,
        context_column=task.data.context_column,
        padding_side=preprocessing.padding_side,
        truncation_side=preprocessing.truncation_side,
        doc_stride=preprocessing.doc_stride,
    )
    return dataset
