"""Generate the data, tokenizers and encoder/decoder models that `configs/text_sequence_to_sequence*.yaml` run on.

The toy task is a translation into "Fictish", checkable by eye: every English word has one Fictish
word, and adjectives move behind their noun ("the red cat sees a dog" -> "lo gato roja vidas un kano").

Writes, deterministically (fixed seeds, rerunnable; old outputs are replaced):

- `configs/data/fictish/valid.csv`: `id, english, fictish`.
- `configs/models/fictish_tokenizer.json`: a word-level tokenizer (`tokenizers`) over both languages,
  [PAD] 0, [UNK] 1, [BOS] 2, [EOS] 3; every encoded text ends in [EOS].
- `configs/models/fictish_encoder.onnx`, `fictish_decoder.onnx`: a tiny transformer in torch.
  Encoder `input_ids`, `attention_mask` int64[N, S] -> `encoder_hidden_states` float32[N, S, 32].
  Decoder `decoder_input_ids` int64[N, T], `encoder_hidden_states`, `encoder_attention_mask`,
  `past_key_{i}`, `past_value_{i}` float32[N, 4, P, 8] -> `logits` float32[N, T, V] and
  `present_key_{i}`, `present_value_{i}` float32[N, 4, P + T, 8] (a cache of keys and values).
- `configs/models/fictish_english_words.json`, `fictish_words.json`: Keras-style word indexes
  (`{"<OOV>": 1, word: id}`; the Fictish one also has `<start>` and `<end>`).
- `configs/models/fictish_lstm_encoder.h5`, `fictish_lstm_decoder.h5`: a Keras LSTM encoder/decoder.
  Encoder `input_ids` int32[N, 16] (padded at the front with 0) -> `state_h`, `state_c` float32[N, 64].
  Decoder `decoder_input_ids` int32[N, T], `past_state_h`, `past_state_c` -> `logits` (softmax)
  float32[N, T, V], `present_state_h`, `present_state_c`: the LSTM state is the cache.

The models train on a separate, larger set that lives only in memory (a minute or two on 2 cores).
Needs the dev install (TensorFlow and torch). Run from anywhere:

    python scripts/make_seq2seq_examples.py
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
MODELS_FOLDER = REPOSITORY_ROOT / "configs" / "models"
DATA_FOLDER = REPOSITORY_ROOT / "configs" / "data" / "fictish"
TOKENIZER_PATH = MODELS_FOLDER / "fictish_tokenizer.json"

TRAIN_SEED, VALID_SEED, MODEL_SEED = 0, 1, 42
TRAIN_ROWS, VALID_ROWS = 6000, 120
KERAS_LENGTH = 16  # the LSTM encoder's static input length (configs/text_sequence_to_sequence_lstm.yaml)
MAX_POSITIONS = 64  # position embeddings of the transformer

DETERMINERS = {"the": "lo", "a": "un"}
ADJECTIVES = {
    "red": "roja",
    "big": "grana",
    "small": "peti",
    "old": "vela",
    "happy": "feli",
    "blue": "blava",
    "green": "verda",
    "quiet": "kalma",
}
NOUNS = {
    "cat": "gato",
    "dog": "kano",
    "bird": "avo",
    "house": "domo",
    "tree": "arbo",
    "car": "auto",
    "river": "rivo",
    "child": "infa",
    "teacher": "dokta",
    "farmer": "agro",
}
VERBS = {
    "sees": "vidas",
    "likes": "amas",
    "finds": "trovas",
    "follows": "sekvas",
    "paints": "pentras",
    "watches": "rigardas",
}
PREPOSITIONS = {"near": "apud", "behind": "malantau", "under": "sub"}


def main() -> None:
    """Write the data, tokenizers and both model pairs, then print their greedy BLEU on the committed rows."""
    MODELS_FOLDER.mkdir(parents=True, exist_ok=True)
    DATA_FOLDER.mkdir(parents=True, exist_ok=True)
    train = make_pairs(random.Random(TRAIN_SEED), TRAIN_ROWS)
    valid = make_pairs(random.Random(VALID_SEED), VALID_ROWS)
    valid.to_csv(DATA_FOLDER / "valid.csv", index=False)
    print(f"wrote {DATA_FOLDER / 'valid.csv'} ({len(valid)} rows)")
    tokenizer = train_tokenizer([*train.english, *train.fictish])
    tokenizer.save(str(TOKENIZER_PATH))
    print(f"wrote {TOKENIZER_PATH} ({tokenizer.get_vocab_size()} tokens)")
    torch.manual_seed(MODEL_SEED)
    train_transformer(tokenizer, train)
    train_lstm(train)


def _noun_phrase(rng: random.Random) -> tuple[list[str], list[str]]:
    determiner, noun = rng.choice(list(DETERMINERS)), rng.choice(list(NOUNS))
    adjectives = rng.sample(list(ADJECTIVES), rng.choice((0, 1, 1, 2)))
    english = [determiner, *adjectives, noun]
    fictish = [DETERMINERS[determiner], NOUNS[noun], *(ADJECTIVES[word] for word in adjectives)]
    return english, fictish


def make_pairs(rng: random.Random, rows: int) -> pd.DataFrame:
    """`english` subject-verb-object sentences (maybe with a place) and their `fictish` translation."""
    records = []
    for index in range(rows):
        subject, verb, obj = _noun_phrase(rng), rng.choice(list(VERBS)), _noun_phrase(rng)
        english = [*subject[0], verb, *obj[0]]
        fictish = [*subject[1], VERBS[verb], *obj[1]]
        if rng.random() < 0.3:
            preposition, place = rng.choice(list(PREPOSITIONS)), _noun_phrase(rng)
            english += [preposition, *place[0]]
            fictish += [PREPOSITIONS[preposition], *place[1]]
        records.append({"id": f"t{index:04d}", "english": " ".join(english), "fictish": " ".join(fictish)})
    return pd.DataFrame(records)


def train_tokenizer(texts: list[str]) -> Tokenizer:
    """Word-level, lower-casing; `$A [EOS]`, so even an empty text is one token long."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A [EOS]", special_tokens=[("[EOS]", tokenizer.token_to_id("[EOS]"))]
    )
    return tokenizer


# ----------------------------------------------------------------------------------------- transformer


class Attention(torch.nn.Module):
    """Multi-head attention written out (no fused kernels), so the ONNX graph is plain MatMul/Softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value, self.out = (torch.nn.Linear(dim, dim) for _ in range(4))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        scores = q @ k.transpose(-1, -2) / self.head_dim**0.5
        scores = scores.masked_fill(~allowed, -1e9)
        attended = torch.softmax(scores, dim=-1) @ v
        return self.out(attended.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1))


class Seq2SeqTransformer(torch.nn.Module):
    """Pre-norm encoder and decoder; the decoder's self-attention keeps its keys and values as a cache."""

    def __init__(self, vocab_size: int, *, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.layers = layers
        self.tokens = torch.nn.Embedding(vocab_size, dim)
        self.positions = torch.nn.Embedding(MAX_POSITIONS, dim)
        self.encoder_blocks = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {
                    "norm1": torch.nn.LayerNorm(dim),
                    "attention": Attention(dim, heads),
                    "norm2": torch.nn.LayerNorm(dim),
                    "ff": _feed_forward(dim),
                }
            )
            for _ in range(layers)
        )
        self.decoder_blocks = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {
                    "norm1": torch.nn.LayerNorm(dim),
                    "self_attention": Attention(dim, heads),
                    "norm2": torch.nn.LayerNorm(dim),
                    "cross_attention": Attention(dim, heads),
                    "norm3": torch.nn.LayerNorm(dim),
                    "ff": _feed_forward(dim),
                }
            )
            for _ in range(layers)
        )
        self.encoder_norm, self.decoder_norm = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.lm_head = torch.nn.Linear(dim, vocab_size)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.tokens(input_ids) + self.positions(positions)[None]
        allowed = attention_mask[:, None, None, :].bool()
        for block in self.encoder_blocks:
            x = block["norm1"](hidden)
            attention = block["attention"]
            hidden = hidden + attention.attend(
                attention.split(attention.query(x)),
                attention.split(attention.key(x)),
                attention.split(attention.value(x)),
                allowed,
            )
            hidden = hidden + block["ff"](block["norm2"](hidden))
        return self.encoder_norm(hidden)

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask, past: list[torch.Tensor]):
        """Logits of every fed position and the new cache.

        The cache is [key_0, value_0, key_1, ...], each (N, heads, P + T, head_dim).
        """
        past_length = past[0].shape[2]
        length = decoder_input_ids.shape[1]
        positions = torch.arange(length, device=decoder_input_ids.device) + past_length
        hidden = self.tokens(decoder_input_ids) + self.positions(positions)[None]
        key_positions = torch.arange(length, device=decoder_input_ids.device) + past_length
        key_positions = torch.cat([torch.arange(past_length, device=decoder_input_ids.device), key_positions])
        causal = (key_positions[None, :] <= positions[:, None])[None, None]
        cross_allowed = encoder_attention_mask[:, None, None, :].bool()
        presents = []
        for index, block in enumerate(self.decoder_blocks):
            x = block["norm1"](hidden)
            attention = block["self_attention"]
            keys = torch.cat([past[2 * index], attention.split(attention.key(x))], dim=2)
            values = torch.cat([past[2 * index + 1], attention.split(attention.value(x))], dim=2)
            presents += [keys, values]
            hidden = hidden + attention.attend(attention.split(attention.query(x)), keys, values, causal)
            x = block["norm2"](hidden)
            cross = block["cross_attention"]
            hidden = hidden + cross.attend(
                cross.split(cross.query(x)),
                cross.split(cross.key(encoder_hidden_states)),
                cross.split(cross.value(encoder_hidden_states)),
                cross_allowed,
            )
            hidden = hidden + block["ff"](block["norm3"](hidden))
        return self.lm_head(self.decoder_norm(hidden)), presents

    def empty_past(self, rows: int) -> list[torch.Tensor]:
        attention = self.decoder_blocks[0]["self_attention"]
        return [torch.zeros(rows, attention.heads, 0, attention.head_dim) for _ in range(2 * self.layers)]


def _feed_forward(dim: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(dim, 2 * dim), torch.nn.GELU(), torch.nn.Linear(2 * dim, dim))


class EncoderExport(torch.nn.Module):
    def __init__(self, model: Seq2SeqTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.encode(input_ids, attention_mask)


class DecoderWithPastExport(torch.nn.Module):
    def __init__(self, model: Seq2SeqTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask, *past):
        logits, presents = self.model.decode(
            decoder_input_ids, encoder_hidden_states, encoder_attention_mask, list(past)
        )
        return (logits, *presents)


def export_transformer(model: Seq2SeqTransformer, encoder_path: Path, decoder_path: Path) -> None:
    """Encoder and cached decoder, every batch and length axis dynamic."""
    ids = torch.ones(2, 5, dtype=torch.int64)
    torch.onnx.export(
        EncoderExport(model),
        (ids, ids),
        str(encoder_path),
        input_names=["input_ids", "attention_mask"],
        output_names=["encoder_hidden_states"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "source"},
            "attention_mask": {0: "batch", 1: "source"},
            "encoder_hidden_states": {0: "batch", 1: "source"},
        },
        opset_version=17,
        dynamo=False,
    )
    with torch.no_grad():
        hidden = model.encode(ids, ids)
        # A non-empty past in the example, so the exporter cannot fold its length into a constant.
        _, past = model.decode(torch.ones(2, 3, dtype=torch.int64), hidden, ids, model.empty_past(2))
    past_names = [f"past_{kind}_{index}" for index in range(model.layers) for kind in ("key", "value")]
    present_names = [name.replace("past_", "present_") for name in past_names]
    dynamic = {
        "decoder_input_ids": {0: "batch", 1: "new"},
        "encoder_hidden_states": {0: "batch", 1: "source"},
        "encoder_attention_mask": {0: "batch", 1: "source"},
        "logits": {0: "batch", 1: "new"},
    }
    dynamic.update({name: {0: "batch", 2: "past"} for name in past_names})
    dynamic.update({name: {0: "batch", 2: "total"} for name in present_names})
    torch.onnx.export(
        DecoderWithPastExport(model),
        (torch.ones(2, 1, dtype=torch.int64), hidden, ids, *past),
        str(decoder_path),
        input_names=["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask", *past_names],
        output_names=["logits", *present_names],
        dynamic_axes=dynamic,
        opset_version=17,
        dynamo=False,
    )


def _pad(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(sequence) for sequence in sequences)
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return ids, mask


def train_transformer(tokenizer: Tokenizer, pairs: pd.DataFrame) -> None:
    """Teacher forcing with cross-entropy over the [BOS]-shifted target, then export and a greedy check."""
    bos = tokenizer.token_to_id("[BOS]")
    sources = [encoding.ids for encoding in tokenizer.encode_batch(list(pairs.english))]
    targets = [[bos, *encoding.ids] for encoding in tokenizer.encode_batch(list(pairs.fictish))]  # ends in [EOS]
    model = Seq2SeqTransformer(tokenizer.get_vocab_size())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(MODEL_SEED)
    model.train()
    for epoch in range(6):
        total = 0.0
        for indices in torch.randperm(len(pairs), generator=generator).split(64):
            source_ids, source_mask = _pad([sources[i] for i in indices])
            target_ids, target_mask = _pad([targets[i] for i in indices])
            hidden = model.encode(source_ids, source_mask)
            logits, _ = model.decode(target_ids[:, :-1], hidden, source_mask, model.empty_past(len(indices)))
            labels = target_ids[:, 1:].masked_fill(target_mask[:, 1:] == 0, -100)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(indices)
        print(f"transformer epoch {epoch}: loss {total / len(pairs):.4f}")
    model.eval()
    export_transformer(model, MODELS_FOLDER / "fictish_encoder.onnx", MODELS_FOLDER / "fictish_decoder.onnx")
    print(f"wrote {MODELS_FOLDER / 'fictish_encoder.onnx'}, {MODELS_FOLDER / 'fictish_decoder.onnx'}")


# ---------------------------------------------------------------------------------------------- LSTM


def word_index(texts: list[str], *, extra: tuple[str, ...] = ()) -> dict[str, int]:
    """A Keras-style word index: 0 padding, `<OOV>` 1, then `extra`, then words by first appearance."""
    index = {"<OOV>": 1}
    for word in [*extra, *(word for text in texts for word in text.split())]:
        index.setdefault(word, len(index) + 1)
    return index


def train_lstm(pairs: pd.DataFrame) -> None:
    """Keras Embedding + LSTM encoder and decoder (teacher forcing), saved as two inference models (.h5)."""
    import keras

    source_index = word_index(list(pairs.english))
    target_index = word_index(list(pairs.fictish), extra=("<start>", "<end>"))
    for name, index in (("fictish_english_words.json", source_index), ("fictish_words.json", target_index)):
        (MODELS_FOLDER / name).write_text(json.dumps(index, indent=0) + "\n", encoding="utf-8")
    target_length = max(len(text.split()) for text in pairs.fictish) + 1
    sources = np.zeros(
        (len(pairs), KERAS_LENGTH), dtype=np.int32
    )  # padded at the front: the final state reads the words last
    decoder_in = np.zeros((len(pairs), target_length), dtype=np.int32)
    decoder_out = np.zeros((len(pairs), target_length), dtype=np.int32)
    for row, (english, fictish) in enumerate(zip(pairs.english, pairs.fictish)):
        ids = [source_index[word] for word in english.split()][-KERAS_LENGTH:]
        sources[row, KERAS_LENGTH - len(ids) :] = ids
        target = [target_index[word] for word in fictish.split()]
        decoder_in[row, : len(target) + 1] = [target_index["<start>"], *target]
        decoder_out[row, : len(target) + 1] = [*target, target_index["<end>"]]
    weights = (decoder_in > 0).astype(np.float32)

    keras.utils.set_random_seed(MODEL_SEED)
    units = 64
    source_embedding = keras.layers.Embedding(len(source_index) + 1, 32)
    encoder_lstm = keras.layers.LSTM(units, return_state=True)
    target_embedding = keras.layers.Embedding(len(target_index) + 1, 32)
    decoder_lstm = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    projection = keras.layers.Dense(len(target_index) + 1, activation="softmax")

    encoder_input = keras.Input((KERAS_LENGTH,), dtype="int32", name="input_ids")
    _, state_h, state_c = encoder_lstm(source_embedding(encoder_input))
    decoder_input = keras.Input((None,), dtype="int32", name="decoder_input_ids")
    sequence, _, _ = decoder_lstm(target_embedding(decoder_input), initial_state=[state_h, state_c])
    trainer = keras.Model([encoder_input, decoder_input], projection(sequence))
    trainer.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    history = trainer.fit(
        [sources, decoder_in], decoder_out, sample_weight=weights, epochs=12, batch_size=64, verbose=0
    )
    print(f"LSTM train accuracy {history.history['accuracy'][-1]:.3f}")

    encoder = keras.Model(
        encoder_input,
        [keras.layers.Identity(name="state_h")(state_h), keras.layers.Identity(name="state_c")(state_c)],
    )
    past_h = keras.Input((units,), name="past_state_h")
    past_c = keras.Input((units,), name="past_state_c")
    step_input = keras.Input((None,), dtype="int32", name="decoder_input_ids")
    step_sequence, present_h, present_c = decoder_lstm(target_embedding(step_input), initial_state=[past_h, past_c])
    decoder = keras.Model(
        [step_input, past_h, past_c],
        [
            keras.layers.Identity(name="logits")(projection(step_sequence)),
            keras.layers.Identity(name="present_state_h")(present_h),
            keras.layers.Identity(name="present_state_c")(present_c),
        ],
    )
    encoder.save(MODELS_FOLDER / "fictish_lstm_encoder.h5")
    decoder.save(MODELS_FOLDER / "fictish_lstm_decoder.h5")
    print(f"wrote {MODELS_FOLDER / 'fictish_lstm_encoder.h5'}, {MODELS_FOLDER / 'fictish_lstm_decoder.h5'}")


if __name__ == "__main__":
    main()
