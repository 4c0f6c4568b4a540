"""Sequence to sequence head (text sequence to sequence: translation, summarization, rewriting).

The model is an encoder/decoder pair: `model:` is the encoder, `head.decoder_model:` the decoder,
run by `predict.runners.generation.GenerationRunner` (its module docstring gives the input and output
names both models must have). The runner returns generated token ids; this head turns them into
text with the target tokenizer (`head.target_tokenizer`, default `preprocessing.tokenizer`), leaving
the start, end and padding tokens out.

Writes (FORMATS.md "Text", sequence to sequence):
- pkl: `{text_column}` (n,) the input texts, `predicted_text` (n,) the generated texts.
- CSV: every input column, then `pred_{label_column}` = the generated text.
Metrics: `BLEU` (sacrebleu's corpus BLEU, 0-100, its default 13a tokenization) against the label column.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.target_tokens import TargetDecoder, TargetVocabulary, load_target_vocabulary
from predict.enums import MODEL_SUFFIXES
from predict.errors import ConfigError
from predict.heads.base import Head, column_values
from predict.runners.base import TensorSpec
from predict.runners.generation import GENERATED_IDS

BLEU_CHUNK_ROWS = 1024  # rows whose reference n-grams are held at once while BLEU counts (a few MB)


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of sequence to sequence."""

    decoder_model: Path  # the decoder (.onnx or Keras .h5); `model:` is the encoder
    target_tokenizer: Path | None = None  # the generated ids' tokenizer; default: preprocessing.tokenizer
    # The decoder's first token; default: the first of [BOS], <s>, <bos>, <start>, [CLS] in the vocabulary.
    start_token: str | None = None
    end_token: str | None = None  # ends a sequence; default: the first of [EOS], </s>, <eos>, <end>, [SEP]
    max_new_tokens: int = 32  # generated tokens at most per row, the end token included
    num_beams: int = 1  # 1: greedy search; more: beam search
    length_penalty: float = 1.0  # beam search: a finished hypothesis scores log-probability / steps ** length_penalty

    def check(self) -> list[str]:
        """Ranges and files, as `load_config` reports them."""
        errors = []
        if self.max_new_tokens < 1:
            errors.append(f"head.max_new_tokens must be >= 1 (got {self.max_new_tokens})")
        if self.num_beams < 1:
            errors.append(f"head.num_beams must be >= 1 (got {self.num_beams})")
        if not self.decoder_model.is_file():
            errors.append(f"head.decoder_model file not found: {self.decoder_model}")
        elif self.decoder_model.suffix.lower() not in MODEL_SUFFIXES:
            errors.append(
                f"head.decoder_model must be one of {', '.join(MODEL_SUFFIXES)} (got '{self.decoder_model.name}')"
            )
        if self.target_tokenizer is not None and not self.target_tokenizer.is_file():
            errors.append(f"head.target_tokenizer file not found: {self.target_tokenizer}")
        return errors


class SequenceToSequenceHead(Head):
    """Generated ids to text, and corpus BLEU against the label column."""

    Config = Config

    def __init__(
        self,
        *,
        decoder: TargetDecoder,
        label_column: str,
        input_column: str,
        labels: pd.Series | None,
        notes: list[str],
    ) -> None:
        self.decoder = decoder
        self.label_column = label_column
        self.input_column = input_column
        self.labels = labels
        self.notes = notes

    @classmethod
    def build(
        cls,
        task: TaskConfig,
        *,
        outputs: tuple[TensorSpec, ...],
        dataframe: pd.DataFrame,
        vocabulary: TargetVocabulary | None = None,
    ) -> SequenceToSequenceHead:
        """As every head; `vocabulary` is the one the runner generated with (read from the config if None)."""
        config: Config = task.head
        if GENERATED_IDS not in {spec.name for spec in outputs}:
            raise ConfigError(
                f"text_sequence_to_sequence needs the generation runner, whose output is '{GENERATED_IDS}'"
            )
        if len(task.data.label_columns) != 1:
            raise ConfigError(
                "data.label_columns: sequence to sequence takes one column of target texts "
                f"(got {list(task.data.label_columns)})"
            )
        if vocabulary is None:
            preprocessing = task.preprocessing
            vocabulary = load_target_vocabulary(
                config.target_tokenizer,
                source=preprocessing.tokenizer,
                lowercase=preprocessing.lowercase,
                oov_token=preprocessing.oov_token,
                start_token=config.start_token,
                end_token=config.end_token,
            )
        label_column = task.data.label_columns[0]
        labels = None
        if label_column in dataframe.columns:
            # The column as read; its rows become Python strings a chunk at a time, for BLEU (a list of
            # every row's string, held for the whole run, was 9.5 MB at 100,000 rows; issue 18).
            labels = dataframe[label_column]
        return cls(
            decoder=vocabulary.decoder(),
            label_column=label_column,
            input_column=task.input_column,
            labels=labels,
            notes=[],
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """`generated_ids` int64[B, L] (-1 after the end) to `predicted_text` object[B] strings."""
        texts = np.empty(len(batch.row_ids), dtype=object)
        texts[:] = self.decoder.decode(outputs[GENERATED_IDS])
        return {"predicted_text": texts}

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        return {f"pred_{self.label_column}": list(predictions["predicted_text"])}

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        return {
            self.input_column: column_values(dataframe, self.input_column),
            "predicted_text": np.asarray(predictions["predicted_text"], dtype=object),
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        return {"BLEU": corpus_bleu(list(predictions["predicted_text"]), self.labels.array)}


def corpus_bleu(predicted: Sequence[str], references: Sequence[object]) -> float:
    """sacrebleu's corpus BLEU (0-100) of one reference per row, its defaults (13a, exp smoothing); 0.0 for no rows.
    A reference that is not text (an empty Parquet cell) is "".

    Corpus BLEU is a function of n-gram counts summed over rows, so the rows are counted
    `BLEU_CHUNK_ROWS` at a time and the sums scored once: the same value as `sacrebleu.corpus_bleu`
    on all rows, whose reference n-gram cache for every row at once grew the run by 350 MB at
    100,000 rows (issue 18). The integer sums are exact whatever the chunking.
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.utils import sum_of_lists

    if not predicted:
        return 0.0
    metric = BLEU()
    totals = None
    # sacrebleu has no public call for a part's counts: these two are what `BLEU.corpus_score` runs;
    # tests/test_sequence_to_sequence.py compares the result with `sacrebleu.corpus_bleu`.
    with _each_warning_once(logging.getLogger("sacrebleu")):  # its "tokenized period" warning, per chunk
        for start in range(0, len(predicted), BLEU_CHUNK_ROWS):
            hypotheses = [str(text) for text in predicted[start : start + BLEU_CHUNK_ROWS]]
            targets = [text if isinstance(text, str) else "" for text in references[start : start + BLEU_CHUNK_ROWS]]
            counts = sum_of_lists(metric._extract_corpus_statistics(hypotheses, [targets]))
            totals = counts if totals is None else [total + count for total, count in zip(totals, counts, strict=True)]
    return float(metric._compute_score_from_stats(totals).score)


@contextlib.contextmanager
def _each_warning_once(logger: logging.Logger) -> Iterator[None]:
    """While inside, a message the logger already logged is not logged again."""
    seen: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in seen:
            return False
        seen.add(message)
        return True

    logger.addFilter(first_time)
    try:
        yield
    finally:
        logger.removeFilter(first_time)
