"""Generate the example data, tokenizers and models that `configs/text_*.yaml` run on.

Writes, deterministically (fixed seeds, rerunnable; old outputs are replaced):

- `configs/data/reviews/valid.csv`: `id, review, sentiment, rating`: product and restaurant
  reviews of one or two clauses; `sentiment` negative / neutral / positive, `rating` 1..5.
- `configs/data/ner/valid.csv`: `id, sentence, tags`: sentences with people, places and companies,
  words separated by spaces (punctuation too), `tags` one BIO tag per word (PER, LOC, ORG).
- `configs/data/qa/valid.csv`: `id, question, context, answer`: short biographies and a question whose
  answer is a substring of the context; some contexts are longer than one window of the span model.
- `configs/models/text_tokenizer.json`: a WordPiece tokenizer (`tokenizers`) trained on all of the above.
- `configs/models/reviews_word_index.json`: a Keras-style word index (`{"<OOV>": 1, "the": 2, ...}`,
  by frequency, lower-cased, Keras' default filters), the vocabulary of the classifier.
- `configs/models/reviews_sentiment.h5`: Keras Embedding + bidirectional GRU, int32[N, 32] token ids
  (padded at the end with 0) to softmax float32[N, 3] over negative, neutral, positive.
- `configs/models/reviews_rating.onnx`: a tiny transformer encoder in torch, `input_ids` and
  `attention_mask` int64[N, T] to `rating` float32[N, 1].
- `configs/models/ner_tagger.onnx`: the same encoder, `logits` float32[N, T, 7] per sub-word token.
- `configs/models/qa_span.onnx`: the same encoder on question-context pairs, `start_logits` and
  `end_logits` float32[N, T].

The models train on separate, larger sets that live only in memory. Needs the dev install
(TensorFlow and torch). Run from anywhere:

    python scripts/make_text_examples.py
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

# Set before TensorFlow is imported; otherwise its C++ start-up log buries the script's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_FOLDER = REPOSITORY_ROOT / "configs"
MODELS_FOLDER = CONFIGS_FOLDER / "models"
DATA_FOLDER = CONFIGS_FOLDER / "data"
TOKENIZER_PATH = MODELS_FOLDER / "text_tokenizer.json"
WORD_INDEX_PATH = MODELS_FOLDER / "reviews_word_index.json"

# Separate seeds so the committed rows never overlap the in-memory training rows.
TRAIN_SEED = 0
VALID_SEED = 1
MODEL_SEED = 42

VALID_ROWS = {"reviews": 200, "ner": 150, "qa": 150}
TRAIN_ROWS = {"reviews": 3000, "ner": 2000, "qa": 3000}

# Must match configs/text_*.yaml (preprocessing.max_length, doc_stride).
CLASSIFIER_LENGTH = 32
ENCODER_LENGTH = 64  # position embeddings of the torch encoders
QA_MAX_LENGTH = 48  # shorter than the longest contexts, so those are read in windows
QA_DOC_STRIDE = 16
SENTIMENTS = ("negative", "neutral", "positive")  # sorted: output i of the classifier
NER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")  # output order of the tagger

FIRST_NAMES = [
    "Maria", "James", "Aisha", "Chen", "Olga", "Pedro", "Fatima", "Lukas", "Priya", "Tom",
    "Elena", "Kofi", "Hana", "Ivan", "Sofia", "Omar", "Lena", "Raj", "Yuki", "Noah",
]  # fmt: skip
LAST_NAMES = [
    "Lopez", "Smith", "Khan", "Wei", "Petrova", "Silva", "Haddad", "Becker", "Patel", "Brown",
    "Rossi", "Mensah", "Sato", "Novak", "Garcia", "Farouk", "Weber", "Kumar", "Tanaka", "Miller",
]  # fmt: skip
CITIES = [
    "Lisbon", "Berlin", "Nairobi", "Osaka", "Toronto", "Lima", "Cairo", "Oslo", "Madrid", "Seoul",
    "Dublin", "Quito", "Hanoi", "Prague", "Denver",
] + [
    "New York",
    "Buenos Aires",
    "Cape Town",
    "San Diego",
    "Hong Kong",
]  # fmt: skip
COMPANIES = [
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Industries",
    "Wayne Foods",
    "Hooli",
    "Vandelay Imports",
    "Soylent Labs",
    "Cyberdyne Systems",
    "Northwind Traders",
    "Blue Harbor Bank",
]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "silver", "teal"]

NER_TEMPLATES = [
    "{PER} moved to {LOC} in {YEAR} to join {ORG} .",
    "{PER} and {PER} met at the {ORG} office in {LOC} .",
    "Yesterday {ORG} announced that {PER} will lead its team in {LOC} .",
    "The flight from {LOC} to {LOC} was delayed , said {PER} .",
    "{PER} works for {ORG} .",
    "According to {PER} , {ORG} plans to open a store in {LOC} next year .",
    "We visited {LOC} with {PER} last summer .",
    "{ORG} hired {PER} as chief engineer .",
    "Nobody expected the storm to hit {LOC} so early .",
    "Shares of {ORG} rose after the meeting in {LOC} .",
    "I think {PER} still lives near the old harbour .",
    "The committee thanked everyone for coming .",
]

REVIEW_SUBJECTS = [
    "the pasta",
    "our waiter",
    "the hotel room",
    "the delivery",
    "this phone",
    "the battery",
    "the movie",
    "the soundtrack",
    "customer service",
    "the checkout process",
    "the coffee",
    "the hiking boots",
    "this laptop",
    "the concert",
    "the museum tour",
    "the pizza",
    "the receptionist",
    "the app",
]
REVIEW_PHRASES = {
    "positive": [
        "was excellent",
        "was absolutely wonderful",
        "exceeded my expectations",
        "was friendly and fast",
        "works perfectly",
        "was a delight",
        "felt like great value for money",
        "is the best I have tried",
        "made my day",
        "was fresh and delicious",
    ],
    "negative": [
        "was terrible",
        "was cold and bland",
        "broke after two days",
        "was rude and slow",
        "was a complete waste of money",
        "stopped working",
        "was really disappointing",
        "made me angry",
        "was dirty and noisy",
        "never arrived",
    ],
    "neutral": [
        "was okay",
        "was average",
        "arrived on time",
        "was fine I guess",
        "did what it said",
        "was neither good nor bad",
        "was about what I expected",
    ],
}
CLAUSE_SCORE = {"positive": 4.6, "neutral": 3.0, "negative": 1.4}

QA_FILLERS = [
    "The weather was mild that week.",
    "Nobody in the family remembers exactly why.",
    "It was a busy season for everyone.",
    "Friends describe them as calm and patient.",
    "The local newspaper once wrote a short story about it.",
    "Most weekends are spent walking by the river.",
]


def main() -> None:
    """Write every data file, the tokenizers and the four models, then print their scores."""
    MODELS_FOLDER.mkdir(parents=True, exist_ok=True)
    train, valid = {}, {}
    for name, make in (("reviews", make_reviews), ("ner", make_ner), ("qa", make_qa)):
        train[name] = make(random.Random(TRAIN_SEED), TRAIN_ROWS[name])
        valid[name] = make(random.Random(VALID_SEED), VALID_ROWS[name])
        folder = DATA_FOLDER / name
        folder.mkdir(parents=True, exist_ok=True)
        valid[name].to_csv(folder / "valid.csv", index=False)
        print(f"wrote {folder / 'valid.csv'} ({len(valid[name])} rows)")

    tokenizer = train_tokenizer(
        [*train["reviews"].review, *train["ner"].sentence, *train["qa"].question, *train["qa"].context]
    )
    tokenizer.save(str(TOKENIZER_PATH))
    print(f"wrote {TOKENIZER_PATH} ({tokenizer.get_vocab_size()} tokens)")

    train_sentiment_classifier(train["reviews"])
    torch.manual_seed(MODEL_SEED)
    train_rating_regressor(tokenizer, train["reviews"])
    torch.manual_seed(MODEL_SEED)
    train_ner_tagger(tokenizer, train["ner"])
    torch.manual_seed(MODEL_SEED)
    train_span_model(tokenizer, train["qa"])


# ---------------------------------------------------------------------------------------------- data


def make_reviews(rng: random.Random, rows: int) -> pd.DataFrame:
    """One or two review clauses; sentiment and rating follow the clauses' polarity."""
    records = []
    for index in range(rows):
        clauses, scores = [], []
        for _ in range(rng.choice((1, 1, 2))):
            polarity = rng.choice(SENTIMENTS)
            clauses.append(f"{rng.choice(REVIEW_SUBJECTS)} {rng.choice(REVIEW_PHRASES[polarity])}")
            scores.append(CLAUSE_SCORE[polarity])
        text = f" {rng.choice(('and', 'but'))} ".join(clauses)
        text = text[0].upper() + text[1:] + rng.choice((".", "!", ".", "..."))
        score = float(np.mean(scores))
        sentiment = "positive" if score > 3.5 else "negative" if score < 2.5 else "neutral"
        rating = round(min(5.0, max(1.0, score + rng.uniform(-0.3, 0.3))), 1)
        records.append({"id": f"r{index:04d}", "review": text, "sentiment": sentiment, "rating": rating})
    return pd.DataFrame(records)


def _person(rng: random.Random) -> list[str]:
    return [rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)]


def make_ner(rng: random.Random, rows: int) -> pd.DataFrame:
    """Template sentences with BIO tags per whitespace word."""
    records = []
    for index in range(rows):
        words, tags = [], []
        for piece in rng.choice(NER_TEMPLATES).split():
            if piece in ("{PER}", "{LOC}", "{ORG}"):
                kind = piece[1:4]
                name = {
                    "PER": lambda: _person(rng),
                    "LOC": lambda: rng.choice(CITIES).split(),
                    "ORG": lambda: rng.choice(COMPANIES).split(),
                }[kind]()
                words.extend(name)
                tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1))
            elif piece == "{YEAR}":
                words.append(str(rng.randint(1990, 2024)))
                tags.append("O")
            else:
                words.append(piece)
                tags.append("O")
        records.append({"id": f"s{index:04d}", "sentence": " ".join(words), "tags": " ".join(tags)})
    return pd.DataFrame(records)


def make_qa(rng: random.Random, rows: int) -> pd.DataFrame:
    """A few facts about one person among filler sentences, and a question on one fact."""
    records = []
    for index in range(rows):
        person = " ".join(_person(rng))
        facts = {
            "city": (rng.choice(CITIES), f"{person} lives in {{}}.", f"Where does {person} live?"),
            "company": (rng.choice(COMPANIES), "They work at {}.", f"Which company does {person} work for?"),
            "year": (str(rng.randint(1950, 2005)), "They were born in {}.", f"In which year was {person} born?"),
            "colour": (
                rng.choice(COLOURS),
                "Their favourite colour is {}.",
                f"What is the favourite colour of {person}?",
            ),
        }
        sentences = [template.format(value) for value, template, _ in facts.values()]
        first, rest = sentences[0], sentences[1:]
        rng.shuffle(rest)
        fillers = rng.sample(QA_FILLERS, rng.randint(0, 4))
        body = rest + fillers
        rng.shuffle(body)
        context = " ".join([first, *body])
        answer, _, question = facts[rng.choice(list(facts))]
        records.append({"id": f"q{index:04d}", "question": question, "context": context, "answer": answer})
    return pd.DataFrame(records)


# ---------------------------------------------------------------------------------------- tokenizers


def train_tokenizer(texts: list[str]) -> Tokenizer:
    """A lower-casing WordPiece tokenizer with BERT's [CLS] A [SEP] (B [SEP]) template."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


_KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


def keras_words(text: str) -> list[str]:
    """Keras `Tokenizer`'s `text_to_word_sequence`: lower-case, filters become spaces, split on spaces."""
    return [
        word
        for word in text.lower().translate(str.maketrans(_KERAS_FILTERS, " " * len(_KERAS_FILTERS))).split(" ")
        if word
    ]


def keras_word_index(texts: list[str]) -> dict[str, int]:
    """As Keras `Tokenizer(oov_token="<OOV>").fit_on_texts(texts).word_index`: OOV 1, then by frequency."""
    counts = Counter(word for text in texts for word in keras_words(text))
    ordered = sorted(counts, key=lambda word: -counts[word])  # stable: ties keep first-seen order, as Keras
    return {"<OOV>": 1, **{word: index + 2 for index, word in enumerate(ordered)}}


# ---------------------------------------------------------------------------------------------- models


def train_sentiment_classifier(reviews: pd.DataFrame) -> None:
    """Keras Embedding + bidirectional GRU on the word index; saved as .h5."""
    import keras

    word_index = keras_word_index(list(reviews.review))
    WORD_INDEX_PATH.write_text(json.dumps(word_index, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {WORD_INDEX_PATH} ({len(word_index)} words)")
    ids = np.zeros((len(reviews), CLASSIFIER_LENGTH), dtype=np.int32)  # padded and truncated at the end
    for row, text in enumerate(reviews.review):
        sequence = [word_index.get(word, 1) for word in keras_words(text)][:CLASSIFIER_LENGTH]
        ids[row, : len(sequence)] = sequence
    labels = np.asarray([SENTIMENTS.index(value) for value in reviews.sentiment])

    keras.utils.set_random_seed(MODEL_SEED)
    inputs = keras.Input((CLASSIFIER_LENGTH,), dtype="int32", name="token_ids")
    hidden = keras.layers.Embedding(len(word_index) + 1, 16)(inputs)
    hidden = keras.layers.Bidirectional(keras.layers.GRU(16))(hidden)
    outputs = keras.layers.Dense(len(SENTIMENTS), activation="softmax", name="sentiment")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ids, labels, epochs=6, batch_size=64, verbose=0)
    path = MODELS_FOLDER / "reviews_sentiment.h5"
    model.save(path)
    print(f"wrote {path} (train accuracy {history.history['accuracy'][-1]:.3f})")


class TinyEncoder(torch.nn.Module):
    """Token + position embeddings and pre-norm self-attention blocks, written out so ONNX export is plain."""

    def __init__(self, vocab_size: int, *, dim: int = 32, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.tokens = torch.nn.Embedding(vocab_size, dim)
        self.positions = torch.nn.Embedding(ENCODER_LENGTH, dim)
        self.segments = torch.nn.Embedding(2, dim)
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {
                    "norm1": torch.nn.LayerNorm(dim),
                    "qkv": torch.nn.Linear(dim, 3 * dim),
                    "out": torch.nn.Linear(dim, dim),
                    "norm2": torch.nn.LayerNorm(dim),
                    "ff": torch.nn.Sequential(
                        torch.nn.Linear(dim, 2 * dim), torch.nn.GELU(), torch.nn.Linear(2 * dim, dim)
                    ),
                }
            )
            for _ in range(layers)
        )
        self.norm = torch.nn.LayerNorm(dim)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, segments: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, length = input_ids.shape
        positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
        hidden = self.tokens(input_ids) + self.positions(positions)
        if segments is not None:
            hidden = hidden + self.segments(segments)
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e4
        dim = hidden.shape[-1]
        head_dim = dim // self.heads
        for block in self.blocks:
            q, k, v = block["qkv"](block["norm1"](hidden)).split(dim, dim=-1)
            q, k, v = (t.reshape(batch, length, self.heads, head_dim).transpose(1, 2) for t in (q, k, v))
            weights = torch.softmax(q @ k.transpose(-1, -2) / head_dim**0.5 + bias, dim=-1)
            attended = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
            hidden = hidden + block["out"](attended)
            hidden = hidden + block["ff"](block["norm2"](hidden))
        return self.norm(hidden)


class RatingRegressor(torch.nn.Module):
    """Mean-pooled encoder states to one rating."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.encoder = TinyEncoder(vocab_size, dim=24, layers=1)
        self.head = torch.nn.Linear(24, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled) + 3.0  # centred on the middle of the 1..5 scale


class Tagger(torch.nn.Module):
    """One logit per tag per token."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.encoder = TinyEncoder(vocab_size)
        self.head = torch.nn.Linear(32, len(NER_TAGS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask))


class SpanModel(torch.nn.Module):
    """Start and end logits per token of a question-context pair."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.encoder = TinyEncoder(vocab_size)
        self.head = torch.nn.Linear(32, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
        logits = self.head(self.encoder(input_ids, attention_mask, token_type_ids))
        return logits[..., 0], logits[..., 1]


def _pad(sequences: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(sequences), width, dtype=torch.long)  # [PAD] is id 0
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return ids, mask


def _fit(
    model: torch.nn.Module, tensors: list[torch.Tensor], loss_of, *, epochs: int, batch_size: int = 32, lr: float = 3e-3
) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rows = len(tensors[0])
    generator = torch.Generator().manual_seed(MODEL_SEED)
    model.train()
    for _ in range(epochs):
        total = 0.0
        for indices in torch.randperm(rows, generator=generator).split(batch_size):
            loss = loss_of(*(tensor[indices] for tensor in tensors))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(indices)
    model.eval()
    return total / rows


def _export(model: torch.nn.Module, example: tuple, path: Path, *, inputs: list[str], outputs: list[str]) -> None:
    dynamic = {name: {0: "batch", 1: "sequence"} for name in inputs}
    dynamic.update({name: {0: "batch"} if name == "rating" else {0: "batch", 1: "sequence"} for name in outputs})
    torch.onnx.export(
        model,
        example,
        str(path),
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=dynamic,
        opset_version=17,
        dynamo=False,
    )
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def train_rating_regressor(tokenizer: Tokenizer, reviews: pd.DataFrame) -> None:
    """The review's rating from the tokenizer.json ids."""
    tokenizer.enable_truncation(ENCODER_LENGTH)
    ids, mask = _pad([encoding.ids for encoding in tokenizer.encode_batch(list(reviews.review))], ENCODER_LENGTH)
    target = torch.tensor(reviews.rating.to_numpy(), dtype=torch.float32).unsqueeze(1)
    model = RatingRegressor(tokenizer.get_vocab_size())
    loss = _fit(model, [ids, mask, target], lambda i, m, t: torch.nn.functional.mse_loss(model(i, m), t), epochs=8)
    print(f"rating regressor: train MSE {loss:.3f}")
    _export(
        model,
        (ids[:2], mask[:2]),
        MODELS_FOLDER / "reviews_rating.onnx",
        inputs=["input_ids", "attention_mask"],
        outputs=["rating"],
    )


def train_ner_tagger(tokenizer: Tokenizer, sentences: pd.DataFrame) -> None:
    """Tags on the first sub-token of each word; other tokens are ignored by the loss (-100)."""
    tokenizer.enable_truncation(ENCODER_LENGTH)
    words = [sentence.split() for sentence in sentences.sentence]
    encodings = tokenizer.encode_batch(words, is_pretokenized=True)
    ids, mask = _pad([encoding.ids for encoding in encodings], ENCODER_LENGTH)
    targets = torch.full(ids.shape, -100, dtype=torch.long)
    for row, (encoding, tags) in enumerate(zip(encodings, sentences.tags)):
        tags = tags.split()
        previous = None
        for position, word in enumerate(encoding.word_ids):
            if word is not None and word != previous:
                targets[row, position] = NER_TAGS.index(tags[word])
            previous = word
    model = Tagger(tokenizer.get_vocab_size())
    loss = _fit(
        model,
        [ids, mask, targets],
        lambda i, m, t: torch.nn.functional.cross_entropy(model(i, m).flatten(0, 1), t.flatten(), ignore_index=-100),
        epochs=6,
    )
    print(f"ner tagger: train loss {loss:.3f}")
    _export(
        model,
        (ids[:2], mask[:2]),
        MODELS_FOLDER / "ner_tagger.onnx",
        inputs=["input_ids", "attention_mask"],
        outputs=["logits"],
    )


def train_span_model(tokenizer: Tokenizer, qa: pd.DataFrame) -> None:
    """Windows as at prediction time (max_length 48, doc_stride 16); a window without the answer points at [CLS]."""
    tokenizer.enable_truncation(QA_MAX_LENGTH, stride=QA_DOC_STRIDE, strategy="only_second")
    sequences, segments, starts, ends = [], [], [], []
    for question, context, answer in zip(qa.question, qa.context, qa.answer):
        char_start = context.index(answer)
        char_end = char_start + len(answer)
        first = tokenizer.encode(question, context)
        for window in (first, *first.overflowing):
            start = end = 0
            for position, (sequence, (token_start, token_end)) in enumerate(zip(window.sequence_ids, window.offsets)):
                if sequence != 1:
                    continue
                if token_start <= char_start < token_end:
                    start = position
                if token_start < char_end <= token_end:
                    end = position
            if not (start and end):
                start = end = 0
            sequences.append(window.ids)
            segments.append(window.type_ids)
            starts.append(start)
            ends.append(end)
    ids, mask = _pad(sequences, QA_MAX_LENGTH)
    types, _ = _pad(segments, QA_MAX_LENGTH)
    start_target, end_target = torch.tensor(starts), torch.tensor(ends)
    model = SpanModel(tokenizer.get_vocab_size())

    def loss_of(i, m, s, start, end):
        start_logits, end_logits = model(i, m, s)
        start_logits = start_logits.masked_fill(m == 0, -1e4)
        end_logits = end_logits.masked_fill(m == 0, -1e4)
        return (
            torch.nn.functional.cross_entropy(start_logits, start) + torch.nn.functional.cross_entropy(end_logits, end)
        ) / 2

    loss = _fit(model, [ids, mask, types, start_target, end_target], loss_of, epochs=10)
    print(f"span model: {len(sequences)} windows, train loss {loss:.3f}")
    _export(
        model,
        (ids[:2], mask[:2], types[:2]),
        MODELS_FOLDER / "qa_span.onnx",
        inputs=["input_ids", "attention_mask", "token_type_ids"],
        outputs=["start_logits", "end_logits"],
    )


if __name__ == "__main__":
    main()
