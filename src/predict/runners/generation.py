"""Text generation with an encoder/decoder pair of ONNX models: greedy or beam search, with or without a cache.

The runner looks like any other to the pipeline: `inputs` are the encoder's (the text loader fills
them), `run(feeds)` takes one batch and returns `generated_ids` int64[B, max_new_tokens] (-1 after a
row's end; the end token itself is not included) and `sequence_scores` float32[B].

Naming convention the two models must follow (checked when the runner is built; a model that breaks
it is a `ConfigError` naming the model and the input or output):

Encoder (`model:`)
- inputs: as any text model: one token-id input, optionally an attention mask (a name containing
  `mask`); see predict.data.text.
- outputs: whatever the decoder needs, by name: e.g. `encoder_hidden_states` (B, S, D) of a
  transformer, or the final `state_h`, `state_c` (B, D) of an LSTM.

Decoder (`head.decoder_model:`)
- `decoder_input_ids` (B, T), any int or float dtype: the tokens so far, the start token first.
- an input named like an encoder input or output takes that array, the same at every step
  (`encoder_hidden_states`, `attention_mask`, `state_h`); `encoder_attention_mask` takes the
  encoder's attention-mask input.
- a cache, optional: each input `past_{name}` pairs with an output `present_{name}`, fed back at the
  next step. With a cache, `decoder_input_ids` holds only the newest token (T = 1). At the first
  step `past_{name}` is the encoder output `{name}` when there is one (an LSTM's state), else an empty
  array, 0 long on the input's one dynamic axis after the batch axis (the keys/values seen so far).
  Without `past_*` inputs the decoder gets the whole sequence at every step.
- `logits` (B, T, V) or (B, V) (or the decoder's only output that is not `present_*`): scores of the
  next token at the last position; an output that ends in Softmax is read as probabilities.
- batch axis dynamic: beams are rows.

Search (H2O Hydrogen Torch / transformers semantics, early stopping):
- greedy (`num_beams: 1`): the highest-scoring token at each step; a row stops at the end token.
- beam search: at each step every live beam of a row is extended by every token; of the 2 x num_beams
  best extensions by summed log-probability, an end token within the first num_beams ranks finishes a
  hypothesis (score: summed log-probability / steps ** length_penalty), the others refill the
  num_beams live beams. A row stops once it has num_beams finished hypotheses; at `max_new_tokens`
  its live beams finish as they are. The best finished hypothesis wins (the first one on ties).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from predict.cpus import usable_cpus
from predict.enums import Device
from predict.errors import ConfigError
from predict.runners.base import TensorSpec

if TYPE_CHECKING:
    from predict.runners.ort import OrtRunner

GENERATED_IDS = "generated_ids"
SEQUENCE_SCORES = "sequence_scores"
DECODER_IDS = "decoder_input_ids"
ENCODER_MASK = "encoder_attention_mask"
LOGITS = "logits"
PAST, PRESENT = "past_", "present_"
# Batches generated at once on the CPU when runtime.threads is unset, each on 1/2 of the cores: a small
# transformer pair on 2 cores, 2,850 rows/s one batch at a time on 2 threads, 10,000 two at a time on 1 each.
CPU_CONCURRENT_BATCHES = 2
_CONVENTION = "see predict.runners.generation for the input and output names an encoder/decoder pair needs"


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """How tokens are chosen.

    Attributes:
        start_id: the token the decoder starts from.
        end_id: the token that ends a sequence.
        max_new_tokens: tokens generated at most per row (the end token included).
        num_beams: 1 = greedy, else beam search with this many beams.
        length_penalty: beam search: a finished hypothesis scores log-probability / steps ** length_penalty.
    """

    start_id: int
    end_id: int
    max_new_tokens: int
    num_beams: int = 1
    length_penalty: float = 1.0


@dataclass(frozen=True, kw_only=True)
class _CacheSlot:
    past: str  # decoder input
    present: str  # decoder output fed back as `past`
    initial: str | None  # encoder output that starts it; None: starts empty
    empty_shape: tuple[int | None, ...]  # None = batch axis


@dataclass(frozen=True, kw_only=True)
class DecoderLayout:
    """What the decoder takes and gives, by the naming convention of the module docstring."""

    ids: str
    ids_dtype: np.dtype
    constants: dict[str, str]  # decoder input -> encoder input or output that feeds it
    cache: tuple[_CacheSlot, ...]
    logits: str
    probabilities: bool  # the logits output ends in Softmax


def decoder_layout(encoder: OrtRunner, decoder: OrtRunner, *, encoder_name: str, decoder_name: str) -> DecoderLayout:
    """Match the decoder's inputs and outputs to the encoder's, by name.

    Raises:
        ConfigError: every way the pair breaks the naming convention, one line each.
    """
    errors: list[str] = []
    sources = {spec.name: spec for spec in (*encoder.inputs, *encoder.outputs)}
    masks = [spec for spec in encoder.inputs if "mask" in spec.name.lower()]
    outputs = {spec.name: spec for spec in decoder.outputs}
    ids = None
    constants: dict[str, str] = {}
    cache = []
    for spec in decoder.inputs:
        if spec.fixed_batch_size:
            errors.append(
                f"decoder {decoder_name}: input '{spec.name}' has a fixed batch size of {spec.fixed_batch_size}; "
                "export it with a dynamic batch axis (beams are rows)"
            )
        if spec.name == DECODER_IDS:
            if len(spec.shape) != 2:
                errors.append(
                    f"decoder {decoder_name}: input '{DECODER_IDS}' has {len(spec.shape)} axes; "
                    "expected (batch, tokens) ids"
                )
            ids = spec
        elif spec.name.startswith(PAST):
            cache_slot = _cache_slot(spec, encoder, outputs, decoder_name=decoder_name, errors=errors)
            if cache_slot is not None:
                cache.append(cache_slot)
        elif spec.name in sources or (spec.name == ENCODER_MASK and masks):
            source = sources.get(spec.name) or masks[0]
            errors.extend(_dtype_mismatch(spec, source, encoder_name=encoder_name, decoder_name=decoder_name))
            constants[spec.name] = source.name
        else:
            errors.append(
                f"decoder {decoder_name}: input '{spec.name}' is not '{DECODER_IDS}', a '{PAST}*' cache input, "
                f"'{ENCODER_MASK}', or the name of an encoder {encoder_name} input or output ({', '.join(sources)})"
            )
    errors.extend(_ids_problems(ids, decoder, cached=bool(cache), decoder_name=decoder_name))
    logits = _logits_output(decoder, decoder_name=decoder_name, errors=errors)
    if errors:
        raise ConfigError("\n".join(errors) + f"\n({_CONVENTION})")
    return DecoderLayout(
        ids=ids.name,
        ids_dtype=np.dtype(ids.dtype),
        constants=constants,
        cache=tuple(cache),
        logits=logits.name,
        probabilities=logits.producer == "Softmax",
    )


def _dtype_mismatch(spec: TensorSpec, source: TensorSpec, *, encoder_name: str, decoder_name: str) -> list[str]:
    """A decoder input fed an encoder array must take its dtype."""
    if np.dtype(source.dtype) == np.dtype(spec.dtype):
        return []
    return [
        f"decoder {decoder_name}: input '{spec.name}' takes {np.dtype(spec.dtype).name} but encoder {encoder_name} "
        f"'{source.name}' is {np.dtype(source.dtype).name}"
    ]


def _ids_problems(ids: TensorSpec | None, decoder: OrtRunner, *, cached: bool, decoder_name: str) -> list[str]:
    """The token-ids input exists, and its length axis fits the cache (newest token) or its absence (all)."""
    if ids is None:
        names = ", ".join(spec.name for spec in decoder.inputs)
        return [f"decoder {decoder_name} has no input '{DECODER_IDS}' (inputs: {names})"]
    if len(ids.shape) != 2:
        return []
    if cached and ids.shape[1] not in (None, 1):
        return [
            f"decoder {decoder_name}: input '{DECODER_IDS}' takes {ids.shape[1]} tokens; "
            "with a cache it takes the newest token only (1 or dynamic)"
        ]
    if not cached and ids.shape[1] is not None:
        return [
            f"decoder {decoder_name}: input '{DECODER_IDS}' has a static length of {ids.shape[1]}; "
            "without a cache it takes the growing sequence: export a dynamic axis 1"
        ]
    return []


def _cache_slot(
    spec: TensorSpec, encoder: OrtRunner, outputs: dict[str, TensorSpec], *, decoder_name: str, errors: list[str]
) -> _CacheSlot | None:
    name = spec.name.removeprefix(PAST)
    present = outputs.get(PRESENT + name)
    if present is None:
        errors.append(f"decoder {decoder_name}: cache input '{spec.name}' has no matching output '{PRESENT}{name}'")
        return None
    initial = next((output for output in encoder.outputs if output.name == name), None)
    if initial is not None:
        if np.dtype(initial.dtype) != np.dtype(spec.dtype):
            errors.append(
                f"decoder {decoder_name}: cache input '{spec.name}' takes {np.dtype(spec.dtype).name} but the encoder "
                "output "
                f"'{name}' that starts it is {np.dtype(initial.dtype).name}"
            )
        return _CacheSlot(past=spec.name, present=present.name, initial=name, empty_shape=())
    dynamic = [axis for axis, size in enumerate(spec.shape) if size is None and axis > 0]
    if len(dynamic) != 1:
        errors.append(
            f"decoder {decoder_name}: cache input '{spec.name}' needs a start value: the encoder has no output "
            f"'{name}', "
            f"and it has {len(dynamic)} dynamic axes after the batch axis (exactly 1, the cached length, starts empty)"
        )
        return None
    empty_shape = tuple(
        None if axis == 0 else 0 if axis == dynamic[0] else size for axis, size in enumerate(spec.shape)
    )
    return _CacheSlot(past=spec.name, present=present.name, initial=None, empty_shape=empty_shape)


def _logits_output(decoder: OrtRunner, *, decoder_name: str, errors: list[str]) -> TensorSpec | None:
    candidates = [spec for spec in decoder.outputs if spec.name == LOGITS]
    if not candidates:
        candidates = [spec for spec in decoder.outputs if not spec.name.startswith(PRESENT)]
    if len(candidates) != 1:
        names = ", ".join(spec.name for spec in decoder.outputs)
        errors.append(f"decoder {decoder_name} has outputs ({names}); name the next-token scores '{LOGITS}'")
        return None
    if len(candidates[0].shape) not in (2, 3):
        errors.append(
            f"decoder {decoder_name}: output '{candidates[0].name}' has {len(candidates[0].shape)} axes; expected "
            "(batch, tokens, vocabulary) or (batch, vocabulary)"
        )
    return candidates[0]


class GenerationRunner:
    """An encoder session run once per batch and a decoder session run once per generated token.

    Attributes:
        inputs: the encoder's inputs (what the text loader feeds).
        outputs: `generated_ids` int64 (batch, max_new_tokens) and `sequence_scores` float32 (batch,).
        provider: the execution provider that runs the decoder.
        notes: what a user should know (search settings, cache or not).
        concurrent_batches: how many batches the engine may run at once (see `CPU_CONCURRENT_BATCHES`).
    """

    def __init__(
        self,
        encoder_path: Path,
        decoder_path: Path,
        *,
        settings: GenerationSettings,
        device: Device = Device.AUTO,
        threads: int = 0,
        encoder_name: str | None = None,
        decoder_name: str | None = None,
    ) -> None:
        # Imported here, not above: the sequence-to-sequence head takes GENERATED_IDS from this module,
        # and the head registry must not import onnxruntime for `predict show` (issue 18).
        from predict.runners.ort import CPU, OrtRunner, requested_providers

        # On the CPU, with runtime.threads unset, batches run side by side, each on its share of the cores:
        # a generated token is a few small ops, and a second intra-op thread woken for each cost more than it
        # saved (docs/performance.md).
        side_by_side = not threads and requested_providers(device)[0] == CPU
        self.concurrent_batches = CPU_CONCURRENT_BATCHES if side_by_side else 1
        if side_by_side:
            threads = max(1, usable_cpus() // CPU_CONCURRENT_BATCHES)
        self.encoder = OrtRunner(encoder_path, device=device, threads=threads)
        # The target tokenizer with its start and end ids, for the head (set by predict.problems.sequence_to_sequence).
        self.vocabulary: Any = None
        self.decoder = OrtRunner(decoder_path, device=device, threads=threads)
        self.settings = settings
        self.layout = decoder_layout(
            self.encoder,
            self.decoder,
            encoder_name=encoder_name or encoder_path.name,
            decoder_name=decoder_name or decoder_path.name,
        )
        self.inputs = self.encoder.inputs
        self.outputs = (
            TensorSpec(name=GENERATED_IDS, shape=(None, settings.max_new_tokens), dtype=np.dtype(np.int64)),
            TensorSpec(name=SEQUENCE_SCORES, shape=(None,), dtype=np.dtype(np.float32)),
        )
        self.provider = self.decoder.provider
        search = (
            "greedy search"
            if settings.num_beams == 1
            else f"beam search ({settings.num_beams} beams, length_penalty {settings.length_penalty})"
        )
        cache = "a cache of past states" if self.layout.cache else "no cache: the whole sequence at every step"
        self.notes = [
            *self.encoder.notes,
            *self.decoder.notes,
            f"generation: {search}, at most {settings.max_new_tokens} new tokens, {cache}",
        ]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Generate for one batch.

        Args:
            feeds: the encoder's inputs, named and typed as `inputs` says.

        Returns:
            `generated_ids` int64[B, max_new_tokens] (-1 after the end; the end token left out) and
            `sequence_scores` float32[B] (greedy: summed log-probability; beams: the length-normalized score).
        """
        encoded = {**feeds, **self.encoder.run(feeds)}
        rows = len(next(iter(feeds.values())))
        beams = self.settings.num_beams
        constants = {name: np.repeat(encoded[source], beams, axis=0) for name, source in self.layout.constants.items()}
        cache = {}
        for slot in self.layout.cache:
            if slot.initial is not None:
                cache[slot.past] = np.repeat(encoded[slot.initial], beams, axis=0)
            else:
                spec = next(spec for spec in self.decoder.inputs if spec.name == slot.past)
                shape = tuple(rows * beams if size is None else size for size in slot.empty_shape)
                cache[slot.past] = np.zeros(shape, dtype=spec.dtype)
        if beams == 1:
            generated, scores = self._greedy(rows, constants, cache)
        else:
            generated, scores = self._beam_search(rows, constants, cache)
        return {GENERATED_IDS: generated, SEQUENCE_SCORES: scores}

    def _step(
        self, tokens: np.ndarray, constants: dict[str, np.ndarray], cache: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One decoder call: float32[N, V] log-probabilities of the next token, and the new cache."""
        feeds = {self.layout.ids: tokens.astype(self.layout.ids_dtype), **constants, **cache}
        outputs = self.decoder.run(feeds)
        scores = np.asarray(outputs[self.layout.logits], dtype=np.float32)
        if scores.ndim == 3:
            scores = scores[:, -1]
        if self.layout.probabilities:
            with np.errstate(divide="ignore"):  # a probability of exactly 0 is log 0 = -inf: never chosen
                log_probabilities = np.log(scores)
        else:
            shifted = scores - scores.max(axis=1, keepdims=True)
            log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return log_probabilities, {slot.past: outputs[slot.present] for slot in self.layout.cache}

    def _greedy(
        self, rows: int, constants: dict[str, np.ndarray], cache: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        settings = self.settings
        sequence = np.full((rows, 1), settings.start_id, dtype=np.int64)
        generated = np.full((rows, settings.max_new_tokens), -1, dtype=np.int64)
        scores = np.zeros(rows, dtype=np.float64)
        done = np.zeros(rows, dtype=bool)
        for step in range(settings.max_new_tokens):
            fed = sequence[:, -1:] if self.layout.cache else sequence
            log_probabilities, cache = self._step(fed, constants, cache)
            tokens = log_probabilities.argmax(axis=1)
            scores += np.where(done, 0.0, log_probabilities[np.arange(rows), tokens])
            # A finished row keeps being fed the end token: rows share the decoder call, their output is ignored.
            tokens = np.where(done, settings.end_id, tokens)
            ended = tokens == settings.end_id
            generated[~done & ~ended, step] = tokens[~done & ~ended]
            done |= ended
            sequence = np.concatenate([sequence, tokens[:, None]], axis=1)
            if done.all():
                break
        return generated, scores.astype(np.float32)

    def _beam_search(
        self, rows: int, constants: dict[str, np.ndarray], cache: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        settings = self.settings
        beams = settings.num_beams
        sequences = np.full((rows, beams, 1), settings.start_id, dtype=np.int64)
        # Only the first beam is live at the start: the others would repeat its extensions.
        beam_scores = np.full((rows, beams), -np.inf)
        beam_scores[:, 0] = 0.0
        finished: list[list[tuple[float, np.ndarray]]] = [[] for _ in range(rows)]
        done = np.zeros(rows, dtype=bool)
        for step in range(settings.max_new_tokens):
            fed = sequences[:, :, -1:] if self.layout.cache else sequences
            log_probabilities, cache = self._step(fed.reshape(rows * beams, -1), constants, cache)
            vocabulary = log_probabilities.shape[1]
            candidates = (beam_scores[:, :, None] + log_probabilities.reshape(rows, beams, vocabulary)).reshape(
                rows, -1
            )
            origins = np.tile(np.arange(beams), (rows, 1))
            tokens = np.full((rows, beams), settings.end_id, dtype=np.int64)
            new_scores = beam_scores.copy()
            best = np.argsort(-candidates, axis=1, kind="stable")[:, : 2 * beams]
            for row in np.flatnonzero(~done):
                slot = 0
                for rank, index in enumerate(best[row]):
                    origin, token = divmod(int(index), vocabulary)
                    score = float(candidates[row, index])
                    if token == settings.end_id:
                        if rank < beams:
                            finished[row].append(
                                (score / (step + 1) ** settings.length_penalty, sequences[row, origin, 1:])
                            )
                        continue
                    origins[row, slot], tokens[row, slot], new_scores[row, slot] = origin, token, score
                    slot += 1
                    if slot == beams:
                        break
                done[row] = len(finished[row]) >= beams
            sequences = np.concatenate(
                [np.take_along_axis(sequences, origins[:, :, None], axis=1), tokens[:, :, None]], axis=2
            )
            beam_scores = new_scores
            if self.layout.cache:
                flat = (np.arange(rows)[:, None] * beams + origins).reshape(-1)
                cache = {name: values[flat] for name, values in cache.items()}
            if done.all():
                break
        generated = np.full((rows, settings.max_new_tokens), -1, dtype=np.int64)
        scores = np.zeros(rows, dtype=np.float32)
        for row in range(rows):
            if not done[row]:  # out of steps: the live beams finish as they are
                steps = sequences.shape[2] - 1
                finished[row].extend(
                    (float(beam_scores[row, beam]) / steps**settings.length_penalty, sequences[row, beam, 1:])
                    for beam in range(beams)
                )
            best_score, best_tokens = max(finished[row], key=lambda hypothesis: hypothesis[0])
            generated[row, : len(best_tokens)] = best_tokens
            scores[row] = best_score
        return generated, scores
