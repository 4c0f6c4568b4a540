"""The problem types: one `ProblemSpec` each, in one registry.

One dict literal, no decorators or module scanning: what is registered is what you read here. Adding
a problem type is one spec module here, its head (predict.heads), its view (predict.view) and one line
below; docs/architecture.md walks through it.
"""

from predict.enums import ProblemType
from predict.problems import (
    classification,
    instance_segmentation,
    metric_learning,
    object_detection,
    regression,
    semantic_segmentation,
    sequence_to_sequence,
    span_prediction,
    token_classification,
)
from predict.problems.spec import ProblemSpec

PROBLEMS: dict[ProblemType, ProblemSpec] = {
    ProblemType.IMAGE_CLASSIFICATION: classification.IMAGE_CLASSIFICATION,
    ProblemType.IMAGE_REGRESSION: regression.IMAGE_REGRESSION,
    ProblemType.IMAGE_METRIC_LEARNING: metric_learning.IMAGE_METRIC_LEARNING,
    ProblemType.IMAGE_OBJECT_DETECTION: object_detection.IMAGE_OBJECT_DETECTION,
    ProblemType.IMAGE_SEMANTIC_SEGMENTATION: semantic_segmentation.IMAGE_SEMANTIC_SEGMENTATION,
    ProblemType.IMAGE_INSTANCE_SEGMENTATION: instance_segmentation.IMAGE_INSTANCE_SEGMENTATION,
    ProblemType.TEXT_CLASSIFICATION: classification.TEXT_CLASSIFICATION,
    ProblemType.TEXT_REGRESSION: regression.TEXT_REGRESSION,
    ProblemType.TEXT_TOKEN_CLASSIFICATION: token_classification.TEXT_TOKEN_CLASSIFICATION,
    ProblemType.TEXT_SPAN_PREDICTION: span_prediction.TEXT_SPAN_PREDICTION,
    ProblemType.TEXT_SEQUENCE_TO_SEQUENCE: sequence_to_sequence.TEXT_SEQUENCE_TO_SEQUENCE,
    ProblemType.TEXT_METRIC_LEARNING: metric_learning.TEXT_METRIC_LEARNING,
    ProblemType.AUDIO_REGRESSION: regression.AUDIO_REGRESSION,
    ProblemType.AUDIO_CLASSIFICATION: classification.AUDIO_CLASSIFICATION,
    ProblemType.ARRAY_REGRESSION: regression.ARRAY_REGRESSION,
    ProblemType.ARRAY_CLASSIFICATION: classification.ARRAY_CLASSIFICATION,
}

__all__ = ["PROBLEMS", "ProblemSpec"]
