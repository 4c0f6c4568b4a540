"""Generate the example data, tokenizer and model that `configs/text_metric_learning.yaml` runs on.

Writes, deterministically (fixed seeds; rerunnable, old outputs replaced):

- `configs/data/topics/valid.csv` (`id, text, topic`): 150 generated sentences, 30 on each of five
  topics (`cooking, sports, technology, travel, weather`). Each sentence is a subject, a verb phrase
  of its topic and an optional detail, wrapped in openers and tails shared by every topic; about a
  third of subjects and details are drawn from any topic ("The chef was delayed at the gate" is
  travel), so the topic lives in a few words of the sentence and some rows sit between two topics.
- `configs/models/topics_tokenizer.json`: a lower-casing WordPiece tokenizer (`tokenizers`,
  `[CLS] text [SEP]`) whose vocabulary is the training sentences' words plus single characters. The reviews tokenizer
  (`text_tokenizer.json`, 400 tokens) splits most of these topic words into single letters.
- `configs/models/topics_embedder.onnx`: a one-block transformer encoder (`TinyEncoder` of
  scripts/make_text_examples.py) with masked mean pooling and a linear projection to a 16-d
  embedding: `input_ids`, `attention_mask` int64[N, T] (T dynamic, at most 64) to `embedding`
  float32[N, 16]. Trained as a cosine classifier (softmax over scaled cosine similarities to one
  learned vector per topic), so same-topic sentences are each other's nearest neighbours.

The model trains on 3,000 sentences drawn with another seed that live only in memory. Needs torch
and tokenizers (the dev install). Run from anywhere:

    python scripts/make_text_metric_example.py
"""

from __future__ import annotations

import random
import string
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT / "scripts"))

from make_text_examples import ENCODER_LENGTH, TinyEncoder  # noqa: E402  (the reviews encoders' block)

CONFIGS_FOLDER = REPOSITORY_ROOT / "configs"
DATA_FOLDER = CONFIGS_FOLDER / "data" / "topics"
TOKENIZER_PATH = CONFIGS_FOLDER / "models" / "topics_tokenizer.json"
MODEL_PATH = CONFIGS_FOLDER / "models" / "topics_embedder.onnx"

SEED_TRAIN, SEED_VALID, SEED_MODEL = 0, 1, 42
TRAIN_ROWS = 3000
VALID_PER_TOPIC = 30
EMBEDDING_SIZE = 16
SUBJECT_MIX = 0.35  # share of sentences whose subject is drawn from any topic
DETAIL_MIX = 0.35  # likewise for the detail phrase
MAX_LENGTH = ENCODER_LENGTH  # must match preprocessing.max_length of configs/text_metric_learning.yaml

TOPICS = {
    "cooking": {
        "subjects": [
            "the soup",
            "my grandmother",
            "the chef",
            "the bread",
            "this recipe",
            "the sauce",
            "our dinner",
            "the oven",
        ],
        "verbs": [
            "needs more salt",
            "simmered for an hour",
            "was baked until golden",
            "calls for fresh basil",
            "burned on the bottom",
            "was seasoned with garlic",
            "tastes better with butter",
            "was served with rice",
        ],
        "details": [
            "in a heavy pan",
            "with chopped onions",
            "before the guests arrived",
            "with a pinch of pepper",
            "after the dough had risen",
            "with lemon and olive oil",
        ],
    },
    "sports": {
        "subjects": [
            "the striker",
            "our goalkeeper",
            "the home team",
            "the coach",
            "the referee",
            "the captain",
            "the runner",
            "the visitors",
        ],
        "verbs": [
            "scored a late goal",
            "won the final match",
            "missed a penalty",
            "trained on the pitch",
            "broke the league record",
            "lost in extra time",
            "signed a new contract",
            "was sent off",
        ],
        "details": [
            "in front of a full stadium",
            "during the second half",
            "after a long season",
            "before the championship",
            "with the fans singing",
            "at the end of the tournament",
        ],
    },
    "technology": {
        "subjects": [
            "the new laptop",
            "my phone",
            "the software update",
            "the server",
            "this app",
            "the processor",
            "the router",
            "the database",
        ],
        "verbs": [
            "crashed after the update",
            "needs more memory",
            "runs the code faster",
            "lost the network connection",
            "installed a security patch",
            "was rebooted twice",
            "stores the files in the cloud",
            "drains the battery",
        ],
        "details": [
            "on every device",
            "with the latest drivers",
            "after the firmware upgrade",
            "when the screen locks",
            "over the wireless network",
            "while the backup was running",
        ],
    },
    "travel": {
        "subjects": [
            "our flight",
            "the hotel",
            "the train to the coast",
            "my passport",
            "the tour guide",
            "the ferry",
            "the airport",
            "our luggage",
        ],
        "verbs": [
            "was delayed at the gate",
            "booked a room with a view",
            "crossed the border at night",
            "visited the old castle",
            "arrived at the harbour",
            "missed the connection",
            "checked in early",
            "showed us the ancient temple",
        ],
        "details": [
            "on the way to the island",
            "during our holiday abroad",
            "with a map of the city",
            "before the boarding call",
            "near the mountain village",
            "after a long journey",
        ],
    },
    "weather": {
        "subjects": [
            "the storm",
            "heavy rain",
            "the forecast",
            "a cold front",
            "the wind",
            "the snow",
            "the fog",
            "the heat wave",
        ],
        "verbs": [
            "flooded the valley",
            "brought thunder and lightning",
            "predicts clear skies",
            "froze the lake",
            "knocked down power lines",
            "melted by noon",
            "lowered the temperature",
            "covered the hills",
        ],
        "details": [
            "across the northern region",
            "with gusts from the west",
            "as the clouds rolled in",
            "under a grey sky",
            "for the rest of the week",
            "with sunshine expected later",
        ],
    },
}
OPENERS = ["", "", "Yesterday", "This morning", "I heard that", "Honestly ,", "Last week", "Apparently"]
TAILS = ["", "", "", "and everyone talked about it", "so we stayed home", "as usual", "which surprised nobody", "again"]


def make_sentences(rng: random.Random, topics: list[str]) -> pd.DataFrame:
    """One sentence per entry of `topics`, in that order."""
    records = []
    for index, topic in enumerate(topics):
        words = TOPICS[topic]
        # The verb phrase always carries the topic; a third of subjects and details come from another
        # topic, so some rows are close to a second topic and the ranking is not trivial.
        subjects = TOPICS[rng.choice(list(TOPICS))]["subjects"] if rng.random() < SUBJECT_MIX else words["subjects"]
        parts = [rng.choice(OPENERS), rng.choice(subjects), rng.choice(words["verbs"])]
        if rng.random() < 0.6:
            details = TOPICS[rng.choice(list(TOPICS))]["details"] if rng.random() < DETAIL_MIX else words["details"]
            parts.append(rng.choice(details))
        parts.append(rng.choice(TAILS))
        text = " ".join(part for part in parts if part).replace(" ,", ",")
        text = text[0].upper() + text[1:] + rng.choice((".", ".", "!"))
        records.append({"id": f"t{index:03d}", "text": text, "topic": topic})
    return pd.DataFrame(records)


def build_tokenizer(texts: list[str]) -> Tokenizer:
    """A lower-casing WordPiece tokenizer with BERT's [CLS] A [SEP] template, [PAD] = 0.

    The vocabulary is every training word plus single characters (so an unseen word is spelled out
    instead of becoming [UNK]), listed in a fixed order: `WordPieceTrainer` breaks ties between
    equally frequent merges differently from run to run, and the example must be reproducible.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    characters = sorted(
        {character for word in counts for character in word} | set(string.ascii_lowercase + string.digits)
    )
    words = sorted((word for word in counts if len(word) > 1), key=lambda word: (-counts[word], word))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *characters, *(f"##{character}" for character in characters), *words]
    tokenizer = Tokenizer(models.WordPiece({token: index for index, token in enumerate(tokens)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))]
    )
    return tokenizer


class TextEmbedder(torch.nn.Module):
    """Encoder states, mean-pooled over the real tokens, projected to the embedding."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.encoder = TinyEncoder(vocab_size, dim=32, layers=1)
        self.projection = torch.nn.Linear(32, EMBEDDING_SIZE)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.projection(pooled)


def pad(tokenizer: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """int64[N, longest] ids padded with [PAD] = 0 at the end, and the matching attention mask."""
    tokenizer.enable_truncation(MAX_LENGTH)
    sequences = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    width = max(len(sequence) for sequence in sequences)
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return ids, mask


def train_embedder(tokenizer: Tokenizer, train: pd.DataFrame) -> TextEmbedder:
    """Cosine-classifier training (NormFace): the loss ranks by the very cosine the head ranks by."""
    torch.manual_seed(SEED_MODEL)
    names = sorted(TOPICS)
    ids, mask = pad(tokenizer, list(train.text))
    classes = torch.tensor([names.index(topic) for topic in train.topic])
    model = TextEmbedder(tokenizer.get_vocab_size())
    prototypes = torch.nn.Parameter(torch.randn(len(names), EMBEDDING_SIZE))
    optimizer = torch.optim.AdamW([*model.parameters(), prototypes], lr=3e-3)
    generator = torch.Generator().manual_seed(SEED_MODEL)
    model.train()
    for epoch in range(4):
        total = 0.0
        for rows in torch.randperm(len(ids), generator=generator).split(32):
            embedding = torch.nn.functional.normalize(model(ids[rows], mask[rows]), dim=1)
            logits = 16.0 * embedding @ torch.nn.functional.normalize(prototypes, dim=1).T
            loss = torch.nn.functional.cross_entropy(logits, classes[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        print(f"epoch {epoch + 1}: train loss {total / len(ids):.3f}")
    return model.eval()


def export(model: TextEmbedder, tokenizer: Tokenizer, texts: list[str]) -> None:
    ids, mask = pad(tokenizer, texts[:2])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            model,
            (ids, mask),
            str(MODEL_PATH),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )


def verify(valid: pd.DataFrame) -> None:
    """Embed the committed rows with onnxruntime and print the share whose nearest other row shares its topic."""
    import onnxruntime

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    session = onnxruntime.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    ids, mask = pad(tokenizer, list(valid.text))
    (embeddings,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarities = embeddings @ embeddings.T
    np.fill_diagonal(similarities, -np.inf)
    topics = valid.topic.to_numpy()
    print(
        f"nearest neighbour shares the topic for {np.mean(topics[similarities.argmax(1)] == topics):.3f} "
        f"of {len(valid)} rows"
    )


def main() -> None:
    started = time.perf_counter()
    names = sorted(TOPICS)
    train = make_sentences(random.Random(SEED_TRAIN), [names[index % len(names)] for index in range(TRAIN_ROWS)])
    valid_rng = random.Random(SEED_VALID)
    valid_topics = [name for name in names for _ in range(VALID_PER_TOPIC)]
    valid_rng.shuffle(valid_topics)
    valid = make_sentences(valid_rng, valid_topics)
    DATA_FOLDER.mkdir(parents=True, exist_ok=True)
    valid.to_csv(DATA_FOLDER / "valid.csv", index=False)

    tokenizer = build_tokenizer(list(train.text))
    tokenizer.save(str(TOKENIZER_PATH))
    model = train_embedder(tokenizer, train)
    export(model, tokenizer, list(valid.text))
    verify(valid)
    for path in (DATA_FOLDER / "valid.csv", TOKENIZER_PATH, MODEL_PATH):
        print(f"  {path.relative_to(REPOSITORY_ROOT)}: {path.stat().st_size / 1024:.1f} KiB")
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
