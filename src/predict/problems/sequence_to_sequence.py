"""Text sequence to sequence: an encoder/decoder pair generates text per row, scored by corpus BLEU.

Everything that makes this problem type different lives here: its runner runs the decoder many times
per batch (predict.runners.generation), both the runner and the head need the target vocabulary's
start and end tokens (read once, here), and it runs on onnxruntime with the local engine only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from predict.config import TaskConfig
from predict.data.target_tokens import TargetVocabulary, load_target_vocabulary
from predict.enums import Backend, Engine, ProblemType, TextLayout
from predict.heads.sequence_to_sequence import SequenceToSequenceHead
from predict.model_file import resolve_onnx_model
from predict.problems.modalities import TEXT
from predict.problems.spec import ProblemSpec
from predict.runners.base import Runner
from predict.runners.generation import GenerationRunner, GenerationSettings
from predict.view.sequence_to_sequence import SequenceToSequenceView


def check_sequence_to_sequence(task: TaskConfig) -> list[str]:
    """Generation runs an encoder/decoder pair through onnxruntime, in this process."""
    errors = []
    if task.runtime.backend is Backend.TORCH:
        errors.append("runtime.backend: torch does not run text_sequence_to_sequence yet; use onnxruntime")
    if task.runtime.engine is Engine.RAY:
        errors.append("runtime.engine: ray does not run text_sequence_to_sequence yet; use local")
    return errors


def target_vocabulary(task: TaskConfig) -> TargetVocabulary:
    """The generated ids' tokenizer and its start and end ids, from the `head:` and `preprocessing:` keys.

    Raises:
        ConfigError: the tokenizer cannot be read, or lacks the start or end token.
    """
    head, preprocessing = task.head, task.preprocessing
    return load_target_vocabulary(
        head.target_tokenizer,
        source=preprocessing.tokenizer,
        lowercase=preprocessing.lowercase,
        oov_token=preprocessing.oov_token,
        start_token=head.start_token,
        end_token=head.end_token,
    )


def generation_runner(task: TaskConfig, encoder_path: Path, output_dir: Path) -> GenerationRunner:
    """`model:` is the encoder, `head.decoder_model:` the decoder (a Keras `.h5` is converted and cached
    like the encoder, see predict.model_file). The runner keeps the target vocabulary for the head.

    Raises:
        ConfigError: the target tokenizer lacks the start or end token, or the pair breaks the naming
            convention of predict.runners.generation.
        ConversionError: the decoder `.h5` could not be converted.
    """
    config = task.head
    vocabulary = target_vocabulary(task)
    settings = GenerationSettings(
        start_id=vocabulary.start_id,
        end_id=vocabulary.end_id,
        max_new_tokens=config.max_new_tokens,
        num_beams=config.num_beams,
        length_penalty=config.length_penalty,
    )
    decoder = resolve_onnx_model(config.decoder_model, cache_dir=output_dir / "onnx_cache")
    runner = GenerationRunner(
        encoder_path,
        decoder.path,
        settings=settings,
        device=task.runtime.device,
        threads=task.runtime.threads,
        encoder_name=task.model.name,
        decoder_name=config.decoder_model.name,
    )
    runner.vocabulary = vocabulary
    if decoder.origin != "onnx":
        how = "converted to" if decoder.origin == "converted" else "using the cached conversion"
        runner.notes.insert(0, f"decoder {config.decoder_model.name}: {how} {decoder.path}")
    return runner


def head_from_vocabulary(
    spec: ProblemSpec, task: TaskConfig, runner: Runner, dataframe: pd.DataFrame
) -> SequenceToSequenceHead:
    """The head decodes with the vocabulary the runner generated with."""
    return SequenceToSequenceHead.build(task, outputs=runner.outputs, dataframe=dataframe, vocabulary=runner.vocabulary)


TEXT_SEQUENCE_TO_SEQUENCE = ProblemSpec(
    problem_type=ProblemType.TEXT_SEQUENCE_TO_SEQUENCE,
    modality=TEXT,
    layout=TextLayout.SEQUENCE,
    check=check_sequence_to_sequence,
    load_runner=generation_runner,
    build_head=head_from_vocabulary,
    head=SequenceToSequenceHead,
    view=SequenceToSequenceView,
)
