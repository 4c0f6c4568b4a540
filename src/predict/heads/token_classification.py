"""Token classification head (text token classification, e.g. named entities in BIO tags).

Words are the whitespace-separated words of `{text_column}`; the label column holds one tag per word,
space-separated. The model scores sub-word tokens (batch, tokens, classes); a word takes the scores
of its first sub-token. Words cut off by `max_length` (the last ones, or the first ones with
`preprocessing.truncation_side: left`) get NaN probabilities and `head.overflow_tag`.

Writes (FORMATS.md "Text", token classification):
- pkl: `probabilities` list of float32 (words, classes) arrays, `predictions` (n,) lists of tags,
  `labels` (classes,) class names in output order, `{text_column}` (n,).
- CSV: every input column, then `pred_{label_column}` = the predicted tags, space-separated.
Metrics: `F1` at entity level (BIO), micro-averaged, with `Precision` and `Recall`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch
from predict.data.context import WordContext
from predict.errors import ConfigError, InputError
from predict.heads import _ops
from predict.heads.base import Head, NamesByRow, column_values, context_of, select_output
from predict.heads.classification import Activation
from predict.report.text_metrics import entity_f1
from predict.runners.base import TensorSpec


@dataclass(frozen=True, kw_only=True)
class Config:
    """`head:` keys of token classification."""

    class_names: tuple[str, ...] = ()  # the tag of each model output, in order (default: sorted label tags)
    activation: Activation = Activation.AUTO  # auto: softmax unless the graph ends in Softmax
    overflow_tag: str = "O"  # the tag of words cut off by max_length
    output_name: str | None = None  # which model output, when it has several


class TokenClassificationHead(Head):
    """Per-word class probabilities and tags, and entity-level F1."""

    Config = Config
    model_keys = ("labels",)
    context_type = WordContext

    def __init__(
        self,
        *,
        output: str,
        softmax: bool,
        class_names: tuple[str, ...],
        overflow_tag: str,
        label_column: str,
        input_column: str,
        labels: Sequence[str] | None,
        notes: list[str],
    ) -> None:
        self.output = output
        self.softmax = softmax
        self.class_names = class_names
        self.overflow_tag = overflow_tag
        self.label_column = label_column
        self.input_column = input_column
        self.labels = labels
        self.notes = notes

    @classmethod
    def build(
        cls, task: TaskConfig, *, outputs: tuple[TensorSpec, ...], dataframe: pd.DataFrame
    ) -> TokenClassificationHead:
        config: Config = task.head
        model_name = task.model.name
        spec = select_output(outputs, config.output_name, model_name=model_name)
        if len(spec.shape) != 3:
            raise ConfigError(
                f"model {model_name}: output '{spec.name}' has {len(spec.shape)} axes; token classification needs "
                "(batch, tokens, classes) scores"
            )
        if len(task.data.label_columns) != 1:
            raise ConfigError(
                "data.label_columns: token classification takes one column of space-separated tags "
                f"(got {list(task.data.label_columns)})"
            )
        label_column = task.data.label_columns[0]
        labels, seen = None, set()
        if label_column in dataframe.columns:
            labels, seen = _read_tags(dataframe, task.input_column, label_column, source=task.data.dataframe.name)
        class_names = config.class_names
        if not class_names and labels is not None:
            class_names = tuple(sorted(seen))
        if not class_names:
            raise ConfigError(
                f"head.class_names is missing: the dataframe has no '{label_column}' column to read tags from; "
                "list the model's tags in output order"
            )
        width = spec.shape[2]
        if width is not None and width != len(class_names):
            raise ConfigError(
                f"head.class_names: model {model_name} output '{spec.name}' scores {width} classes but "
                f"{len(class_names)} tags are known ({', '.join(class_names)}); list all {width} in output order"
            )
        if labels is not None and not seen <= set(class_names):
            _check_tags(labels, class_names, label_column=label_column, source=task.data.dataframe.name)
        softmax, notes = _softmax(config.activation, spec)
        return cls(
            output=spec.name,
            softmax=softmax,
            class_names=class_names,
            overflow_tag=config.overflow_tag,
            label_column=label_column,
            input_column=task.input_column,
            labels=labels,
            notes=notes,
        )

    def postprocess(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """Sub-token scores float[B, T, C] to per-word probabilities; reads the `WordContext` (words loader)."""
        scores = np.asarray(outputs[self.output], dtype=np.float32)
        probabilities = _ops.softmax(scores) if self.softmax else scores
        context = context_of(batch, WordContext, head=self)
        word_ids, counts = context.word_ids, context.word_counts
        # The first sub-token of a word: a word id that differs from the token before it.
        previous = np.concatenate([np.full((len(word_ids), 1), -1, dtype=word_ids.dtype), word_ids[:, :-1]], axis=1)
        first = (word_ids >= 0) & (word_ids != previous)
        overflow = len(self.class_names)  # the tag index of a word cut off: `self.tag_names[overflow]`
        per_word = np.empty(len(counts), dtype=object)
        tag_ids = np.empty(len(counts), dtype=object)
        for row, count in enumerate(counts):
            values = np.full((int(count), len(self.class_names)), np.nan, dtype=np.float32)
            positions = np.flatnonzero(first[row])
            values[word_ids[row, positions]] = probabilities[row, positions]
            per_word[row] = values
            ids = values.argmax(axis=1).astype(np.int32) if count else np.zeros(0, dtype=np.int32)
            ids[np.isnan(values[:, 0])] = overflow
            tag_ids[row] = ids
        return {"probabilities": per_word, "tag_ids": tag_ids}

    @property
    def tag_names(self) -> np.ndarray:
        """object[C + 1]: the tag of each tag index, the last `overflow_tag` (a word cut off by max_length)."""
        names = np.empty(len(self.class_names) + 1, dtype=object)
        names[:] = [*self.class_names, self.overflow_tag]
        return names

    def predicted_tags(self, predictions: dict[str, np.ndarray]) -> NamesByRow:
        """Per row, its list of predicted tags, made from the row's tag indices when read."""
        return NamesByRow(predictions["tag_ids"], self.tag_names)

    def finalize(self, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cut = sum(bool(np.isnan(values).any()) for values in predictions["probabilities"])
        if cut:
            self.notes.append(
                f"{cut} row(s) have more tokens than max_length: the words cut off got NaN probabilities and tag "
                f"'{self.overflow_tag}'"
            )
        return predictions

    def prediction_columns(self, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
        return {f"pred_{self.label_column}": [" ".join(tags) for tags in self.predicted_tags(predictions)]}

    def raw_predictions(self, predictions: dict[str, np.ndarray], dataframe: pd.DataFrame) -> dict[str, Any]:
        probabilities = predictions["probabilities"]
        return {
            # A list; a run's rows still on disk (a sequence, writers.checkpoint.RowArrays) are pickled as one.
            "probabilities": list(probabilities) if isinstance(probabilities, np.ndarray) else probabilities,
            "predictions": self.predicted_tags(predictions),
            "labels": np.asarray(self.class_names),
            self.input_column: column_values(dataframe, self.input_column),
        }

    def metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        if self.labels is None:
            return {}
        return entity_f1((_split_tags(tags) for tags in self.labels), self.predicted_tags(predictions))


def _check_tags(labels: Sequence[str], class_names: tuple[str, ...], *, label_column: str, source: str) -> None:
    """Every label tag is one of the model's tags.

    Raises:
        InputError: naming the row, the column and the first unknown tag.
    """
    known = set(class_names)
    for row, tags in enumerate(labels):
        unknown = [tag for tag in _split_tags(tags) if tag not in known]
        if unknown:
            raise InputError(
                f"{source}: row {row}, label column '{label_column}': tag {unknown[0]!r} is not "
                f"one of the model's tags ({', '.join(class_names)})"
            )


def _softmax(activation: Activation, spec: TensorSpec) -> tuple[bool, list[str]]:
    """Whether the head applies softmax to the output, and the note that says why (auto)."""
    if activation is Activation.AUTO:
        softmax = spec.producer != "Softmax"
        how = "read as logits, softmax applied" if softmax else "used as probabilities"
        return softmax, [f"output '{spec.name}' ends in {spec.producer or 'an unknown op'}: {how}"]
    if activation is Activation.SIGMOID:
        raise ConfigError("head.activation: token classification picks one tag per word: use softmax, none or auto")
    return activation is Activation.SOFTMAX, []


def _read_tags(
    dataframe: pd.DataFrame, text_column: str, label_column: str, *, source: str
) -> tuple[pd.Series, set[str]]:
    """The label column as it is, checked to give one tag per whitespace word of the text, and the
    tags it holds. A row's tags are split again where they are used (the metrics): lists of tags
    for every row, held for the whole run, took 17 MB at 100,000 rows (issue 18).

    Raises:
        InputError: naming the first row whose tag count differs from its word count.
    """
    seen: set[str] = set()
    column = dataframe[label_column]
    for row, (text, tags) in enumerate(zip(dataframe[text_column], column)):
        words = text.split() if isinstance(text, str) else []
        tags = _split_tags(tags)
        if len(tags) != len(words):
            raise InputError(
                f"{source}: row {row}, label column '{label_column}': {len(tags)} tag(s) for {len(words)} word(s) "
                f"in '{text_column}'; give one tag per whitespace-separated word"
            )
        seen.update(tags)
    return column, seen


def _split_tags(tags: object) -> list[str]:
    """A label cell's tags (an empty or missing cell: none)."""
    return tags.split() if isinstance(tags, str) else []
