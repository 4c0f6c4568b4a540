"""The target side of text generation: the generated ids' tokenizer, its start and end tokens, and ids back to text.

Generation writes token ids of the *target* vocabulary: `head.target_tokenizer`, or the source
tokenizer (`preprocessing.tokenizer`) when the model shares one vocabulary for both sides. Either
family of `predict.data.tokenizer` works: a Hugging Face tokenizer.json decodes with its own decoder
(special tokens dropped), a word index joins its words with single spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from predict.data.tokenizer import HuggingFaceTokenizer, TextTokenizer, WordIndexTokenizer, load_tokenizer
from predict.errors import ConfigError

# Looked up, in this order, when `head.start_token` / `head.end_token` are not set: the names the
# usual tokenizers (BART/T5 `<s>`/`</s>`, BERT-style `[BOS]`/`[EOS]`, Keras tutorials `<start>`) give them.
DEFAULT_START_TOKENS = ("[BOS]", "<s>", "<bos>", "<start>", "[CLS]")
DEFAULT_END_TOKENS = ("[EOS]", "</s>", "<eos>", "<end>", "[SEP]")


def load_target_tokenizer(
    target: Path | None, *, source: Path, lowercase: bool | None, oov_token: str | None
) -> TextTokenizer:
    """The tokenizer of the generated ids: `target`, or the source tokenizer (with its options) when None.

    Raises:
        ConfigError: the file cannot be read as a tokenizer.
    """
    if target is None:
        return load_tokenizer(source, lowercase=lowercase, oov_token=oov_token)
    return load_tokenizer(target)


def token_id(tokenizer: TextTokenizer, token: str) -> int | None:
    """The id of `token` in the tokenizer's vocabulary, or None when it has none."""
    if isinstance(tokenizer, HuggingFaceTokenizer):
        found = tokenizer.tokenizer.token_to_id(token)
        return None if found is None else int(found)
    if isinstance(tokenizer, WordIndexTokenizer):
        return tokenizer.vocabulary.get(token)
    raise TypeError(f"unknown tokenizer family {type(tokenizer).__name__}")


def vocabulary_size(tokenizer: TextTokenizer) -> int:
    """Ids the tokenizer can decode: 0 .. size - 1."""
    if isinstance(tokenizer, HuggingFaceTokenizer):
        return int(tokenizer.tokenizer.get_vocab_size(with_added_tokens=True))
    if isinstance(tokenizer, WordIndexTokenizer):
        return max(tokenizer.vocabulary.values(), default=0) + 1
    raise TypeError(f"unknown tokenizer family {type(tokenizer).__name__}")


def special_token_id(
    tokenizer: TextTokenizer, token: str | None, *, key: str, defaults: Sequence[str], name: str
) -> int:
    """The id of the configured start or end token, or of the first default the vocabulary has.

    Args:
        token: `head.start_token` / `head.end_token`, or None for the defaults.
        key: the config key, for messages.
        name: the tokenizer file's name, for messages.

    Raises:
        ConfigError: the configured token is not in the vocabulary, or none of the defaults is.
    """
    if token is not None:
        found = token_id(tokenizer, token)
        if found is None:
            raise ConfigError(f"{key}: {token!r} is not in the vocabulary of {name}")
        return found
    for candidate in defaults:
        found = token_id(tokenizer, candidate)
        if found is not None:
            return found
    raise ConfigError(
        f"{key} is missing and {name} has none of the usual tokens ({', '.join(defaults)}): "
        "name the token the decoder was trained with"
    )


class TargetDecoder:
    """Generated ids to text.

    Args:
        tokenizer: the target tokenizer.
        skip_ids: ids never written into the text (start, end, padding).
    """

    def __init__(self, tokenizer: TextTokenizer, *, skip_ids: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.skip_ids = frozenset(int(token) for token in skip_ids)
        self.size = vocabulary_size(tokenizer)
        if isinstance(tokenizer, WordIndexTokenizer):
            self.words = {token: word for word, token in tokenizer.vocabulary.items()}

    def decode(self, generated: np.ndarray) -> list[str]:
        """One text per row.

        Args:
            generated: int64[B, L] token ids; -1 marks the slots after the end of a row.

        Returns:
            B strings; ids in `skip_ids` and ids outside the vocabulary are left out.
        """
        rows = [
            [int(token) for token in row if 0 <= token < self.size and int(token) not in self.skip_ids]
            for row in generated
        ]
        if isinstance(self.tokenizer, HuggingFaceTokenizer):
            return list(self.tokenizer.tokenizer.decode_batch(rows, skip_special_tokens=True))
        return [" ".join(self.words[token] for token in row if token in self.words) for row in rows]


@dataclass(frozen=True, kw_only=True)
class TargetVocabulary:
    """The target tokenizer of a sequence-to-sequence task with its start and end ids, read once per run:
    generation starts and stops with them, and the head decodes with them (predict.problems.sequence_to_sequence).
    """

    tokenizer: TextTokenizer
    start_id: int
    end_id: int

    def decoder(self) -> TargetDecoder:
        """Ids back to text, leaving the start, end and padding tokens out."""
        return TargetDecoder(self.tokenizer, skip_ids=[self.tokenizer.pad_id, self.start_id, self.end_id])


def load_target_vocabulary(
    target: Path | None,
    *,
    source: Path,
    lowercase: bool | None,
    oov_token: str | None,
    start_token: str | None,
    end_token: str | None,
) -> TargetVocabulary:
    """The target tokenizer (`target`, else the source one, see `load_target_tokenizer`) and the ids of
    `start_token` / `end_token` (`head.start_token` / `head.end_token`, or the first default it has).

    Raises:
        ConfigError: the tokenizer cannot be read, or lacks the start or end token.
    """
    tokenizer = load_target_tokenizer(target, source=source, lowercase=lowercase, oov_token=oov_token)
    name = (target or source).name
    start_id = special_token_id(
        tokenizer, start_token, key="head.start_token", defaults=DEFAULT_START_TOKENS, name=name
    )
    end_id = special_token_id(tokenizer, end_token, key="head.end_token", defaults=DEFAULT_END_TOKENS, name=name)
    return TargetVocabulary(tokenizer=tokenizer, start_id=start_id, end_id=end_id)
