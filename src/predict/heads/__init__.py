"""The head registry: problem type to the head that post-processes its outputs.

One dict literal, no decorators or module scanning: what is registered is what you read here.
Problem types missing from it (see `predict.config.ProblemType`) are refused by `load_config`,
which lists the available ones.
"""

from predict.enums import ProblemType
from predict.heads.base import Head
from predict.heads.classification import ClassificationHead
from predict.heads.instance_segmentation import InstanceSegmentationHead
from predict.heads.metric_learning import MetricLearningHead
from predict.heads.object_detection import ObjectDetectionHead
from predict.heads.regression import RegressionHead
from predict.heads.semantic_segmentation import SemanticSegmentationHead
from predict.heads.sequence_to_sequence import SequenceToSequenceHead
from predict.heads.span_prediction import SpanPredictionHead
from predict.heads.token_classification import TokenClassificationHead

HEADS: dict[ProblemType, type[Head]] = {
    ProblemType.IMAGE_CLASSIFICATION: ClassificationHead,
    ProblemType.IMAGE_REGRESSION: RegressionHead,
    ProblemType.IMAGE_METRIC_LEARNING: MetricLearningHead,
    ProblemType.IMAGE_OBJECT_DETECTION: ObjectDetectionHead,
    ProblemType.IMAGE_SEMANTIC_SEGMENTATION: SemanticSegmentationHead,
    ProblemType.IMAGE_INSTANCE_SEGMENTATION: InstanceSegmentationHead,
    ProblemType.AUDIO_REGRESSION: RegressionHead,
    ProblemType.AUDIO_CLASSIFICATION: ClassificationHead,
    ProblemType.TEXT_CLASSIFICATION: ClassificationHead,
    ProblemType.TEXT_REGRESSION: RegressionHead,
    ProblemType.TEXT_TOKEN_CLASSIFICATION: TokenClassificationHead,
    ProblemType.TEXT_SPAN_PREDICTION: SpanPredictionHead,
    ProblemType.TEXT_SEQUENCE_TO_SEQUENCE: SequenceToSequenceHead,
    ProblemType.TEXT_METRIC_LEARNING: MetricLearningHead,
    ProblemType.ARRAY_REGRESSION: RegressionHead,
    ProblemType.ARRAY_CLASSIFICATION: ClassificationHead,
}
