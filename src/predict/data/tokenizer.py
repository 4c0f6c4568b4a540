"""Tokenizers: text to token ids with character offsets and word ids, from a local file only.

Two families, chosen by the file (`preprocessing.tokenizer`), never downloaded:

- a Hugging Face `tokenizer.json` (the `tokenizers` library): sub-words, special tokens and
  normalisation exactly as saved with the model;
- a Keras-style word index, one id per word:
  - `*.json` holding Keras' `Tokenizer.to_json()` (`keras.preprocessing.text.Tokenizer` of Keras 2 /
    tf_keras; its `word_index`, `lower`, `filters`, `split`, `oov_token` and `num_words` are used), or a
    plain `{"word": id}` word index (ids from 1, 0 = padding) read with that Tokenizer's defaults.
    Words as `Tokenizer.texts_to_sequences` makes them (`text_to_word_sequence`): the text is
    lower-cased, every `filters` character becomes `split`, the text is split on `split` (only: a
    `\r` or no-break space not in `filters` stays inside a word) and empty words are dropped; a word
    whose id is >= `num_words` counts as unknown; unknown words get the `oov_token`'s id, or are
    dropped without one;
  - `*.txt`: a `TextVectorization.get_vocabulary()` list, one token per line, line i = id i
    (`""` padding at 0, `[UNK]` at 1), split as its default `lower_and_strip_punctuation` does.

Every tokenizer gives `Encoding`s with the same fields, so the loaders and heads never ask which
family they have. Truncation keeps the start of a text (`truncation_side: right`, tokenizers' default)
or its end (`left`, Keras `pad_sequences`' default `truncating="pre"`); specials added by a
tokenizer.json's post-processor are kept inside `max_length` either way.
"""

from __future__ import annotations

import json
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from predict.enums import TruncationSide
from predict.errors import ConfigError, one_line

# Keras `Tokenizer(filters=...)` default: these characters separate words like whitespace does.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
# TextVectorization's `lower_and_strip_punctuation` deletes these (string.punctuation) before splitting.
_STRIP_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]")
_PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>", "[pad]")
_TEXT_VECTORIZATION_OOV = "[UNK]"
_WORD_INDEX_OOV = ("<OOV>", "[UNK]", "<unk>", "<UNK>")


@dataclass(frozen=True)
class Encoding:
    """One tokenized sequence (a text, or a question-context window), before padding.

    Attributes:
        ids: int64[L] token ids, specials included.
        type_ids: int64[L] segment of each token (0 first text, 1 second), as BERT's token_type_ids.
        offsets: int32[L, 2] character (start, end) of each token in the text it came from;
            (0, 0) for special tokens.
        word_ids: int32[L] index of the word a token belongs to (whitespace words for
            `encode_words`), -1 for special tokens.
        sequence_ids: int8[L] 0 = first text, 1 = second text (the context of a pair), -1 = special.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    word_ids: np.ndarray
    sequence_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


class TextTokenizer(ABC):
    """What the loaders need from a tokenizer.

    Attributes:
        pad_id: the id that fills padded positions.
        description: one line for the run summary (which tokenizer, which vocabulary size).
    """

    pad_id: int
    description: str

    @abstractmethod
    def encode(
        self, texts: Sequence[str], *, max_length: int, truncation_side: TruncationSide = TruncationSide.RIGHT
    ) -> list[Encoding]:
        """Each text as one sequence of at most `max_length` tokens, cut at its end (`right`) or its start (`left`)."""

    @abstractmethod
    def encode_words(
        self,
        words: Sequence[Sequence[str]],
        *,
        max_length: int,
        truncation_side: TruncationSide = TruncationSide.RIGHT,
    ) -> list[Encoding]:
        """Pre-split texts (lists of whitespace words); `word_ids` index into each whole list, cut or not."""

    @abstractmethod
    def encode_windows(self, question: str, context: str, *, max_length: int, stride: int) -> list[Encoding]:
        """A question-context pair as windows of at most `max_length` tokens over the context.

        Consecutive windows share `stride` context tokens; the question is in every window.
        `offsets` of context tokens (sequence_ids == 1) index into `context`.

        Raises:
            ValueError: the question leaves no room for the context, or `stride` is not smaller than it.
        """


class HuggingFaceTokenizer(TextTokenizer):
    """A `tokenizers.Tokenizer` read from a local tokenizer.json."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises a bare Exception for every parse error
            raise ConfigError(
                f"preprocessing.tokenizer {path.name}: not a valid tokenizer.json: {one_line(error)}"
            ) from None
        # A tokenizer.json may carry padding and truncation settings; the loader pads and truncates itself.
        padding = self.tokenizer.padding
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        if padding is not None:
            self.pad_id = int(padding["pad_id"])
        else:
            found = [self.tokenizer.token_to_id(token) for token in _PAD_TOKENS]
            self.pad_id = next((int(token_id) for token_id in found if token_id is not None), 0)
        self.description = f"tokenizer {path.name} ({self.tokenizer.get_vocab_size()} tokens, pad id {self.pad_id})"

    def encode(
        self, texts: Sequence[str], *, max_length: int, truncation_side: TruncationSide = TruncationSide.RIGHT
    ) -> list[Encoding]:
        self.tokenizer.enable_truncation(max_length, direction=truncation_side.value)
        return [_from_hf(encoding) for encoding in self.tokenizer.encode_batch(list(texts))]

    def encode_words(
        self,
        words: Sequence[Sequence[str]],
        *,
        max_length: int,
        truncation_side: TruncationSide = TruncationSide.RIGHT,
    ) -> list[Encoding]:
        self.tokenizer.enable_truncation(max_length, direction=truncation_side.value)
        encoded = self.tokenizer.encode_batch([list(row) for row in words], is_pretokenized=True)
        return [_from_hf(encoding) for encoding in encoded]

    def encode_windows(self, question: str, context: str, *, max_length: int, stride: int) -> list[Encoding]:
        # tokenizers' own overflow: every window repeats the question and specials (as transformers' QA does).
        try:
            self.tokenizer.enable_truncation(max_length, stride=stride, strategy="only_second", direction="right")
            first = self.tokenizer.encode(question, context)
        except Exception as error:  # too long a question, or a stride as long as the room left
            raise ValueError(
                f"cannot fit the question and a window of context in max_length {max_length} with doc_stride {stride}: "
                f"{one_line(error)}"
            ) from None
        return [_from_hf(encoding) for encoding in (first, *first.overflowing)]


def _from_hf(encoding) -> Encoding:
    return Encoding(
        ids=np.asarray(encoding.ids, dtype=np.int64),
        type_ids=np.asarray(encoding.type_ids, dtype=np.int64),
        offsets=np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2),
        word_ids=np.asarray([-1 if word is None else word for word in encoding.word_ids], dtype=np.int32),
        sequence_ids=np.asarray([-1 if seq is None else seq for seq in encoding.sequence_ids], dtype=np.int8),
    )


class WordIndexTokenizer(TextTokenizer):
    """One id per word from a word index, as Keras' `Tokenizer` and `TextVectorization` map words.

    Attributes:
        vocabulary: word to id.
        lowercase: lower-case words before the lookup.
        strip_punctuation: True: delete punctuation from each whitespace word (TextVectorization);
            False: Keras `Tokenizer` words (`filters` characters become `split`, see the module docstring).
        oov_id: the id of unknown words; None drops them (Keras `Tokenizer` without `oov_token`).
        num_words: ids >= this are unknown (Keras `Tokenizer(num_words=...)`); None keeps all.
    """

    def __init__(
        self,
        vocabulary: dict[str, int],
        *,
        name: str,
        lowercase: bool,
        strip_punctuation: bool,
        filters: str = KERAS_FILTERS,
        split: str = " ",
        oov_id: int | None,
        num_words: int | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.lowercase = lowercase
        self.strip_punctuation = strip_punctuation
        self.oov_id = oov_id
        self.num_words = num_words
        self.filters = frozenset(filters)
        self.split = split
        self._to_split = str.maketrans({character: split for character in self.filters})
        self._between_splits = re.compile("[^" + re.escape(split) + "]+") if len(split) == 1 else None
        self.pad_id = 0
        oov = "dropped" if oov_id is None else f"id {oov_id}"
        self.description = f"word index {name} ({len(vocabulary)} words, lowercase {lowercase}, unknown words {oov})"

    def _id(self, word: str) -> int | None:
        """The id of a word already lower-cased and split as the vocabulary's tokenizer does."""
        token_id = self.vocabulary.get(word)
        if token_id is None or (self.num_words is not None and token_id >= self.num_words):
            return self.oov_id
        return token_id

    def _lookup(self, word: str) -> int | None:
        """The id of one whitespace word of a pre-split text (token classification)."""
        if self.lowercase:
            word = word.lower()
        if self.strip_punctuation:
            word = _STRIP_PUNCTUATION.sub("", word)
        return self._id(word)

    def _keras_words(self, text: str) -> Iterator[tuple[str, int, int]]:
        """Keras `text_to_word_sequence(text, filters, lower, split)`, with each word's span in `text`."""
        source = text.lower() if self.lowercase else text
        translated = source.translate(self._to_split)
        if self._between_splits is not None and len(translated) == len(text):  # one character in, one out
            for match in self._between_splits.finditer(translated):
                yield match.group(), match.start(), match.end()
            return
        # Lower-casing that changes length ("İ" becomes "i̇") or a longer `split`: track where each character
        # came from. The whole text lowers to as many characters as its characters one by one (only the
        # final sigma depends on context, and it stays one character).
        origins = [
            index for index, character in enumerate(text) for _ in (character.lower() if self.lowercase else character)
        ]
        mapped = [
            origin
            for origin, character in zip(origins, source)
            for _ in (self.split if character in self.filters else character)
        ]
        position = 0
        for word in translated.split(self.split):
            if word:
                yield word, mapped[position], mapped[position + len(word) - 1] + 1
            position += len(word) + len(self.split)

    def _tokens(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids, offsets = [], []
        if self.strip_punctuation:
            for match in re.finditer(r"\S+", text):
                word = match.group()
                if not _STRIP_PUNCTUATION.sub("", word):
                    continue  # punctuation only: TextVectorization deletes it, it is no word
                token_id = self._lookup(word)
                if token_id is not None:
                    ids.append(token_id)
                    offsets.append(match.span())
            return ids, offsets
        for word, start, end in self._keras_words(text):
            token_id = self._id(word)
            if token_id is not None:
                ids.append(token_id)
                offsets.append((start, end))
        return ids, offsets

    def encode(
        self, texts: Sequence[str], *, max_length: int, truncation_side: TruncationSide = TruncationSide.RIGHT
    ) -> list[Encoding]:
        encodings = []
        for text in texts:
            ids, offsets = self._tokens(text)
            kept = _kept(len(ids), max_length, truncation_side)
            encodings.append(_word_encoding(ids[kept], offsets[kept], sequence=0))
        return encodings

    def encode_words(
        self,
        words: Sequence[Sequence[str]],
        *,
        max_length: int,
        truncation_side: TruncationSide = TruncationSide.RIGHT,
    ) -> list[Encoding]:
        # Exactly one position per whitespace word, so word i is token i; an unknown word without an
        # OOV id takes the padding id (a word-level tagger still needs its slot).
        encodings = []
        for row in words:
            kept = _kept(len(row), max_length, truncation_side)
            ids = [self._lookup(word) for word in row[kept]]
            ids = [self.pad_id if token_id is None else token_id for token_id in ids]
            offsets = [(0, len(word)) for word in row[kept]]
            encodings.append(_word_encoding(ids, offsets, sequence=0, first_word=kept.start))
        return encodings

    def encode_windows(self, question: str, context: str, *, max_length: int, stride: int) -> list[Encoding]:
        question_ids, question_offsets = self._tokens(question)
        context_ids, context_offsets = self._tokens(context)
        room = max_length - len(question_ids)
        if room < 1 or stride >= room:
            raise ValueError(
                f"the question takes {len(question_ids)} of max_length {max_length} tokens, leaving {max(room, 0)} "
                "for the "
                f"context; doc_stride {stride} must be smaller than that"
            )
        question_part = _word_encoding(question_ids, question_offsets, sequence=0)
        windows = []
        start = 0
        while True:
            stop = min(start + room, len(context_ids))
            part = _word_encoding(context_ids[start:stop], context_offsets[start:stop], sequence=1, first_word=start)
            windows.append(_concatenate(question_part, part))
            if stop >= len(context_ids):
                return windows
            start = stop - stride


def _kept(length: int, max_length: int, side: TruncationSide) -> slice:
    """The positions of a sequence of `length` tokens that truncation keeps."""
    if length <= max_length:
        return slice(0, length)
    return slice(length - max_length, length) if side is TruncationSide.LEFT else slice(0, max_length)


def _word_encoding(ids: list[int], offsets: list[tuple[int, int]], *, sequence: int, first_word: int = 0) -> Encoding:
    count = len(ids)
    return Encoding(
        ids=np.asarray(ids, dtype=np.int64),
        type_ids=np.full(count, sequence, dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.int32).reshape(count, 2),
        word_ids=np.arange(first_word, first_word + count, dtype=np.int32),
        sequence_ids=np.full(count, sequence, dtype=np.int8),
    )


def _concatenate(first: Encoding, second: Encoding) -> Encoding:
    return Encoding(
        *(np.concatenate([getattr(first, name), getattr(second, name)]) for name in Encoding.__dataclass_fields__)
    )


def _text_vectorization_vocabulary(
    text: str, *, path: Path, lowercase: bool | None, oov_token: str | None
) -> WordIndexTokenizer:
    """A TextVectorization vocabulary .txt: line i is the token of id i."""
    vocabulary: dict[str, int] = {}
    for index, token in enumerate(text.split("\n")):
        if token and token not in vocabulary:  # "" is the padding entry (id 0), never a word
            vocabulary[token] = index
    oov_id = _oov_id(vocabulary, oov_token, defaults=(_TEXT_VECTORIZATION_OOV,), path=path)
    return WordIndexTokenizer(
        vocabulary,
        name=path.name,
        lowercase=True if lowercase is None else lowercase,
        strip_punctuation=True,
        oov_id=oov_id,
    )


def _refuse_word_index_options(path: Path, *, lowercase: bool | None, oov_token: str | None) -> None:
    """A tokenizer.json normalizes and knows its unknown token itself: word-index options do not apply."""
    for option, value in (("lowercase", lowercase), ("oov_token", oov_token)):
        if value is not None:
            raise ConfigError(
                f"preprocessing.{option} is for word-index vocabularies; {path.name} is a tokenizer.json, whose "
                "normalizer and unknown token are saved inside it: remove the key"
            )


def load_tokenizer(path: Path, *, lowercase: bool | None = None, oov_token: str | None = None) -> TextTokenizer:
    """Read the tokenizer a model was trained with from a local file (see the module docstring).

    Args:
        path: tokenizer.json, Keras Tokenizer / word index JSON, or a TextVectorization vocabulary .txt.
        lowercase: word indexes only; default: the Keras Tokenizer's own `lower`, else True.
        oov_token: word indexes only; the out-of-vocabulary token, which must be in the vocabulary.
            Default: the Keras Tokenizer's own, `[UNK]` in a .txt, `<OOV>`/`[UNK]` in a plain index.

    Raises:
        ConfigError: unreadable file, unknown layout, or an option the file's family does not take.
    """
    key = "preprocessing.tokenizer"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{key} {path}: cannot be read: {one_line(error)}") from None
    if path.suffix.lower() == ".txt":
        return _text_vectorization_vocabulary(text, path=path, lowercase=lowercase, oov_token=oov_token)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{key} {path.name}: not valid JSON: {one_line(error)}") from None
    if isinstance(payload, dict) and "model" in payload and "added_tokens" in payload:
        _refuse_word_index_options(path, lowercase=lowercase, oov_token=oov_token)
        return HuggingFaceTokenizer(path)
    if (
        isinstance(payload, dict)
        and payload.get("class_name") == "Tokenizer"
        and isinstance(payload.get("config"), dict)
    ):
        return _keras_tokenizer(payload["config"], path=path, lowercase=lowercase, oov_token=oov_token)
    if (
        isinstance(payload, dict)
        and payload
        and all(isinstance(v, int) and not isinstance(v, bool) for v in payload.values())
    ):
        oov_id = _oov_id(payload, oov_token, defaults=_WORD_INDEX_OOV, path=path)
        return WordIndexTokenizer(
            payload,
            name=path.name,
            lowercase=True if lowercase is None else lowercase,
            strip_punctuation=False,
            oov_id=oov_id,
        )
    raise ConfigError(
        f"{key} {path.name}: unknown JSON layout; expected a Hugging Face tokenizer.json, Keras Tokenizer.to_json(), "
        'or a word index {"word": id, ...}'
    )


def _keras_tokenizer(config: dict, *, path: Path, lowercase: bool | None, oov_token: str | None) -> WordIndexTokenizer:
    if config.get("char_level"):
        raise ConfigError(f"preprocessing.tokenizer {path.name}: a character-level Keras Tokenizer is not supported")
    word_index = config.get("word_index")
    if isinstance(word_index, str):  # Tokenizer.to_json() stores it as a JSON string inside the JSON
        word_index = json.loads(word_index)
    if not isinstance(word_index, dict) or not word_index:
        raise ConfigError(
            f"preprocessing.tokenizer {path.name}: the Keras Tokenizer has no word_index (was it fitted?)"
        )
    split = config.get("split", " ")
    if not isinstance(split, str) or not split:
        raise ConfigError(
            f"preprocessing.tokenizer {path.name}: the Keras Tokenizer's split must be a non-empty string "
            f"(got {split!r})"
        )
    saved_oov = config.get("oov_token")
    oov_id = _oov_id(word_index, oov_token or saved_oov, defaults=(), path=path)
    num_words = config.get("num_words")
    return WordIndexTokenizer(
        word_index,
        name=path.name,
        lowercase=bool(config.get("lower", True)) if lowercase is None else lowercase,
        strip_punctuation=False,
        filters=config.get("filters") or "",
        split=split,
        oov_id=oov_id,
        num_words=int(num_words) if num_words else None,  # Keras: num_words None or 0 keeps every word
    )


def _oov_id(vocabulary: dict[str, int], token: str | None, *, defaults: Sequence[str], path: Path) -> int | None:
    if token is not None:
        if token not in vocabulary:
            raise ConfigError(f"preprocessing.oov_token {token!r} is not in the vocabulary of {path.name}")
        return vocabulary[token]
    return next((vocabulary[name] for name in defaults if name in vocabulary), None)
