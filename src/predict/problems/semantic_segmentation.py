"""Semantic segmentation: a mask per class at the original image size, as RLE, and Dice/IoU
(predict.heads.semantic_segmentation)."""

from predict.enums import ProblemType
from predict.heads.semantic_segmentation import SemanticSegmentationHead
from predict.problems.modalities import IMAGE
from predict.problems.spec import ProblemSpec
from predict.view.semantic_segmentation import SemanticSegmentationView

IMAGE_SEMANTIC_SEGMENTATION = ProblemSpec(
    problem_type=ProblemType.IMAGE_SEMANTIC_SEGMENTATION,
    modality=IMAGE,
    head=SemanticSegmentationHead,
    view=SemanticSegmentationView,
)
