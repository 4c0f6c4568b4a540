"""Span prediction (extractive question answering): the answer's text in the context, read from
question-context windows over long contexts, and exact match / F1 (predict.heads.span_prediction)."""

from predict.config import TaskConfig
from predict.enums import ProblemType, TextLayout, TruncationSide
from predict.heads.span_prediction import SpanPredictionHead
from predict.problems.modalities import TEXT
from predict.problems.spec import ProblemSpec
from predict.view.span_prediction import SpanPredictionView


def check_span_prediction(task: TaskConfig) -> list[str]:
    """Contexts are cut into windows, never truncated, and there is one answer per row."""
    errors = []
    if task.preprocessing.truncation_side is TruncationSide.LEFT:
        errors.append(
            "preprocessing.truncation_side: left does not apply to text_span_prediction: long contexts are cut "
            "into windows (preprocessing.doc_stride), never truncated; remove the key"
        )
    if len(task.data.label_columns) > 1:
        errors.append(
            f"data.label_columns: span prediction takes one answer column (got {list(task.data.label_columns)})"
        )
    return errors


TEXT_SPAN_PREDICTION = ProblemSpec(
    problem_type=ProblemType.TEXT_SPAN_PREDICTION,
    modality=TEXT,
    layout=TextLayout.WINDOWS,
    input_keys=("question_column", "context_column"),
    check=check_span_prediction,
    head=SpanPredictionHead,
    view=SpanPredictionView,
)
