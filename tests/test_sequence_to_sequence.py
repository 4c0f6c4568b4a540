"""Text sequence to sequence: generation against reference loops written in torch, the cache, and the config errors.

The transformer here is random (seeded), with the end token's logit raised so rows end at varied
lengths; the references below re-run the torch decoder on the whole sequence at every step, one row
at a time, and never touch predict.runners.generation.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import sacrebleu
import torch
from onnx import TensorProto, helper

from predict.cli import main
from predict.cpus import usable_cpus
from predict.errors import ConfigError
from predict.heads import sequence_to_sequence
from predict.heads.sequence_to_sequence import SequenceToSequenceHead
from predict.runners.generation import CPU_CONCURRENT_BATCHES, GenerationRunner, GenerationSettings
from predict.task import load_config
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "configs" / "models"
TOKENIZER = MODELS / "fictish_tokenizer.json"
BOS, EOS = 2, 3  # fictish_tokenizer.json: [PAD] 0, [UNK] 1, [BOS] 2, [EOS] 3
HEADS, HEAD_DIM, LAYERS = 2, 4, 2


class TinySeq2Seq(torch.nn.Module):
    """Encoder: embeddings + one attention layer.

    Decoder: causal self-attention with a key/value cache, cross-attention.
    """

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        dim = HEADS * HEAD_DIM
        self.tokens = torch.nn.Embedding(vocab_size, dim)
        self.positions = torch.nn.Embedding(64, dim)
        self.encoder_qkv = torch.nn.Linear(dim, 3 * dim)
        self.self_qkv = torch.nn.ModuleList(torch.nn.Linear(dim, 3 * dim) for _ in range(LAYERS))
        self.cross_q = torch.nn.ModuleList(torch.nn.Linear(dim, dim) for _ in range(LAYERS))
        self.cross_kv = torch.nn.ModuleList(torch.nn.Linear(dim, 2 * dim) for _ in range(LAYERS))
        self.lm_head = torch.nn.Linear(dim, vocab_size)
        with torch.no_grad():
            self.lm_head.weight.mul_(4.0)  # peaked distributions: no near-ties between ORT and torch
            self.lm_head.bias[EOS] += 1.5  # the end token wins now and then: rows end at varied lengths

    @staticmethod
    def _heads(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], HEADS, HEAD_DIM).transpose(1, 2)

    @staticmethod
    def _attend(q, k, v, allowed):
        scores = (q @ k.transpose(-1, -2) / HEAD_DIM**0.5).masked_fill(~allowed, -1e9)
        attended = torch.softmax(scores, dim=-1) @ v
        return attended.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)

    def encode(self, input_ids, attention_mask):
        hidden = self.tokens(input_ids) + self.positions(torch.arange(input_ids.shape[1]))[None]
        q, k, v = (self._heads(t) for t in self.encoder_qkv(hidden).chunk(3, dim=-1))
        return hidden + self._attend(q, k, v, attention_mask[:, None, None, :].bool())

    def decode(self, ids, encoder_hidden_states, encoder_attention_mask, past):
        past_length = past[0].shape[2]
        positions = torch.arange(ids.shape[1]) + past_length
        hidden = self.tokens(ids) + self.positions(positions)[None]
        keys_at = torch.cat([torch.arange(past_length), positions])
        causal = (keys_at[None, :] <= positions[:, None])[None, None]
        presents = []
        for layer in range(LAYERS):
            q, k, v = (self._heads(t) for t in self.self_qkv[layer](hidden).chunk(3, dim=-1))
            k, v = torch.cat([past[2 * layer], k], dim=2), torch.cat([past[2 * layer + 1], v], dim=2)
            presents += [k, v]
            hidden = hidden + self._attend(q, k, v, causal)
            cross_k, cross_v = (self._heads(t) for t in self.cross_kv[layer](encoder_hidden_states).chunk(2, dim=-1))
            hidden = hidden + self._attend(
                self._heads(self.cross_q[layer](hidden)),
                cross_k,
                cross_v,
                encoder_attention_mask[:, None, None, :].bool(),
            )
        return self.lm_head(hidden), presents

    def empty_past(self, rows: int) -> list[torch.Tensor]:
        return [torch.zeros(rows, HEADS, 0, HEAD_DIM) for _ in range(2 * LAYERS)]


class _Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.encode(input_ids, attention_mask)


class _DecoderWithPast(_Encoder):
    def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask, *past):
        logits, presents = self.model.decode(
            decoder_input_ids, encoder_hidden_states, encoder_attention_mask, list(past)
        )
        return (logits, *presents)


class _Decoder(_Encoder):
    def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask):
        rows = decoder_input_ids.shape[0]
        return self.model.decode(
            decoder_input_ids, encoder_hidden_states, encoder_attention_mask, self.model.empty_past(rows)
        )[0]


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    """(torch model, encoder.onnx, decoder_with_past.onnx, decoder.onnx), exported as a user would."""
    from tokenizers import Tokenizer

    model = TinySeq2Seq(Tokenizer.from_file(str(TOKENIZER)).get_vocab_size()).eval()
    folder = tmp_path_factory.mktemp("seq2seq")
    ids = torch.ones(2, 5, dtype=torch.int64)
    common = {"opset_version": 17, "dynamo": False}
    torch.onnx.export(
        _Encoder(model),
        (ids, ids),
        str(folder / "encoder.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["encoder_hidden_states"],
        dynamic_axes={
            name: {0: "batch", 1: "source"} for name in ("input_ids", "attention_mask", "encoder_hidden_states")
        },
        **common,
    )
    with torch.no_grad():
        hidden = model.encode(ids, ids)
        _, past = model.decode(torch.ones(2, 3, dtype=torch.int64), hidden, ids, model.empty_past(2))
    past_names = [f"past_{kind}_{layer}" for layer in range(LAYERS) for kind in ("key", "value")]
    present_names = [name.replace("past_", "present_") for name in past_names]
    constant_axes = {
        "encoder_hidden_states": {0: "batch", 1: "source"},
        "encoder_attention_mask": {0: "batch", 1: "source"},
    }
    torch.onnx.export(
        _DecoderWithPast(model),
        (torch.ones(2, 1, dtype=torch.int64), hidden, ids, *past),
        str(folder / "decoder_with_past.onnx"),
        input_names=["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask", *past_names],
        output_names=["logits", *present_names],
        dynamic_axes={
            "decoder_input_ids": {0: "batch", 1: "new"},
            "logits": {0: "batch", 1: "new"},
            **constant_axes,
            **{name: {0: "batch", 2: "past"} for name in past_names},
            **{name: {0: "batch", 2: "total"} for name in present_names},
        },
        **common,
    )
    torch.onnx.export(
        _Decoder(model),
        (torch.ones(2, 3, dtype=torch.int64), hidden, ids),
        str(folder / "decoder.onnx"),
        input_names=["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "decoder_input_ids": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"},
            **constant_axes,
        },
        **common,
    )
    return model, folder / "encoder.onnx", folder / "decoder_with_past.onnx", folder / "decoder.onnx"


TEXTS = [
    "the red cat sees a dog",
    "",
    "a small old farmer watches the blue river near the house",
    "the bird",
    "a child paints a tree",
]


def _feeds(texts: list[str]) -> dict[str, np.ndarray]:
    """Right-padded ids and mask, built with tokenizers directly."""
    from tokenizers import Tokenizer

    encodings = Tokenizer.from_file(str(TOKENIZER)).encode_batch(texts)
    width = max(len(encoding.ids) for encoding in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _next_log_probabilities(model, sequence: list[int], hidden, mask) -> torch.Tensor:
    with torch.no_grad():
        logits, _ = model.decode(torch.tensor([sequence]), hidden, mask, model.empty_past(1))
    return torch.log_softmax(logits[0, -1].double(), dim=-1)


def reference_greedy(model, feeds, *, max_new_tokens: int) -> list[list[int]]:
    """One row at a time, the whole sequence at every step."""
    results = []
    for row in range(len(feeds["input_ids"])):
        ids, mask = (torch.from_numpy(feeds[name][row : row + 1]) for name in ("input_ids", "attention_mask"))
        with torch.no_grad():
            hidden = model.encode(ids, mask)
        sequence = [BOS]
        for _ in range(max_new_tokens):
            token = int(_next_log_probabilities(model, sequence, hidden, mask).argmax())
            if token == EOS:
                break
            sequence.append(token)
        results.append(sequence[1:])
    return results


def reference_beam_search(
    model, feeds, *, beams: int, max_new_tokens: int, length_penalty: float
) -> list[tuple[list[int], float]]:
    """Beam search as predict.runners.generation documents it, written with Python lists and sorted()."""
    results = []
    for row in range(len(feeds["input_ids"])):
        ids, mask = (torch.from_numpy(feeds[name][row : row + 1]) for name in ("input_ids", "attention_mask"))
        with torch.no_grad():
            hidden = model.encode(ids, mask)
        live = [([BOS], 0.0)]
        finished = []
        for step in range(max_new_tokens):
            candidates = []
            for beam_index, (sequence, score) in enumerate(live):
                log_probabilities = _next_log_probabilities(model, sequence, hidden, mask)
                candidates += [
                    (score + float(value), beam_index, token, sequence) for token, value in enumerate(log_probabilities)
                ]
            candidates.sort(key=lambda candidate: (-candidate[0], candidate[1], candidate[2]))
            next_live = []
            for rank, (score, _, token, sequence) in enumerate(candidates[: 2 * beams]):
                if token == EOS:
                    if rank < beams:
                        finished.append((sequence[1:], score / (step + 1) ** length_penalty))
                elif len(next_live) < beams:
                    next_live.append(([*sequence, token], score))
            live = next_live
            if len(finished) >= beams:
                break
        else:
            finished += [(sequence[1:], score / max_new_tokens**length_penalty) for sequence, score in live]
        best = max(range(len(finished)), key=lambda index: (finished[index][1], -index))
        results.append(finished[best])
    return results


def _rows(generated: np.ndarray) -> list[list[int]]:
    rows = []
    for row in generated:
        ended = np.flatnonzero(row < 0)
        tokens = row[: ended[0]] if len(ended) else row
        assert (row[len(tokens) :] == -1).all()  # nothing after the end
        rows.append([int(token) for token in tokens])
    return rows


def _runner(encoder: Path, decoder: Path, **settings) -> GenerationRunner:
    values = {"start_id": BOS, "end_id": EOS, "max_new_tokens": 12, **settings}
    return GenerationRunner(encoder, decoder, settings=GenerationSettings(**values))


@pytest.mark.parametrize("cache", [True, False], ids=["kv_cache", "no_cache"])
def test_greedy_matches_torch_reference_and_stops_at_end_token(seq2seq, cache):
    model, encoder, with_past, without_past = seq2seq
    feeds = _feeds(TEXTS)
    runner = _runner(encoder, with_past if cache else without_past)
    assert bool(runner.layout.cache) is cache
    generated = runner.run(feeds)["generated_ids"]
    assert generated.shape == (len(TEXTS), 12) and generated.dtype == np.int64
    expected = reference_greedy(model, feeds, max_new_tokens=12)
    assert _rows(generated) == expected
    lengths = [len(tokens) for tokens in expected]
    assert min(lengths) < 12 and max(lengths) == 12  # some rows stop at the end token, some run out of steps
    assert all(EOS not in tokens for tokens in expected)


def test_kv_cache_and_no_cache_give_identical_outputs(seq2seq):
    _, encoder, with_past, without_past = seq2seq
    feeds = _feeds(TEXTS * 3)
    for settings in ({}, {"num_beams": 3}, {"num_beams": 2, "length_penalty": 0.5}):
        cached = _runner(encoder, with_past, **settings).run(feeds)
        uncached = _runner(encoder, without_past, **settings).run(feeds)
        np.testing.assert_array_equal(cached["generated_ids"], uncached["generated_ids"])
        np.testing.assert_allclose(cached["sequence_scores"], uncached["sequence_scores"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("beams", "length_penalty"), [(2, 1.0), (4, 0.6)])
def test_beam_search_matches_torch_reference(seq2seq, beams, length_penalty):
    model, encoder, with_past, _ = seq2seq
    feeds = _feeds(TEXTS)
    outputs = _runner(encoder, with_past, num_beams=beams, length_penalty=length_penalty, max_new_tokens=8).run(feeds)
    expected = reference_beam_search(model, feeds, beams=beams, max_new_tokens=8, length_penalty=length_penalty)
    assert _rows(outputs["generated_ids"]) == [tokens for tokens, _ in expected]
    np.testing.assert_allclose(outputs["sequence_scores"], [score for _, score in expected], rtol=1e-4, atol=1e-4)


def test_one_beam_is_greedy_and_max_new_tokens_cuts(seq2seq):
    _, encoder, with_past, _ = seq2seq
    feeds = _feeds(TEXTS)
    greedy = _runner(encoder, with_past).run(feeds)
    beam = _runner(encoder, with_past, num_beams=1).run(feeds)
    np.testing.assert_array_equal(greedy["generated_ids"], beam["generated_ids"])
    short = _runner(encoder, with_past, max_new_tokens=3).run(feeds)["generated_ids"]
    assert short.shape == (len(TEXTS), 3)
    # Greedy choices do not depend on how many steps are left: the short run is the long run's prefix.
    for cut, whole in zip(_rows(short), _rows(greedy["generated_ids"])):
        assert cut == whole[:3]


def _write_task(tmp_path: Path, encoder: Path, decoder: Path, *, texts: list[str], targets: list[str], **head) -> Path:
    dataframe = tmp_path / "pairs.csv"
    pd.DataFrame({"id": [f"{i:02d}" for i in range(len(texts))], "source": texts, "target": targets}).to_csv(
        dataframe, index=False
    )
    return write_config(
        tmp_path / "task.yaml",
        {
            "problem_type": "text_sequence_to_sequence",
            "model": str(encoder),
            "data": {"dataframe": str(dataframe), "text_column": "source", "label_columns": ["target"]},
            "preprocessing": {"tokenizer": str(TOKENIZER), "max_length": 32},
            "head": {"decoder_model": str(decoder), "max_new_tokens": 12, **head},
            "runtime": {"batch_size": 2, "num_workers": 0},
            "output": {"dir": str(tmp_path / "out")},
        },
    )


def test_pipeline_writes_the_contract_with_empty_text_and_bleu(seq2seq, tmp_path):
    model, encoder, with_past, _ = seq2seq
    texts = TEXTS
    targets = ["lo gato roja vidas un kano", "", "un agro", "lo avo", "un infa pentras un arbo"]
    config = _write_task(tmp_path, encoder, with_past, texts=texts, targets=targets, num_beams=2)
    assert main(["--config", str(config), "--quiet"]) == 0
    out = tmp_path / "out"
    frame = pd.read_csv(out / "validation_predictions.csv", dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["id", "source", "target", "pred_target"]
    assert list(frame.id) == ["00", "01", "02", "03", "04"]
    with open(out / "validation_raw_predictions.pkl", "rb") as handle:
        raw = pickle.load(handle)
    assert list(raw) == ["source", "predicted_text"]
    assert list(raw["source"]) == texts  # the empty text included
    assert list(frame.pred_target) == list(raw["predicted_text"])
    # Reference: torch beam search, decoded with tokenizers directly.
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    expected = [
        tokenizer.decode(tokens)
        for tokens, _ in reference_beam_search(model, _feeds(texts), beams=2, max_new_tokens=12, length_penalty=1.0)
    ]
    assert list(raw["predicted_text"]) == expected
    metrics = json.loads((out / "validation_metrics.json").read_text())
    assert metrics["BLEU"] == pytest.approx(sacrebleu.corpus_bleu(expected, [targets]).score)


def test_generation_runs_batches_side_by_side_on_the_cpu_unless_threads_are_set(seq2seq):
    """On the CPU with runtime.threads unset, two batches at once, each session on half the cores."""
    _, encoder, with_past, _ = seq2seq
    side_by_side = _runner(encoder, with_past)
    assert side_by_side.concurrent_batches == CPU_CONCURRENT_BATCHES == 2
    for runner in (side_by_side.encoder, side_by_side.decoder):
        assert runner.session.get_session_options().intra_op_num_threads == max(1, usable_cpus() // 2)
    pinned = GenerationRunner(
        encoder, with_past, settings=GenerationSettings(start_id=BOS, end_id=EOS, max_new_tokens=12), threads=3
    )
    assert pinned.concurrent_batches == 1
    assert pinned.decoder.session.get_session_options().intra_op_num_threads == 3


def test_batches_generated_side_by_side_are_written_in_row_order(seq2seq, tmp_path):
    """Many batches two at a time (threads unset) write the same files as one at a time (runtime.threads: 1)."""
    _, encoder, with_past, _ = seq2seq
    texts = [f"{text} {index}" for index in range(6) for text in TEXTS]  # 30 rows, 15 batches of 2
    files = {}
    for name, overrides in (("side_by_side", []), ("one_at_a_time", ["runtime.threads=1"])):
        (tmp_path / name).mkdir()
        config = _write_task(tmp_path / name, encoder, with_past, texts=texts, targets=texts, num_beams=2)
        assert main(["--config", str(config), "--quiet", *[item for o in overrides for item in ("--set", o)]]) == 0
        out = tmp_path / name / "out"
        files[name] = [
            (out / file).read_bytes()
            for file in ("validation_predictions.csv", "validation_raw_predictions.pkl", "validation_metrics.json")
        ]
    assert files["side_by_side"] == files["one_at_a_time"]
    frame = pd.read_csv(tmp_path / "side_by_side" / "out" / "validation_predictions.csv", dtype=str)
    assert list(frame.id) == [f"{i:02d}" for i in range(len(texts))]


def test_committed_examples_translate(tmp_path):
    """The trained examples (scripts/make_seq2seq_examples.py): the torch transformer and the Keras LSTM pair."""
    for name, lowest in (("text_sequence_to_sequence", 90.0), ("text_sequence_to_sequence_lstm", 50.0)):
        out = tmp_path / name
        assert main(["--config", str(ROOT / "configs" / f"{name}.yaml"), "--quiet", "--set", f"output.dir={out}"]) == 0
        metrics = json.loads((out / "validation_metrics.json").read_text())
        assert metrics["BLEU"] >= lowest, (name, metrics)
        report = json.loads((out / "validation_report.json").read_text())
        assert any("generation:" in note for note in report["notes"])


def test_corpus_bleu_counted_in_chunks_is_sacrebleus_corpus_bleu(monkeypatch):
    monkeypatch.setattr(sequence_to_sequence, "BLEU_CHUNK_ROWS", 3)  # 10 rows: chunks of 3, 3, 3 and 1
    references = [f"the {word} sat on the mat near {other}" for word, other in zip("abcdefghij", "jihgfedcba")]
    predicted = [text if row % 3 else " ".join(reversed(text.split())) for row, text in enumerate(references)]
    predicted[4] = ""
    chunked = sequence_to_sequence.corpus_bleu(predicted, references)
    assert chunked == sacrebleu.corpus_bleu(predicted, [references]).score
    assert 0 < chunked < 100


def test_labels_stay_a_column_and_bleu_leaves_out_the_rows_not_read():
    # The label column as read (None: an empty Parquet cell, scored as ""); a list of every row's string,
    # held all run, was 9.5 MB at 100,000 rows (issue 18).
    labels = pd.Series(["the cat sat on the mat", None, "a dog ran far away", "birds fly high above"], dtype=object)
    head = SequenceToSequenceHead(decoder=None, label_column="target", input_column="text", labels=labels, notes=[])
    predicted = np.array(["the cat sat on a mat", "x", "a dog ran away", "birds fly high"], dtype=object)
    references = ["the cat sat on the mat", "", "a dog ran far away", "birds fly high above"]
    expected = sacrebleu.corpus_bleu(list(predicted), [references]).score
    assert head.metrics({"predicted_text": predicted})["BLEU"] == expected
    kept = np.array([True, False, True, True])
    restricted = head.restricted_to(kept)
    assert list(restricted.labels) == [references[0], references[2], references[3]]
    expected = sacrebleu.corpus_bleu(list(predicted[kept]), [list(restricted.labels)]).score
    assert restricted.metrics({"predicted_text": predicted[kept]})["BLEU"] == expected


def test_sacrebleus_tokenized_input_warning_is_logged_once_not_per_chunk(monkeypatch, caplog):
    monkeypatch.setattr(sequence_to_sequence, "BLEU_CHUNK_ROWS", 100)
    predicted = [f"a cat number {index} ." for index in range(300)]  # 3 chunks, each of 100 tokenized lines
    with caplog.at_level(logging.WARNING, logger="sacrebleu"):
        sequence_to_sequence.corpus_bleu(predicted, predicted)
    messages = [record.getMessage() for record in caplog.records if record.name == "sacrebleu"]
    assert len(messages) == 3 and len(set(messages)) == 3  # sacrebleu's three lines, once
    assert "tokenized period" in messages[0]


# ----------------------------------------------------------------------------------------- config errors


def _onnx(path: Path, inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]]) -> Path:
    """A graph whose outputs are Identity copies of its first input (enough to be loaded and inspected)."""
    nodes = [helper.make_node("Identity", [inputs[0][0]], [name]) for name, _, _ in outputs]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in inputs],
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ([("tokens", INT64, ["b", "t"])], [("logits", INT64, ["b", "t"])], "has no input 'decoder_input_ids'"),
        (
            [("decoder_input_ids", INT64, ["b", "t"]), ("extra", FLOAT, ["b", 4])],
            [("logits", INT64, ["b", "t"])],
            "input 'extra' is not 'decoder_input_ids', a 'past_\\*' cache input",
        ),
        (
            [("decoder_input_ids", INT64, ["b", 1]), ("past_key", FLOAT, ["b", 2, "p", 4])],
            [("logits", INT64, ["b", 1])],
            "cache input 'past_key' has no matching output 'present_key'",
        ),
        (
            [("decoder_input_ids", INT64, ["b", 1]), ("past_key", FLOAT, ["b", "h", "p", 4])],
            [("logits", INT64, ["b", 1]), ("present_key", INT64, ["b", 1])],
            "cache input 'past_key' needs a start value",
        ),
        (
            [("decoder_input_ids", INT64, ["b", "t"])],
            [("scores", INT64, ["b", "t"]), ("other", INT64, ["b", "t"])],
            "name the next-token scores 'logits'",
        ),
        (
            [("decoder_input_ids", INT64, ["b", "t"]), ("attention_mask", FLOAT, ["b", "s"])],
            [("logits", INT64, ["b", "t"])],
            "input 'attention_mask' takes float32 but encoder",
        ),
        (
            [("decoder_input_ids", INT64, ["b", 8])],
            [("logits", INT64, ["b", 8])],
            "has a static length of 8; without a cache",
        ),
        (
            [("decoder_input_ids", INT64, ["b", 4]), ("past_key", FLOAT, ["b", 2, "p", 4])],
            [("logits", INT64, ["b", 4]), ("present_key", INT64, ["b", 4])],
            "with a cache it takes the newest token only",
        ),
        ([("decoder_input_ids", INT64, [1, "t"])], [("logits", INT64, [1, "t"])], "has a fixed batch size of 1"),
        (
            [("decoder_input_ids", INT64, ["b"])],
            [("logits", INT64, ["b"])],
            "has 1 axes; expected \\(batch, tokens\\) ids",
        ),
    ],
    ids=[
        "no_ids",
        "unknown_input",
        "past_without_present",
        "past_without_start",
        "no_logits",
        "dtype",
        "static_length",
        "cache_length",
        "fixed_batch",
        "ids_axes",
    ],
)
def test_decoder_that_breaks_the_naming_convention(seq2seq, tmp_path, inputs, outputs, message):
    encoder = seq2seq[1]
    decoder = _onnx(tmp_path / "bad_decoder.onnx", inputs, outputs)
    with pytest.raises(ConfigError, match=message) as error:
        _runner(encoder, decoder)
    assert "bad_decoder.onnx" in str(error.value) and "see predict.runners.generation" in str(error.value)


def test_config_errors(seq2seq, tmp_path):
    _, encoder, with_past, _ = seq2seq
    config = _write_task(tmp_path, encoder, with_past, texts=TEXTS, targets=TEXTS)
    assert load_config(config).head.decoder_model == with_past
    cases = [
        (["head.decoder_model=null"], "head.decoder_model must not be empty"),
        (["head.decoder_model=missing.onnx"], "head.decoder_model file not found"),
        (
            [f"head.decoder_model={TOKENIZER}"],
            r"head.decoder_model must be one of .onnx, .h5, .hdf5 \(got 'fictish_tokenizer.json'\)",
        ),
        (["head.max_new_tokens=0"], r"head.max_new_tokens must be >= 1 \(got 0\)"),
        (["head.num_beams=0"], r"head.num_beams must be >= 1 \(got 0\)"),
        (["head.target_tokenizer=nowhere.json"], "head.target_tokenizer file not found"),
        (["head.beams=2"], "unknown key head.beams: did you mean 'num_beams'"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_config(config, overrides)
    with pytest.raises(ConfigError, match=r"head.decoder_model is missing"):
        load_config(write_config(tmp_path / "no_head.yaml", {**_yaml(config), "head": {}}))


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_run_time_config_errors(seq2seq, tmp_path):
    _, encoder, with_past, _ = seq2seq
    config = _write_task(tmp_path, encoder, with_past, texts=TEXTS, targets=TEXTS)
    words = tmp_path / "words.json"
    words.write_text(json.dumps({"<OOV>": 1, "lo": 2, "gato": 3}))
    cases = [
        (["head.start_token=<go>"], r"head.start_token: '<go>' is not in the vocabulary of fictish_tokenizer.json"),
        (["head.end_token=<stop>"], r"head.end_token: '<stop>' is not in the vocabulary of fictish_tokenizer.json"),
        (
            [f"head.target_tokenizer={words}"],
            r"head.start_token is missing and words.json has none of the usual tokens \(\[BOS\], <s>",
        ),
        (
            ["data.label_columns=[target, id]"],
            r"data.label_columns: sequence to sequence takes one column of target texts",
        ),
        (["runtime.engine=ray"], r"runtime.engine: ray does not run text_sequence_to_sequence"),
    ]
    for index, (overrides, message) in enumerate(cases):
        with pytest.raises(ConfigError, match=message):
            main_config = load_config(config, [*overrides, f"output.dir={tmp_path / str(index)}"])
            from predict.pipeline import run_task

            run_task(main_config, progress=False)


def test_head_refuses_outputs_of_a_plain_runner(seq2seq, tmp_path):
    _, encoder, with_past, _ = seq2seq
    task = load_config(_write_task(tmp_path, encoder, with_past, texts=TEXTS, targets=TEXTS))
    with pytest.raises(ConfigError, match="text_sequence_to_sequence needs the generation runner"):
        SequenceToSequenceHead.build(task, outputs=(), dataframe=pd.DataFrame({"source": TEXTS, "target": TEXTS}))


def test_word_index_target_decoding(tmp_path):
    """A Keras-style target vocabulary: words joined by spaces; start, end, padding and unknown ids left out."""
    from predict.data.target_tokens import TargetDecoder
    from predict.data.tokenizer import load_tokenizer

    words = tmp_path / "words.json"
    words.write_text(json.dumps({"<OOV>": 1, "<start>": 2, "<end>": 3, "lo": 4, "gato": 5}))
    decoder = TargetDecoder(load_tokenizer(words), skip_ids=[0, 2, 3])
    generated = np.array([[4, 5, 3, -1], [2, 0, 99, 5], [-1, -1, -1, -1]])
    assert decoder.decode(generated) == ["lo gato", "gato", ""]
