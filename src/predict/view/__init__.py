"""The view registry: problem type to the view that shows its predictions (`predict show`, `predict report`).

One dict literal, like `predict.heads.HEADS`: a problem type gets a view by adding its module and a
line here. Problem types missing from it are refused by `view_for`, which lists the supported ones.
"""

from predict.enums import ProblemType
from predict.errors import InputError
from predict.view.base import View
from predict.view.classification import ClassificationView
from predict.view.instance_segmentation import InstanceSegmentationView
from predict.view.metric_learning import MetricLearningView
from predict.view.object_detection import ObjectDetectionView
from predict.view.regression import RegressionView
from predict.view.run import RunSplit
from predict.view.semantic_segmentation import SemanticSegmentationView
from predict.view.sequence_to_sequence import SequenceToSequenceView
from predict.view.span_prediction import SpanPredictionView
from predict.view.token_classification import TokenClassificationView

VIEWS: dict[ProblemType, type[View]] = {
    ProblemType.IMAGE_CLASSIFICATION: ClassificationView,
    ProblemType.IMAGE_REGRESSION: RegressionView,
    ProblemType.IMAGE_METRIC_LEARNING: MetricLearningView,
    ProblemType.IMAGE_OBJECT_DETECTION: ObjectDetectionView,
    ProblemType.IMAGE_SEMANTIC_SEGMENTATION: SemanticSegmentationView,
    ProblemType.IMAGE_INSTANCE_SEGMENTATION: InstanceSegmentationView,
    ProblemType.TEXT_CLASSIFICATION: ClassificationView,
    ProblemType.TEXT_REGRESSION: RegressionView,
    ProblemType.TEXT_TOKEN_CLASSIFICATION: TokenClassificationView,
    ProblemType.TEXT_SPAN_PREDICTION: SpanPredictionView,
    ProblemType.TEXT_SEQUENCE_TO_SEQUENCE: SequenceToSequenceView,
    ProblemType.TEXT_METRIC_LEARNING: MetricLearningView,
    ProblemType.AUDIO_CLASSIFICATION: ClassificationView,
    ProblemType.AUDIO_REGRESSION: RegressionView,
    ProblemType.ARRAY_REGRESSION: RegressionView,
    ProblemType.ARRAY_CLASSIFICATION: ClassificationView,
}


def view_for(run: RunSplit) -> View:
    """The view of `run`'s problem type, reading its predictions.

    Raises:
        InputError: no view exists for the problem type (listing those that have one), or the
            predictions CSV does not match its report.
    """
    view_class = VIEWS.get(run.problem_type)
    if view_class is None:
        supported = ", ".join(sorted(problem_type.value for problem_type in VIEWS))
        raise InputError(
            f"{run.run_dir}: viewing {run.problem_type.value} predictions is not supported yet; "
            f"supported problem types: {supported}"
        )
    return view_class(run)
