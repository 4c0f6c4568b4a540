"""Tokenizers read from local files: tokenizer.json (tokenizers), Keras word indexes, TextVectorization vocabularies."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from predict.data.tokenizer import HuggingFaceTokenizer, WordIndexTokenizer, load_tokenizer
from predict.errors import ConfigError

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Maria Lopez moved to Lisbon in 2019 to join Acme Corp.",
    "Where does the dog sleep? The dog sleeps in the garden, near the old oak tree.",
    "Customer service was friendly and fast, and the coffee was excellent!",
] * 20


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
    """A WordPiece tokenizer trained on the fly, saved as tokenizer.json."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        SENTENCES, trainers.WordPieceTrainer(vocab_size=150, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_tokenizer_json_truncates_inside_max_length_and_keeps_specials(tokenizer_json):
    tokenizer = load_tokenizer(tokenizer_json)
    assert isinstance(tokenizer, HuggingFaceTokenizer) and tokenizer.pad_id == 0
    short, long = tokenizer.encode(["", SENTENCES[2]], max_length=8)
    assert short.ids.tolist() == [2, 3]  # empty text: [CLS] [SEP]
    assert len(long) == 8 and long.ids[0] == 2 and long.ids[-1] == 3
    assert long.word_ids[0] == -1 and long.word_ids[1] == 0


def test_tokenizer_json_words_map_sub_tokens_to_whitespace_words(tokenizer_json):
    tokenizer = load_tokenizer(tokenizer_json)
    words = ["Lisbon,", "Acme-Corp", "zzqx"]
    (encoding,) = tokenizer.encode_words([words], max_length=32)
    assert set(encoding.word_ids[encoding.word_ids >= 0]) == {0, 1, 2}
    assert np.all(np.diff(encoding.word_ids[1:-1]) >= 0)  # words in order


def test_windows_share_doc_stride_tokens_and_offsets_point_into_the_context(tokenizer_json):
    tokenizer = load_tokenizer(tokenizer_json)
    question, context = "Where does the dog sleep?", SENTENCES[2] + " " + SENTENCES[0]
    windows = tokenizer.encode_windows(question, context, max_length=20, stride=4)
    assert len(windows) > 1 and all(len(window) <= 20 for window in windows)
    context_tokens = [window.offsets[window.sequence_ids == 1] for window in windows]
    for before, after in pairwise(context_tokens):
        assert before[-4:].tolist() == after[:4].tolist()
    for first, last in np.concatenate(context_tokens):
        assert context[first:last].lower() in context.lower()
    with pytest.raises(ValueError, match="cannot fit the question and a window of context in max_length 6"):
        tokenizer.encode_windows(question, context, max_length=6, stride=4)


def test_keras_word_index_splits_on_filters_and_maps_unknown_words_to_oov(tmp_path):
    path = tmp_path / "word_index.json"
    path.write_text(json.dumps({"<OOV>": 1, "the": 2, "dog": 3, "sleeps": 4}))
    tokenizer = load_tokenizer(path)
    assert isinstance(tokenizer, WordIndexTokenizer)
    (encoding,) = tokenizer.encode(["The dog,sleeps;  under THE tree!"], max_length=10)
    assert encoding.ids.tolist() == [2, 3, 4, 1, 2, 1]
    assert encoding.offsets[2].tolist() == [8, 14]
    (cut,) = tokenizer.encode(["the dog the dog"], max_length=3)
    assert cut.ids.tolist() == [2, 3, 2]


def test_keras_tokenizer_json_uses_its_own_lower_filters_oov_and_num_words(tmp_path):
    # The layout of keras' Tokenizer.to_json(): word_index is a JSON string inside the JSON.
    config = {
        "num_words": 4,
        "filters": "!,",
        "lower": False,
        "split": " ",
        "char_level": False,
        "oov_token": "<unk>",
        "document_count": 1,
        "word_index": json.dumps({"<unk>": 1, "Dog": 2, "cat": 3, "bird": 4}),
    }
    path = tmp_path / "keras_tokenizer.json"
    path.write_text(json.dumps({"class_name": "Tokenizer", "config": config}))
    (encoding,) = load_tokenizer(path).encode(["Dog,dog cat bird!"], max_length=10)
    assert encoding.ids.tolist() == [2, 1, 3, 1]  # "dog" is not lower-cased to "Dog"; bird >= num_words


def test_text_vectorization_vocabulary_strips_punctuation(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_text("\n".join(["", "[UNK]", "the", "dont", "dog"]) + "\n")
    (encoding,) = load_tokenizer(path).encode(["The dog -- don't, Cat"], max_length=10)
    assert encoding.ids.tolist() == [2, 4, 3, 1]
    (words,) = load_tokenizer(path).encode_words([["--", "dog"]], max_length=10)
    assert words.ids.tolist() == [1, 4]  # one slot per word, even punctuation


def test_tokenizer_errors(tmp_path, tokenizer_json):
    with pytest.raises(
        ConfigError, match=r"preprocessing.lowercase is for word-index vocabularies; tokenizer.json is a tokenizer.json"
    ):
        load_tokenizer(tokenizer_json, lowercase=False)
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("\n[UNK]\nthe\n")
    with pytest.raises(
        ConfigError, match=r"preprocessing.oov_token '<OOV>' is not in the vocabulary of vocabulary.txt"
    ):
        load_tokenizer(vocabulary, oov_token="<OOV>")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(ConfigError, match=r"odd.json: unknown JSON layout"):
        load_tokenizer(odd)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken.json: not valid JSON"):
        load_tokenizer(broken)
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps({"model": {"type": "Nonsense"}, "added_tokens": []}))
    with pytest.raises(ConfigError, match=r"fake.json: not a valid tokenizer.json"):
        load_tokenizer(fake)
    keras = tmp_path / "chars.json"
    keras.write_text(json.dumps({"class_name": "Tokenizer", "config": {"char_level": True, "word_index": "{}"}}))
    with pytest.raises(ConfigError, match="a character-level Keras Tokenizer is not supported"):
        load_tokenizer(keras)


# Keras-era text: fitted on reviews, scored on others with unseen words, capitals, line breaks and
# characters Keras does not treat as separators (\r, a no-break space, a dotted capital I that
# lower-cases to two characters).
KERAS_FIT_TEXTS = [
    "I loved this film. The acting was superb, and the story kept me guessing until the very end!",
    "Terrible movie; the plot made no sense and the dialogue was painfully slow.",
    "A decent sequel: not as good as the original, but the soundtrack is wonderful.",
    "The food was cold, the service was slow, and the waiter forgot our drinks twice.",
    "Great value for money -- the room was clean, quiet and close to the station.",
    "I would not recommend this phone: the battery dies before lunch and the screen cracks easily.",
    "Istanbul in spring is beautiful; we walked along the Bosphorus every evening.",
    "Customer support answered within minutes and solved my problem. Five stars!",
]
KERAS_TEXTS = [
    "The story was wonderful, but the acting was slow.",
    "",
    "I LOVED the soundtrack!!! The waiter, however, was terrible.\r\nWould not recommend.",
    "İstanbul's station\u00a0was quiet\tand clean -- great value",
    "the battery dies, the screen cracks, the phone dies: no stars from me, not one, not even half a star, never again",
    "Five stars for customer support|the room|the food",
]


def keras_tokenizer_file(tmp_path, **options):
    """Fit a real `tf_keras.preprocessing.text.Tokenizer` and save its `to_json()`."""
    text = pytest.importorskip("tf_keras.preprocessing.text")
    keras_tokenizer = text.Tokenizer(**options)
    keras_tokenizer.fit_on_texts(KERAS_FIT_TEXTS)
    path = tmp_path / "keras_tokenizer.json"
    path.write_text(keras_tokenizer.to_json())
    return path, keras_tokenizer


KERAS_OPTIONS = {
    "defaults": {},
    "oov-num-words": {"num_words": 25, "oov_token": "<OOV>"},
    "cased-few-filters": {"lower": False, "filters": "!,.:;\n", "oov_token": "[UNK]"},
    "num-words-no-oov": {"num_words": 12},
    "pipe-split": {"split": "|", "filters": " ,.!'\t\n", "oov_token": "<OOV>"},
    "two-character-split": {"split": "--", "filters": " ,.!", "oov_token": "<OOV>"},
}


@pytest.mark.parametrize("options", KERAS_OPTIONS.values(), ids=KERAS_OPTIONS.keys())
@pytest.mark.parametrize(("padding", "truncating"), [("pre", "pre"), ("post", "post"), ("pre", "post")])
def test_keras_tokenizer_json_equals_texts_to_sequences_and_pad_sequences(tmp_path, options, padding, truncating):
    from predict.config import PaddingSide, TruncationSide
    from predict.data.text import TextBatches, TextInputs, TextLayout

    sequence = pytest.importorskip("tf_keras.preprocessing.sequence")
    path, keras_tokenizer = keras_tokenizer_file(tmp_path, **options)
    keras_ids = keras_tokenizer.texts_to_sequences(KERAS_TEXTS)
    expected = sequence.pad_sequences(keras_ids, maxlen=5, padding=padding, truncating=truncating)

    tokenizer = load_tokenizer(path)
    unpadded = tokenizer.encode(KERAS_TEXTS, max_length=1000)
    assert [encoding.ids.tolist() for encoding in unpadded] == keras_ids
    assert any(len(ids) > 5 for ids in keras_ids) and any(len(ids) < 5 for ids in keras_ids)
    side = {"pre": "left", "post": "right"}
    batches = TextBatches(
        KERAS_TEXTS,
        tokenizer=tokenizer,
        inputs=TextInputs(
            ids="ids",
            mask=None,
            token_types=None,
            dtypes={"ids": np.dtype(np.int32)},
            max_length=5,
            pad_to_max_length=True,
        ),
        layout=TextLayout.SEQUENCE,
        batch_size=len(KERAS_TEXTS),
        column="text",
        padding_side=PaddingSide(side[padding]),
        truncation_side=TruncationSide(side[truncating]),
    )
    ids = np.asarray(batches[0].inputs["ids"])  # shared-memory torch tensors, as workers hand them over
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, expected)


def test_keras_word_offsets_point_at_the_words_in_the_original_text(tmp_path):
    path, keras_tokenizer = keras_tokenizer_file(tmp_path, oov_token="<OOV>")
    words = [keras_tokenizer.index_word[i] for i in keras_tokenizer.texts_to_sequences([KERAS_TEXTS[3]])[0]]
    (encoding,) = load_tokenizer(path).encode([KERAS_TEXTS[3]], max_length=100)
    spans = [KERAS_TEXTS[3][start:end] for start, end in encoding.offsets]
    # "İstanbul's" lower-cases to one character more; its span is still the original word.
    assert spans == ["İstanbul's", "station\u00a0was", "quiet", "and", "clean", "great", "value"]
    assert [span.lower() if keras_tokenizer.word_index.get(span.lower()) else "<OOV>" for span in spans] == words


def test_truncation_side_keeps_the_end_of_words_and_texts(tmp_path, tokenizer_json):
    from predict.config import TruncationSide

    path = tmp_path / "word_index.json"
    path.write_text(json.dumps({"<OOV>": 1, "the": 2, "dog": 3, "sleeps": 4, "here": 5}))
    word_index = load_tokenizer(path)
    (kept,) = word_index.encode(["the dog sleeps here"], max_length=2, truncation_side=TruncationSide.LEFT)
    assert kept.ids.tolist() == [4, 5] and kept.offsets.tolist() == [[8, 14], [15, 19]]
    words_in = [["the", "dog", "sleeps", "here"]]
    (words,) = word_index.encode_words(words_in, max_length=3, truncation_side=TruncationSide.LEFT)
    assert words.ids.tolist() == [3, 4, 5] and words.word_ids.tolist() == [1, 2, 3]
    hugging_face = load_tokenizer(tokenizer_json)
    (right,) = hugging_face.encode([SENTENCES[2]], max_length=6)
    (left,) = hugging_face.encode([SENTENCES[2]], max_length=6, truncation_side=TruncationSide.LEFT)
    assert left.ids[0] == right.ids[0] == 2 and left.ids[-1] == right.ids[-1] == 3  # specials kept either way
    assert left.ids[1:-1].tolist() != right.ids[1:-1].tolist()
    assert SENTENCES[2][left.offsets[-2][0] : left.offsets[-2][1]] == "."  # the text's last token
    (tagged,) = hugging_face.encode_words([SENTENCES[0].split()], max_length=5, truncation_side=TruncationSide.LEFT)
    assert tagged.word_ids[1:-1].max() == len(SENTENCES[0].split()) - 1


def test_keras_tokenizer_with_an_empty_split_is_refused(tmp_path):
    path = tmp_path / "keras_tokenizer.json"
    config = {"split": "", "word_index": json.dumps({"a": 1})}
    path.write_text(json.dumps({"class_name": "Tokenizer", "config": config}))
    message = r"keras_tokenizer.json: the Keras Tokenizer's split must be a non-empty string \(got ''\)"
    with pytest.raises(ConfigError, match=message):
        load_tokenizer(path)
