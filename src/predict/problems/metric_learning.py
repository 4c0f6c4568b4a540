"""Metric learning of images and texts: embeddings, their nearest neighbours in the split, and retrieval
mAP (predict.heads.metric_learning)."""

from predict.enums import ProblemType, TextLayout
from predict.heads.metric_learning import MetricLearningHead
from predict.problems.modalities import IMAGE, TEXT
from predict.problems.spec import ProblemSpec
from predict.view.metric_learning import MetricLearningView

IMAGE_METRIC_LEARNING = ProblemSpec(
    problem_type=ProblemType.IMAGE_METRIC_LEARNING, modality=IMAGE, head=MetricLearningHead, view=MetricLearningView
)
TEXT_METRIC_LEARNING = ProblemSpec(
    problem_type=ProblemType.TEXT_METRIC_LEARNING,
    modality=TEXT,
    layout=TextLayout.SEQUENCE,
    head=MetricLearningHead,
    view=MetricLearningView,
)
